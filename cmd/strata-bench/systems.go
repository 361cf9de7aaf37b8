package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// system is one way of presenting the fixture's layers as one tree.
type system struct {
	name   string
	daemon string   // FUSE daemon: "strata", "fuse-overlayfs" or "unionfs-fuse"; "" for plain and kernel
	flags  []string // extra flags for the daemon (strata variants)
	about  string   // one line for the report, for variants
	// trace: a variant for the trace cost table (issue #8) instead of the
	// main one; it runs the metadata workloads only.
	trace   bool
	notrace bool // the binary built with -tags strata_notrace
	traceOn bool // mounted with --trace to a file beside the mount
}

var allSystems = []system{
	{name: "plain"},
	{name: "kernel"},
	{name: "strata", daemon: "strata"},
	// The trace variants run right after strata, one after the other and
	// on the metadata workloads only, so that the trace cost table compares
	// like with like: strata's own column ran the data workloads first,
	// whose write-back still loads the disk during its metadata runs.
	{name: "strata-off", daemon: "strata", trace: true, about: "strata (tracing off, hooks built in) on the metadata workloads only, for the trace cost table"},
	{name: "strata-notrace", daemon: "strata", trace: true, notrace: true, about: "strata built with -tags strata_notrace: the trace hooks compiled out"},
	{name: "strata-trace", daemon: "strata", trace: true, traceOn: true, about: "strata mount --trace FILE: every union decision written to FILE"},
	{name: "strata-nopt", daemon: "strata", flags: []string{"--passthrough=false"}, about: "strata mount --passthrough=false (file I/O through the daemon)"},
	{name: "fuse-overlayfs", daemon: "fuse-overlayfs"},
	{name: "unionfs-fuse", daemon: "unionfs-fuse"},
	{name: "gofuse-loopback", daemon: "gofuse-loopback", about: "go-fuse's loopback (no union logic) over a kernel overlay of the same layers: what any go-fuse filesystem pays here"},
}

const kernelMaxLower = 500 // OVL_MAX_STACK

func (s system) isPlain() bool  { return s.name == "plain" }
func (s system) isKernel() bool { return s.name == "kernel" }

// binary is the executable of a FUSE daemon.
func (s system) binary() string {
	switch s.daemon {
	case "gofuse-loopback":
		self, _ := os.Executable()
		return self
	case "strata":
		if s.notrace {
			return *flagStrataNotrace
		}
		return *flagStrata
	case "unionfs-fuse":
		// Debian installs it as "unionfs"; other builds as "unionfs-fuse".
		if _, err := exec.LookPath("unionfs"); err == nil {
			return "unionfs"
		}
	}
	return s.daemon
}

// available says why the system cannot run here, or nil.
func (s system) available() error {
	switch {
	case s.isPlain():
		return nil
	case s.isKernel():
		if _, err := exec.LookPath("mount"); err != nil {
			return errors.New("no mount(8)")
		}
		return nil
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("no /dev/fuse")
	}
	if _, err := exec.LookPath(s.binary()); err != nil {
		return fmt.Errorf("%s not installed", s.binary())
	}
	return nil
}

// mountSpec describes one union: lowers top first, relative to dir; no
// upper means a read-only union.
type mountSpec struct {
	dir         string
	lowers      []string
	upper, work string
	mnt         string
}

// mounted is a live union (or, for plain, just a directory).
type mounted struct {
	sys    system
	spec   mountSpec
	root   string
	daemon *exec.Cmd // FUSE daemon we started; nil otherwise
	under  *mounted  // gofuse-loopback: the kernel overlay it serves
	// Once the daemon has exited, done is closed; exitErr and output (its
	// stdout and stderr) are final then.
	done    chan struct{}
	exitErr error
	output  *bytes.Buffer
}

// died says whether m's daemon exited while it should be serving, and how.
func (m *mounted) died() (string, bool) {
	if m == nil || m.daemon == nil {
		return "", false
	}
	select {
	case <-m.done:
		return fmt.Sprintf("%v: %s", m.exitErr, lastLine(m.output.Bytes())), true
	default:
		return "", false
	}
}

// mount mounts sp with sys. A FUSE daemon runs in the foreground as our
// child, so its PID is the daemon's.
func mount(sys system, sp mountSpec) (*mounted, error) {
	for _, d := range []string{sp.mnt, sp.upper, sp.work} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
	}
	if sys.isKernel() {
		return mountKernel(sys, sp)
	}
	var under *mounted
	if sys.daemon == "gofuse-loopback" {
		if len(sp.lowers) > kernelMaxLower {
			return nil, fmt.Errorf("the kernel overlay under it stacks at most %d lower layers", kernelMaxLower)
		}
		var err error
		if under, err = mountUnderLoopback(sp); err != nil {
			return nil, err
		}
	}
	m, err := mountDaemon(sys, sp)
	if err != nil {
		if under != nil {
			_ = unmount(under)
		}
		return nil, err
	}
	m.under = under
	return m, nil
}

