package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/procscan"
	"github.com/strata-fs/strata/whiteout"
)

func cmdConvert(args []string) error {
	fl := pflag.NewFlagSet("convert", pflag.ContinueOnError)
	to := fl.String("to", "", "the format to write: overlay (char 0/0, overlay.opaque xattr) or aufs (.wh. files)")
	dry := fl.BoolP("dry-run", "n", false, "only list what would change")
	userXattr := fl.Bool("userxattr", whiteout.WritableNamespace() == "user.", "write overlay xattrs as user.overlay.* (kernel -o userxattr) instead of trusted.overlay.*")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, `Usage: strata convert --to overlay|aufs [--dry-run] DIR

Rewrites the markers of a branch (an upper, an unpacked layer) from one
format to the other: whiteouts, opaque directories, and aufs's "deleted,
then created again" pairs. Each entry is rewritten on its own, the new
marker made before the old one goes, so an interrupted run loses nothing and
running it again finishes it. Redirects stay as they are (strata reads them
in both formats). Refuses a branch that a kernel overlay or a union daemon
is using.

%s`, fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageError("convert needs exactly one DIR; see 'strata convert --help'")
	}
	format, err := whiteout.ParseFormat(*to)
	if err != nil {
		return usageError("--to: %v", err)
	}
	dir := fl.Arg(0)
	if user, err := procscan.InUse(dir); err != nil {
		return err
	} else if user != "" {
		return fmt.Errorf("%s is in use: %s; unmount it first", dir, user)
	}
	fd, _, err := openBranchDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ns := "trusted."
	if *userXattr {
		ns = "user."
	}
	changes, err := whiteout.Convert(fd, format, ns, *dry)
	for _, c := range changes {
		fmt.Printf("  %s: %s -> %s\n", c.Path, c.From, c.To)
	}
	if err != nil {
		return fmt.Errorf("%s: %w (the markers listed above were rewritten; running it again finishes the job)", dir, err)
	}
	verb := "rewritten"
	if *dry {
		verb = "to rewrite"
	}
	fmt.Printf("%s: %d marker(s) %s to %s format\n", dir, len(changes), verb, format)
	return nil
}
