package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/whiteout"
)

func cmdInspect(args []string) error {
	fl := pflag.NewFlagSet("inspect", pflag.ContinueOnError)
	options := fl.StringArrayP("options", "o", nil, "inspect every branch of this stack (as for strata mount -o), checking redirects against the branches below")
	asJSON := fl.Bool("json", false, "print the inventory as a JSON document")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, `Usage: strata inspect [--json] DIR           one branch: an upper, or an unpacked image layer
       strata inspect [--json] -o OPTIONS    every branch of a stack

Lists the whiteouts (in each format found), opaque directories, redirects
and union bookkeeping (strata.ino, strata.origin, aufs names, kernel
overlay xattrs) of a branch, and flags inconsistencies: a .wh.name beside a
real name, markers of the other format in a branch of one format, bad or
dangling redirects (dangling: checked with -o), xattr whiteouts that are
not, metacopy uppers, leftovers of interrupted changes. Exits 1 when it
finds any. Reads only.

%s`, fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	var invs []branches.BranchInventory
	var err error
	switch {
	case len(*options) > 0 && fl.NArg() == 0:
		invs, err = inspectStack(*options)
	case len(*options) == 0 && fl.NArg() == 1:
		invs, err = inspectDir(fl.Arg(0))
	default:
		return usageError("inspect takes one DIR or -o OPTIONS; see 'strata inspect --help'")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		err = printJSON(os.Stdout, invs)
	} else {
		renderInventories(os.Stdout, invs, styleFor(os.Stdout))
	}
	if err != nil {
		return err
	}
	problems := 0
	for _, inv := range invs {
		problems += len(inv.Problems)
	}
	if problems > 0 {
		return fmt.Errorf("%d inconsistencies found", problems)
	}
	return nil
}

func inspectStack(options []string) ([]branches.BranchInventory, error) {
	stack, err := openReadOnly(options)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	return stack.Inspect()
}

func inspectDir(dir string) ([]branches.BranchInventory, error) {
	fd, abs, err := openBranchDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	inv, err := whiteout.Inspect(fd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return []branches.BranchInventory{{Branch: branches.BranchRef{Name: "dir", Path: abs}, Inventory: inv}}, nil
}

// openBranchDir opens a branch directory named by the user as an O_PATH
// descriptor: everything inside is then reached beneath it.
func openBranchDir(dir string) (int, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return -1, "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w", dir, err)
	}
	return fd, abs, nil
}

func renderInventories(w io.Writer, invs []branches.BranchInventory, st style) {
	for i, inv := range invs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		perm := ""
		if inv.Branch.Perm != "" {
			perm = " (" + inv.Branch.Perm + ")"
		}
		fmt.Fprintf(w, "%s %s%s  format: %s\n", st.paint(ansiBold, inv.Branch.Name), inv.Branch.Path, perm, inv.Format)
		section := func(title string, ms []whiteout.Marker) {
			if len(ms) == 0 {
				return
			}
			fmt.Fprintf(w, "  %s (%d)\n", title, len(ms))
			tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
			const max = 50 // per section; --json lists everything
			for i, m := range ms {
				if i == max {
					fmt.Fprintf(tw, "    ... (%d more; --json lists them all)\n", len(ms)-max)
					break
				}
				line := "    " + m.Path + "\t" + m.Kind
				if m.Entry != "" {
					line += "  [" + m.Entry + "]"
				}
				if m.Value != "" {
					line += "  " + m.Value
				}
				fmt.Fprintln(tw, line)
			}
			tw.Flush()
		}
		section("whiteouts", inv.Whiteouts)
		section("opaque directories", inv.Opaque)
		section("redirects", inv.Redirects)
		section("metadata", inv.Metadata)
		if len(inv.Problems) == 0 {
			fmt.Fprintf(w, "  %s\n", st.paint(ansiGreen, "no inconsistencies"))
			continue
		}
		fmt.Fprintf(w, "  %s (%d)\n", st.paint(ansiRed, "inconsistencies"), len(inv.Problems))
		for _, p := range inv.Problems {
			fmt.Fprintf(w, "    %s [%s]: %s\n", p.Path, st.paint(ansiYellow, p.Code), p.Detail)
		}
	}
}
