package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/control"
	"github.com/strata-fs/strata/unionfs"
	"github.com/strata-fs/strata/whiteout"
)

// readyFDEnv names the descriptor on which the serving process reports
// "ok" once the mount is fully up (go-fuse has finished its own setup), or
// the error. The daemonizing parent uses it; so can anything that runs
// "strata mount -f" and must not touch the mount before it is ready. It is
// an environment variable rather than a flag so that the daemon's command
// line stays exactly the user's.
const readyFDEnv = "STRATA_READY_FD"

type mountFlags struct {
	options    []string
	foreground bool
	debug      bool
	whiteout   string
	readOnly   bool
	// passthrough off keeps file I/O in the daemon (for comparison, and
	// for kernels where passthrough misbehaves).
	passthrough bool
	cpuProfile  string
	trace       string
	logFile     string
}

func cmdMount(args []string) error {
	var f mountFlags
	fl := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	fl.StringArrayVarP(&f.options, "options", "o", nil, "mount options, comma-separated (repeatable)")
	fl.BoolVarP(&f.foreground, "foreground", "f", false, "stay in the foreground and serve until unmounted")
	fl.BoolVarP(&f.debug, "debug", "d", false, "log every FUSE request to stderr (implies --foreground)")
	fl.StringVar(&f.whiteout, "whiteout", "overlay", "whiteout format written to the upper: overlay or aufs")
	fl.BoolVarP(&f.readOnly, "read-only", "r", false, "mount read-only even when there is a writable branch")
	fl.BoolVar(&f.passthrough, "passthrough", true, "let the kernel do reads and writes of open files on the backing file (FUSE passthrough, where the kernel and privileges allow)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the daemon to `FILE` until it exits")
	fl.StringVar(&f.trace, "trace", "", "write the decision trace to `FILE` (appending; see 'strata trace --help')")
	fl.StringVar(&f.logFile, "log", "", "append the daemon's messages to `FILE` (default: stderr, which a daemon started in the background does not have)")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: strata mount [flags] -o OPTIONS MOUNTPOINT\n\nFlags:\n%s\n", fl.FlagUsages())
		fmt.Fprint(os.Stderr, "Examples:\n  strata mount -o lowerdir=/l1:/l2,upperdir=/u,workdir=/w /mnt/merged\n  strata mount -o br=/u=rw:/l1=ro /mnt/merged\n")
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageError("mount needs exactly one MOUNTPOINT (got %d arguments); see 'strata mount --help'", fl.NArg())
	}
	return mountUnion(f, fl.Arg(0))
}

// mountUnion validates the options and the branches, then serves in the
// foreground or daemonizes. Every way of mounting (strata mount, the
// fuse-overlayfs form, the mount.fuse3 form) ends here.
func mountUnion(f mountFlags, mountpoint string) error {
	format, err := whiteout.ParseFormat(f.whiteout)
	if err != nil {
		return usageError("--whiteout: %v", err)
	}
	opts, err := branches.ParseOptions(f.options)
	if err != nil {
		return err
	}
	opts.Whiteout = format
	// The daemon's one logger: the stack's messages, go-fuse's and the
	// control channel's all go to stderr (or --log), prefixed with the
	// program.
	logOut := io.Writer(os.Stderr)
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		logOut = lf // open for the daemon's life
	}
	logger := log.New(logOut, "strata: ", log.LstdFlags)
	opts.Logger = logger
	applyCompat(opts, &f)
	if f.readOnly {
		opts.ReadOnly = true
	}
	// Validate before anything else happens, so that a refused mount
	// leaves nothing behind: no daemon, no mount, no change to a branch.
	stack, err := branches.Open(opts, mountpoint)
	if err != nil {
		return err
	}
	trace, err := startTrace(stack, f.trace)
	if err != nil {
		stack.Close()
		return err
	}
	var ready *os.File
	if fdStr := os.Getenv(readyFDEnv); fdStr != "" {
		var fd int
		if _, err := fmt.Sscan(fdStr, &fd); err != nil {
			stack.Close()
			return fmt.Errorf("%s=%q: %v", readyFDEnv, fdStr, err)
		}
		ready = os.NewFile(uintptr(fd), "ready")
	}
	if f.foreground || f.debug || ready != nil {
		return serve(stack, mountpoint, f, ready, trace, logger)
	}
	stack.Close()
	trace.Close()
	return daemonize()
}

