package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/control"
)

const traceUsage = `Usage: strata trace on MOUNTPOINT FILE    write the decision trace of a running mount to FILE ("-": standard output)
       strata trace off MOUNTPOINT        stop it

The trace has one JSON object per line for every union decision: lookup
resolution, copy-up start and end (bytes, method), whiteout written and
its format, opaque directory made, rename strategy. FILE is opened by this
command (appending) and handed to the mount's daemon, which writes to it
until 'strata trace off' or the unmount. strata mount --trace FILE starts a
mount with the trace on. Only root and the mount's owner may.
`

func cmdTrace(args []string) error {
	fl := pflag.NewFlagSet("trace", pflag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, traceUsage) }
	if err := fl.Parse(args); err != nil {
		return err
	}
	a := fl.Args()
	switch {
	case len(a) == 3 && a[0] == "on":
		return traceOn(a[1], a[2])
	case len(a) == 2 && a[0] == "off":
		m, err := controlOf(a[1])
		if err != nil {
			return err
		}
		_, err = m.Request(control.Request{Op: "trace"}, nil)
		return err
	}
	return usageError("trace takes 'on MOUNTPOINT FILE' or 'off MOUNTPOINT'; see 'strata trace --help'")
}

func traceOn(mountpoint, file string) error {
	m, err := controlOf(mountpoint)
	if err != nil {
		return err
	}
	if in, _, err := control.FindMount(file); err == nil && in.MountPoint == m.MountPoint {
		return fmt.Errorf("trace file %s: may not be inside the mount it traces", file)
	}
	out := os.Stdout
	if file != "-" {
		if out, err = openTraceFile(file); err != nil {
			return err
		}
		defer out.Close()
	}
	_, err = m.Request(control.Request{Op: "trace", On: true}, out)
	return err
}

// openTraceFile opens (creating, appending) the file a trace goes to.
func openTraceFile(file string) (*os.File, error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("trace file: %w", err)
	}
	return f, nil
}

// controlOf finds the strata mount at (or holding) mountpoint.
func controlOf(mountpoint string) (*control.MountedUnion, error) {
	m, _, err := control.FindMount(mountpoint)
	return m, err
}

// startTrace turns the stack's trace on into file (strata mount --trace),
// opened now so that a bad path is refused before anything is mounted.
// It returns the open file (nil when file is empty; Close on a nil
// *os.File is harmless).
func startTrace(stack *branches.Stack, file string) (*os.File, error) {
	if file == "" {
		return nil, nil
	}
	f, err := openTraceFile(file)
	if err != nil {
		return nil, err
	}
	if err := stack.SetTrace(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--trace %s: %w", file, err)
	}
	return f, nil
}
