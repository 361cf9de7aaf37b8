package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers"
)

const graphUsage = `Usage: strata graph --root DIR [--backend B] SUBCOMMAND [ARGS]

A layer store for container images and containers (docs/GRAPHDRIVER.md).

Subcommands:
  create ID [PARENT]     make a read-only layer (an image layer; fill it with apply)
  create-rw ID PARENT    make a writable layer (a container layer, or an ID-init layer)
  rm ID                  remove a layer (not while mounted, not while it has children)
  mount ID               mount the layer with its parents; prints the directory last
  umount ID              undo one mount (the last one unmounts)
  apply ID               unpack an OCI layer tar from stdin into the layer
  diff ID                write the layer's changes as an OCI layer tar to stdout
  changes ID             list the layer's changes (A/C/D PATH, as docker diff)
  diff-size ID           bytes of regular files the layer adds or changes
  ls                     list the layers
  status                 the backend, how it was chosen, why others were not
  import-aufs DIR        register the layers of a Docker aufs store (DIR/layers, DIR/diff)

Flags:
%s
A new store takes --backend (fuse when not given; auto: the first of overlay,
fuse, devicemapper, vfs that works here); an existing store keeps its own.
`

// graphCommand is one subcommand: how many arguments, and what it does.
type graphCommand struct {
	minArgs, maxArgs int
	usage            string
	run              func(s *drivers.Store, args []string) error
}

var graphCommands = map[string]graphCommand{
	"create": {1, 2, "create ID [PARENT]", func(s *drivers.Store, a []string) error {
		return s.Create(a[0], argOr(a, 1), nil)
	}},
	"create-rw": {2, 2, "create-rw ID PARENT", func(s *drivers.Store, a []string) error {
		return s.CreateReadWrite(a[0], a[1], nil)
	}},
	"rm":     {1, 1, "rm ID", func(s *drivers.Store, a []string) error { return s.Remove(a[0]) }},
	"mount":  {1, 1, "mount ID", graphMount},
	"umount": {1, 1, "umount ID", func(s *drivers.Store, a []string) error { return s.Put(a[0]) }},
	"apply":  {1, 1, "apply ID < LAYER.tar", graphApply},
	"diff":   {1, 1, "diff ID > LAYER.tar", graphDiff},
	"changes": {1, 1, "changes ID", func(s *drivers.Store, a []string) error {
		changes, err := s.Changes(a[0], "")
		for _, c := range changes {
			fmt.Println(c)
		}
		return err
	}},
	"diff-size": {1, 1, "diff-size ID", func(s *drivers.Store, a []string) error {
		n, err := s.DiffSize(a[0], "")
		if err == nil {
			fmt.Println(n)
		}
		return err
	}},
	"ls":          {0, 0, "ls", graphList},
	"status":      {0, 0, "status", graphStatus},
	"import-aufs": {1, 1, "import-aufs DIR", graphImportAufs},
}

func cmdGraph(args []string) error {
	var root, backend string
	fl := pflag.NewFlagSet("graph", pflag.ContinueOnError)
	fl.SetInterspersed(false) // flags after the subcommand are its arguments
	fl.StringVar(&root, "root", "", "the store's directory (created if missing)")
	fl.StringVar(&backend, "backend", "", "fuse, overlay, devicemapper, vfs, or auto (default: the store's own; fuse for a new store)")
	fl.Usage = func() { fmt.Fprintf(os.Stderr, graphUsage, fl.FlagUsages()) }
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() == 0 {
		return usageError("graph needs a subcommand; see 'strata graph --help'")
	}
	name, rest := fl.Arg(0), fl.Args()[1:]
	cmd, ok := graphCommands[name]
	if !ok {
		return usageError("graph: unknown subcommand %q; see 'strata graph --help'", name)
	}
	if len(rest) < cmd.minArgs || len(rest) > cmd.maxArgs {
		return usageError("usage: strata graph --root DIR %s", cmd.usage)
	}
	if root == "" {
		return usageError("graph needs --root DIR")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	s, err := drivers.New(drivers.Options{Root: root, Backend: backend, StrataBinary: exe})
	if err != nil {
		return err
	}
	return cmd.run(s, rest)
}

func argOr(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

// graphMount prints the mounted directory as the last line of stdout.
func graphMount(s *drivers.Store, args []string) error {
	dir, err := s.Get(args[0], "")
	if err == nil {
		fmt.Println(dir)
	}
	return err
}

func graphApply(s *drivers.Store, args []string) error {
	if isTerminal(os.Stdin) {
		return usageError("apply reads an OCI layer tar on stdin, which is a terminal; redirect it: strata graph --root DIR apply %s < LAYER.tar", args[0])
	}
	p := newProgress("apply " + args[0])
	n, err := s.ApplyDiff(args[0], "", io.TeeReader(os.Stdin, p))
	p.done()
	if err == nil {
		fmt.Println(n)
	}
	return err
}

func graphDiff(s *drivers.Store, args []string) error {
	if isTerminal(os.Stdout) {
		return usageError("diff writes a tar to stdout, which is a terminal; redirect it: strata graph --root DIR diff %s > LAYER.tar", args[0])
	}
	rc, err := s.Diff(args[0], "")
	if err != nil {
		return err
	}
	defer rc.Close()
	p := newProgress("diff " + args[0])
	_, err = io.Copy(io.MultiWriter(os.Stdout, p), rc)
	p.done()
	return err
}

func graphList(s *drivers.Store, _ []string) error {
	layers, err := s.List()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPARENT\tMODE\tMOUNTS")
	for _, l := range layers {
		mode := "ro"
		if l.ReadWrite {
			mode = "rw"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", l.ID, l.Parent, mode, l.Users)
	}
	return w.Flush()
}

func graphStatus(s *drivers.Store, _ []string) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, row := range s.Status() {
		fmt.Fprintf(w, "%s:\t%s\n", row[0], row[1])
	}
	return w.Flush()
}

func graphImportAufs(s *drivers.Store, args []string) error {
	ids, err := s.ImportAufs(args[0])
	for _, id := range ids {
		fmt.Println(id)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "imported %d layers from %s\n", len(ids), args[0])
	return nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress counts bytes and, when stderr is a terminal, shows them with the
// rate on one line that it rewrites at most every 200 ms, starting after
// half a second (a small layer shows nothing).
type progress struct {
	label   string
	out     io.Writer // stderr, or nil when it is not a terminal
	n       int64
	started time.Time
	shown   time.Time
}

func newProgress(label string) *progress {
	p := &progress{label: label, started: time.Now()}
	if isTerminal(os.Stderr) {
		p.out = os.Stderr
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if now := time.Now(); p.out != nil && now.Sub(p.shown) > 200*time.Millisecond && now.Sub(p.started) > 500*time.Millisecond {
		p.shown = now
		p.show()
	}
	return len(b), nil
}

func (p *progress) show() {
	rate := float64(p.n) / time.Since(p.started).Seconds()
	fmt.Fprintf(p.out, "\r%s: %s, %s/s   ", p.label, humanBytes(float64(p.n)), humanBytes(rate))
}

// done finishes the line, if one was shown.
func (p *progress) done() {
	if p.out != nil && !p.shown.IsZero() {
		p.show()
		fmt.Fprintln(p.out)
	}
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strings.TrimSuffix(strconv.FormatFloat(n, 'f', 1, 64), ".0") + " " + units[i]
}