// daemonize starts this same command again as a detached child and waits
// until the child says the mount is ready (exit 0) or failed (its message,
// exit 1). The child's standard streams go to /dev/null, so whoever waits
// on our stderr (podman does) sees EOF as soon as we exit.
func daemonize() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	w.Close()
	msg, _ := io.ReadAll(bufio.NewReader(r))
	r.Close()
	if string(msg) == "ok\n" {
		cmd.Process.Release()
		return nil
	}
	cmd.Wait()
	text := strings.TrimSpace(string(msg))
	if text == "" {
		return errors.New("the mount daemon exited before the mount was ready")
	}
	return errors.New(text)
}

// daemonGCPercent is the daemon's GOGC. Its heap is mostly the inodes
// the kernel holds, live for as long as the kernel keeps them, so Go's
// default (let the heap grow to twice the live data before collecting)
// shows up as resident memory beside every container. At 50 the heap
// stays within 1.5x of it. GOGC in the environment overrides it. `make
// bench` measures the daemon's resident memory after walking 200k files
// over three layers (docs/PERFORMANCE.md); `GOGC=100 make bench` measures
// it with Go's default, for comparison.
const daemonGCPercent = 50

// serve mounts and serves until the mount goes away. ready, when set, is
// told "ok" once the mount is live, or the error.
func serve(stack *branches.Stack, mountpoint string, f mountFlags, ready *os.File, trace *os.File, logger *log.Logger) error {
	defer stack.Close()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			if ready != nil {
				fmt.Fprintln(ready, err)
				ready.Close()
			}
			return err
		}
		defer stop()
	}
	server, err := unionfs.Mount(stack, mountpoint, unionfs.Config{
		Debug: f.debug, Logger: logger, NoPassthrough: !f.passthrough,
	})
	if err != nil {
		if ready != nil {
			fmt.Fprintln(ready, err)
			ready.Close()
		}
		trace.Close()
		return err
	}
	if ctl, err := control.Serve(stack, mountpoint, trace, logger); err != nil {
		logger.Printf("%v; strata explain and strata trace will not reach this mount", err)
	} else {
		defer ctl.Close()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for range sigs {
			// Lazy unmount: busy users keep their references and the
			// server still exits.
			if err := server.Unmount(); err != nil {
				unix.Unmount(mountpoint, unix.MNT_DETACH)
			}
		}
	}()
	if ready != nil {
		fmt.Fprint(ready, "ok\n")
		ready.Close()
	}
	server.Wait()
	return nil
}

// startCPUProfile profiles the daemon into path until stop is called. The
// file is created before the mount, so a bad path refuses the mount.
func startCPUProfile(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); out.Close() }, nil
}

func cmdUmount(args []string) error {
	var lazy bool
	fl := pflag.NewFlagSet("umount", pflag.ContinueOnError)
	fl.BoolVarP(&lazy, "lazy", "l", false, "detach now, finish when no longer busy")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: strata umount [-l] MOUNTPOINT\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return usageError("umount needs exactly one MOUNTPOINT")
	}
	return unmount(fl.Arg(0), lazy)
}

// unmount removes a FUSE mount: umount2 as root, fusermount3 -u otherwise.
func unmount(mountpoint string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(mountpoint, flags); err != nil {
			return fmt.Errorf("umount %s: %w", mountpoint, err)
		}
		return nil
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	args = append(args, mountpoint)
	for _, prog := range []string{"fusermount3", "fusermount"} {
		if path, err := exec.LookPath(prog); err == nil {
			out, err := exec.Command(path, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("umount %s: %s", mountpoint, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return fmt.Errorf("umount %s: not root and no fusermount3 or fusermount found", mountpoint)
}
