// Command strata-bench measures strata side by side with a plain directory,
// kernel overlay, fuse-overlayfs and unionfs-fuse (and strata variants) on
// one layered fixture, in one run. It prints a plain-text table of medians
// with ratios against kernel overlay (>1 = faster than kernel overlay),
// then evaluates the performance targets of issue #5.
//
// It needs root and /dev/fuse. Every path lives under one temp dir; every
// mount is undone on exit, error, timeout or SIGINT.
//
//	strata-bench -quick            # small sizes, under 3 minutes
//	strata-bench                   # full sizes
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sizes are the workload parameters of one mode.
type sizes struct {
	bigFile    int64         // sequential read, random read and copy-up file
	writeFile  int64         // sequential write
	randReads  time.Duration // how long each fio run reads (fio's own clock)
	statFiles  int           // files in the stat tree
	wideDir    int           // entries in the merged readdir dir
	createN    int           // create+unlink count
	untarFiles int           // files in the tarball
	depths     []int         // branch counts for lookup depth
	lookups    int           // distinct bottom files looked up per depth run
	walkFiles  int           // files walked before reading the daemon's RSS
	forgetWait time.Duration // pause after drop_caches for the kernel's FORGETs
	runTimeout time.Duration // limit for one timed run
}

var (
	quickSizes = sizes{
		bigFile: 256 << 20, writeFile: 256 << 20, randReads: 500 * time.Millisecond,
		statFiles: 5000, wideDir: 3000, createN: 1000, untarFiles: 2000,
		depths: []int{1, 10, 100, 500, 1000}, lookups: 200,
		walkFiles: 10000, forgetWait: 1 * time.Second, runTimeout: 60 * time.Second,
	}
	fullSizes = sizes{
		bigFile: 1 << 30, writeFile: 1 << 30, randReads: 5 * time.Second,
		statFiles: 20000, wideDir: 10000, createN: 10000, untarFiles: 30000,
		depths: []int{1, 10, 100, 500, 1000}, lookups: 1000,
		walkFiles: 200000, forgetWait: 5 * time.Second, runTimeout: 300 * time.Second,
	}
)

var (
	flagQuick         = flag.Bool("quick", false, "quick sizes")
	flagRuns          = flag.Int("runs", 3, "timed runs per workload (at least 3)")
	flagStrata        = flag.String("strata", "bin/strata", "path to the strata binary")
	flagStrataNotrace = flag.String("strata-notrace", "bin/strata-notrace", "path to strata built with -tags strata_notrace (the strata-notrace system)")
	flagTmp           = flag.String("tmpdir", "", "parent of the temp dir (default: $TMPDIR or /tmp)")
	flagOnly          = flag.String("systems", systemNames(), "comma-separated systems to run")
	flagLoopback      = flag.Bool("serve-loopback", false, "internal: serve SRC at MNT with go-fuse's loopback (the gofuse-loopback system)")
	flagTimeout       = flag.Duration("timeout", 0, "limit for one timed run; a system that exceeds it is aborted (default: 60s quick, 5m full)")
)

// runTimeout is the limit for one timed run, from -timeout or the sizes.
var runTimeout time.Duration

func systemNames() string {
	var l []string
	for _, s := range allSystems {
		l = append(l, s.name)
	}
	return strings.Join(l, ",")
}

// selectedSystems are the systems -systems names, in table order.
func selectedSystems() []system {
	want := map[string]bool{}
	for _, x := range strings.Split(*flagOnly, ",") {
		want[strings.TrimSpace(x)] = true
	}
	var l []system
	for _, s := range allSystems {
		if want[s.name] {
			l = append(l, s)
			delete(want, s.name)
		}
	}
	for x := range want {
		if x != "" {
			fmt.Fprintf(os.Stderr, "strata-bench: -systems: unknown system %q (known: %s)\n", x, systemNames())
			os.Exit(2)
		}
	}
	return l
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "strata-bench:", err)
	cleanup()
	os.Exit(1)
}

func main() {
	flag.Parse()
	if *flagLoopback {
		runServeLoopback(flag.Args())
		return
	}
	*flagRuns = max(*flagRuns, 3)
	sz, mode := fullSizes, "full"
	if *flagQuick {
		sz, mode = quickSizes, "quick"
	}
	runTimeout = sz.runTimeout
	if *flagTimeout > 0 {
		runTimeout = *flagTimeout
	}
	systems := selectedSystems()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "strata-bench: needs root (kernel overlay and FUSE mounts, drop_caches)")
		os.Exit(1)
	}
	for _, f := range []*string{flagStrata, flagStrataNotrace} {
		if p, err := filepath.Abs(*f); err == nil {
			*f = p
		}
	}
	parent := *flagTmp
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "strata-bench-")
	if err != nil {
		fatal(err)
	}
	dir, _ = filepath.EvalSymlinks(dir)
	cleanMu.Lock()
	tmpRoot = dir
	cleanMu.Unlock()
	defer cleanup()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "strata-bench: %v, cleaning up\n", s)
		cleanup()
		os.Exit(130)
	}()

	start := time.Now()
	fmt.Fprintf(os.Stderr, "strata-bench: building fixture in %s\n", dir)
	fx := buildFixture(dir, sz)
	fmt.Fprintf(os.Stderr, "strata-bench: fixture built in %v\n", time.Since(start).Round(time.Second))
	t := declareRows(fx)
	for _, s := range systems {
		runSystem(fx, s, t)
	}
	report(os.Stdout, fx, t, systems, mode, time.Since(start))
	cleanup()
	if left := mountsUnder(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "strata-bench: stale mounts left: %v\n", left)
		os.Exit(1)
	}
}
