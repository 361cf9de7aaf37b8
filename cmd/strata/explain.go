package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/control"
)

func cmdExplain(args []string) error {
	fl := pflag.NewFlagSet("explain", pflag.ContinueOnError)
	options := fl.StringArrayP("options", "o", nil, "explain PATH in the union of these branches (as for strata mount -o), without a mount")
	asJSON := fl.Bool("json", false, "print the report as a JSON document")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, `Usage: strata explain [--json] PATH              PATH inside a mounted strata union
       strata explain [--json] -o OPTIONS PATH   PATH relative to the union root, no mount needed

Shows every branch, top to bottom, and what it holds at PATH (file, dir,
whiteout in which format, opaque marker, nothing); which branch serves it;
what hides the other copies (whiteout, opaque parent, non-dir over dir);
whether it was copied up and from where; its inode number; and, for a
directory, how its merged listing is formed.

On a mount it asks the mount's daemon (only root and the mount's owner
may). With -o it reads the branches directly and writes nothing.

%s`, fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageError("explain needs exactly one PATH (got %d arguments); see 'strata explain --help'", fl.NArg())
	}
	var r *branches.Report
	var err error
	if len(*options) > 0 {
		r, err = explainOffline(*options, fl.Arg(0))
	} else {
		r, err = explainMounted(fl.Arg(0))
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(os.Stdout, r)
	}
	renderReport(os.Stdout, r, styleFor(os.Stdout), nil)
	return nil
}

// explainOffline explains p in the union of the branches options name.
func explainOffline(options []string, p string) (*branches.Report, error) {
	stack, err := openReadOnly(options)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	return stack.ExplainPath(p)
}

// openReadOnly opens the stack -o options name, for reading only: a
// writable open would clean the workdir of a mount that may be live.
func openReadOnly(options []string) (*branches.Stack, error) {
	opts, err := branches.ParseOptions(options)
	if err != nil {
		return nil, err
	}
	opts.ReadOnly = true
	return branches.Open(opts, "")
}

// explainMounted asks the daemon of the mount holding p.
func explainMounted(p string) (*branches.Report, error) {
	m, unionPath, err := control.FindMount(p)
	if err != nil {
		return nil, fmt.Errorf("%w; give -o OPTIONS to explain a union that is not mounted", err)
	}
	reply, err := m.Request(control.Request{Op: "explain", Path: unionPath}, nil)
	if err != nil {
		return nil, err
	}
	if reply.Report == nil {
		return nil, fmt.Errorf("strata mount at %s: the daemon sent no report", m.MountPoint)
	}
	return reply.Report, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// style colours output for a terminal, and leaves it plain otherwise.
type style struct{ color bool }

// styleFor colours only a terminal, and never when NO_COLOR is set.
func styleFor(f *os.File) style {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return style{color: err == nil && os.Getenv("NO_COLOR") == ""}
}

const (
	ansiBold    = "1"
	ansiDim     = "2"
	ansiRed     = "31"
	ansiGreen   = "32"
	ansiYellow  = "33"
	ansiMagenta = "35"
	ansiCyan    = "36"
)

func (s style) paint(code, text string) string {
	if !s.color || text == "" {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

var verdictColor = map[string]string{
	"serves": ansiGreen, "merged": ansiCyan, "hidden": ansiYellow, "whiteout": ansiMagenta, "absent": ansiDim,
}

// renderReport prints r for a reader. labels, when given, adds a name to
// branches by root path (the demo's "top", "middle", "base").
func renderReport(w io.Writer, r *branches.Report, st style, labels map[string]string) {
	fmt.Fprintf(w, "%s %s\n", st.paint(ansiBold, "PATH"), st.paint(ansiBold, r.Path))
	if !r.Exists {
		fmt.Fprintf(w, "  %s: %s\n", st.paint(ansiRed, "not in the union"), r.MissingWhy)
	} else {
		fmt.Fprintf(w, "  %s, served by %s %s\n", r.Type, branchLabel(*r.ServedBy, labels), r.ServedBy.Perm)
		fmt.Fprintf(w, "  inode %d, taken from %s\n", r.Ino, r.InoFrom)
		if r.Target != "" {
			fmt.Fprintf(w, "  symlink to %s\n", r.Target)
		}
		if r.Redirect != "" {
			fmt.Fprintf(w, "  renamed directory: its lower copies are at %s (overlay.redirect)\n", r.Redirect)
		}
		if c := r.CopiedUp; c != nil {
			switch {
			case c.From != nil:
				fmt.Fprintf(w, "  copied up from %s, where it was %s\n", branchLabel(*c.From, labels), c.At)
			case c.At != "":
				fmt.Fprintf(w, "  copied up from %s in %s (no longer in the stack)\n", c.At, c.BranchPath)
			default:
				fmt.Fprintln(w, "  copied up (no record of where from)")
			}
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  BRANCH\tAT\tHOLDS\tVERDICT")
	for _, h := range r.Branches {
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\t%s\n", branchLabel(h.Branch, labels), h.Branch.Perm, h.At, holdsText(h), st.paint(verdictColor[h.Verdict], verdictText(h, r.Path)))
	}
	tw.Flush()
	if l := r.Listing; l != nil {
		fmt.Fprintln(w, "\n  merged listing, top copy first:")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, part := range l.Layers {
			var what []string
			what = append(what, "adds "+nameList(part.Adds))
			if len(part.Whiteouts) > 0 {
				var wh []string
				for _, m := range part.Whiteouts {
					wh = append(wh, m.Name+" ("+m.Marker+")")
				}
				what = append(what, "hides below: "+nameList(wh))
			}
			if len(part.Shadowed) > 0 {
				what = append(what, "shadowed from above: "+nameList(part.Shadowed))
			}
			if len(part.WhitedOut) > 0 {
				what = append(what, "whited out above: "+nameList(part.WhitedOut))
			}
			if part.Opaque != "" {
				what = append(what, "opaque: the merge stops here")
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", part.Branch, part.At, strings.Join(what, "; "))
		}
		tw.Flush()
		fmt.Fprintf(w, "    = %s\n", nameList(l.Names))
	}
}

func branchLabel(b branches.BranchRef, labels map[string]string) string {
	if l, ok := labels[b.Path]; ok && l != b.Name {
		return b.Name + " (" + l + ")"
	}
	return b.Name
}

func holdsText(h branches.Holding) string {
	var parts []string
	switch {
	case h.Holds == "whiteout":
		parts = append(parts, "whiteout: "+h.Whiteout)
	case h.Whiteout != "":
		parts = append(parts, h.Holds, "beside an "+h.Whiteout)
	default:
		parts = append(parts, h.Holds)
	}
	if h.Opaque != "" {
		parts = append(parts, h.Opaque)
	}
	if h.Redirect != "" {
		parts = append(parts, "redirect "+h.Redirect)
	}
	return strings.Join(parts, ", ")
}

func verdictText(h branches.Holding, p string) string {
	switch {
	case h.Verdict == "whiteout":
		return "whiteout: hides the copies below"
	case h.HiddenBy == nil:
		return h.Verdict
	case h.HiddenBy.At != p:
		return fmt.Sprintf("hidden by %s at %s: %s", h.HiddenBy.Branch, h.HiddenBy.At, h.HiddenBy.What)
	}
	return fmt.Sprintf("hidden by %s: %s", h.HiddenBy.Branch, h.HiddenBy.What)
}

// nameList joins names, eliding a long list.
func nameList(names []string) string {
	const max = 12
	if len(names) == 0 {
		return "nothing"
	}
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... (%d more)", len(names)-max)
	}
	return strings.Join(names, ", ")
}