// mountDaemon starts sys's FUSE daemon for sp and waits for the mount.
func mountDaemon(sys system, sp mountSpec) (*mounted, error) {
	c := exec.Command(sys.binary(), daemonArgs(sys, sp)...)
	c.Dir = sp.dir
	out := &bytes.Buffer{}
	c.Stdout, c.Stderr = out, out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no SIGINT from the terminal: we unmount first
	m := &mounted{sys: sys, spec: sp, root: sp.mnt, daemon: c, done: make(chan struct{}), output: out}
	if err := startMount(m, c.Start); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(sp.mnt) {
		select {
		case <-m.done:
			return nil, fmt.Errorf("%s exited before mounting (%v): %s", sys.name, m.exitErr, firstLine(out.Bytes(), nil))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = c.Process.Kill()
			<-m.done
			return nil, fmt.Errorf("%s did not mount within 30s", sys.name)
		}
	}
	return m, nil
}

func mountKernel(sys system, sp mountSpec) (*mounted, error) {
	m := &mounted{sys: sys, spec: sp, root: sp.mnt}
	err := startMount(m, func() error {
		c := exec.Command("mount", "-t", "overlay", "overlay", "-o", overlayOptions(sp), sp.mnt)
		c.Dir = sp.dir
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("mount -t overlay: %s", firstLine(out, err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func overlayOptions(sp mountSpec) string {
	opts := "lowerdir=" + strings.Join(sp.lowers, ":")
	if sp.upper != "" {
		opts += ",upperdir=" + sp.upper + ",workdir=" + sp.work
	}
	return opts
}

func daemonArgs(sys system, sp mountSpec) []string {
	switch sys.daemon {
	case "strata":
		args := append([]string{"mount", "-f"}, sys.flags...)
		if sys.traceOn {
			args = append(args, "--trace", filepath.Join(filepath.Dir(sp.mnt), "trace.jsonl"))
		}
		return append(args, "-o", overlayOptions(sp), sp.mnt)
	case "fuse-overlayfs":
		return append(append([]string{"-f"}, sys.flags...), "-o", overlayOptions(sp), sp.mnt)
	case "gofuse-loopback":
		return []string{"-serve-loopback", loopbackSource(sp), sp.mnt}
	}
	// unionfs-fuse: branches top first, upper read-write with copy-on-write.
	var br []string
	opts := "allow_other"
	if sp.upper != "" {
		br = append(br, sp.upper+"=RW")
		opts = "cow," + opts
	}
	for _, l := range sp.lowers {
		br = append(br, l+"=RO")
	}
	return append(append([]string{"-f"}, sys.flags...), "-o", opts, strings.Join(br, ":"), sp.mnt)
}

// unmount undoes m and waits for its daemon to exit; a daemon that hangs
// is aborted and killed.
func unmount(m *mounted) (err error) {
	if m == nil || m.sys.isPlain() {
		return nil
	}
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(m.root, 0); err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		abortFuse(m.root)
		_ = unix.Unmount(m.root, unix.MNT_DETACH)
	}
	if m.daemon == nil {
		return err
	}
	if m.under != nil {
		defer func() { err = errors.Join(err, unmount(m.under)) }()
	}
	// fuse-overlayfs 1.10 now and then takes 20 s to exit after an
	// unmount; that is worth a note, not a failed run.
	start := time.Now()
	select {
	case <-m.done:
		if d := time.Since(start); d > slowExit {
			addNote("%s: the daemon took %v to exit after an unmount", m.sys.name, d.Round(time.Second))
		}
	case <-time.After(daemonExitLimit):
		_ = m.daemon.Process.Kill()
		<-m.done
		err = errors.Join(err, fmt.Errorf("%s daemon did not exit within %v after unmount; killed", m.sys.name, daemonExitLimit))
	}
	return err
}

const (
	slowExit        = 5 * time.Second
	daemonExitLimit = 60 * time.Second
)

// remount unmounts m and mounts the same spec again: a fresh mount over
// the same upper.
func remount(m *mounted) (*mounted, error) {
	if m.sys.isPlain() {
		return m, nil
	}
	if err := unmount(m); err != nil {
		return nil, err
	}
	return mount(m.sys, m.spec)
}

// daemonPID is the PID of m's FUSE daemon, checked to hold /dev/fuse open.
func daemonPID(m *mounted) (int, error) {
	if m.daemon == nil {
		return 0, errors.New("no daemon")
	}
	pid := m.daemon.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	for _, fd := range fds {
		if t, _ := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name())); t == "/dev/fuse" {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("PID %d (%s) has no /dev/fuse open: not the daemon", pid, m.sys.binary())
}

// residentBytes reads VmRSS of pid.
func residentBytes(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func lastLine(out []byte) string {
	s := strings.TrimSpace(string(out))
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" && err != nil {
		s = err.Error()
	}
	return s
}
