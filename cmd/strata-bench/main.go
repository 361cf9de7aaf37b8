// Command strata-bench measures strata side by side with a plain directory,
// kernel overlay, fuse-overlayfs and unionfs-fuse on one layered fixture, in
// one run, and prints a plain-text table of medians with ratios against
// kernel overlay (>1 = faster than kernel overlay).
//
// It needs root and /dev/fuse. Every path lives under one temp dir; every
// mount is undone on exit, error or SIGINT.
//
//	strata-bench -quick            # small sizes, well under 3 minutes
//	strata-bench                   # full sizes
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sizes are the workload parameters of one mode.
type sizes struct {
	bigFile   int64 // sequential read / copy-up file
	writeFile int64 // sequential write
	statFiles int   // files in the stat tree
	wideDir   int   // entries in the merged readdir dir
	createN   int   // create+unlink count
	depths    []int // branch counts for lookup depth
	lookups   int   // distinct bottom files looked up per depth run
}

var (
	quickSizes = sizes{256 << 20, 256 << 20, 5000, 3000, 2000, []int{1, 10, 100}, 500}
	fullSizes  = sizes{1 << 30, 1 << 30, 20000, 10000, 10000, []int{1, 10, 100, 500, 1000}, 1000}
)

const kernelMaxLower = 500 // OVL_MAX_STACK

var systems = []string{"plain", "kernel", "strata", "fuse-overlayfs", "unionfs-fuse"}

var (
	flagQuick   = flag.Bool("quick", false, "quick sizes")
	flagRuns    = flag.Int("runs", 3, "timed runs per workload (at least 3)")
	flagStrata  = flag.String("strata", "bin/strata", "path to the strata binary")
	flagTmp     = flag.String("tmpdir", "", "parent of the temp dir (default: $TMPDIR or /tmp)")
	flagOnly    = flag.String("systems", strings.Join(systems, ","), "comma-separated systems to run")
	flagTimeout = flag.Duration("timeout", 120*time.Second, "limit for one timed run; a system that exceeds it is aborted")
)

// ---------------------------------------------------------------------------
// Cleanup: everything we mounted or started, undone in reverse order.

var (
	cleanMu  sync.Mutex
	tmpRoot  string
	children = map[int]*exec.Cmd{} // daemons we started, by PID
)

func cleanup() {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	if tmpRoot == "" {
		return
	}
	for _, mp := range mountsUnder(tmpRoot) {
		if err := unix.Unmount(mp, 0); err != nil {
			abortFuse(mp)
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	for pid, c := range children {
		if c.ProcessState == nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	if left := mountsUnder(tmpRoot); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "strata-bench: could not unmount %v\n", left)
		return // do not rm -rf through a mount
	}
	_ = os.RemoveAll(tmpRoot)
	tmpRoot = ""
}

// mountInfo returns mount point -> "major:minor" from /proc/self/mountinfo.
func mountInfo() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 {
			out[unescape(fs[4])] = fs[2]
		}
	}
	return out
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	var l []string
	for mp := range mountInfo() {
		if strings.HasPrefix(mp, dir+"/") {
			l = append(l, mp)
		}
	}
	sort.Slice(l, func(i, j int) bool { return len(l[i]) > len(l[j]) })
	return l
}

func isMounted(mp string) bool { _, ok := mountInfo()[mp]; return ok }

// abortFuse aborts the FUSE connection behind mp, so that a hung daemon
// cannot block the harness.
func abortFuse(mp string) {
	dev, ok := mountInfo()[mp]
	if !ok {
		return
	}
	_, minor, _ := strings.Cut(dev, ":")
	_ = os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
}

// ---------------------------------------------------------------------------
// Fixture.

type fixture struct {
	root      string
	layers    []string // top first
	plain     string   // merged copy (hard links) for the plain-dir ceiling
	statPaths []string // relative paths of the stat tree
	depthDir  string   // holds branches "0".."N-2" and "z" (bottom)
	sz        sizes
}

func layerOf(i int) int { return i % 3 }

func mustMkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		fatal(err)
	}
}

func writeSmall(p string, data []byte) {
	if err := os.WriteFile(p, data, 0o644); err != nil {
		fatal(err)
	}
}

func buildFixture(root string, sz sizes) *fixture {
	fx := &fixture{root: root, sz: sz}
	for i := 0; i < 3; i++ {
		fx.layers = append(fx.layers, filepath.Join(root, "layers", fmt.Sprintf("l%d", i)))
	}
	fx.plain = filepath.Join(root, "plain")
	all := append([]string{fx.plain}, fx.layers...)
	for _, l := range all {
		mustMkdir(filepath.Join(l, "tree"))
		mustMkdir(filepath.Join(l, "wide"))
	}
	// Big file in the bottom layer.
	big := filepath.Join(fx.layers[2], "big.bin")
	f, err := os.Create(big)
	if err != nil {
		fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8)
	}
	for n := int64(0); n < sz.bigFile; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		fatal(err)
	}
	link := func(rel string, layer int) {
		if err := os.Link(filepath.Join(fx.layers[layer], rel), filepath.Join(fx.plain, rel)); err != nil {
			fatal(err)
		}
	}
	link("big.bin", 2)
	// Stat tree: 100 files per dir, directories present in every layer,
	// files spread over the layers.
	small := []byte("small file\n")
	for i := 0; i < sz.statFiles; i++ {
		d := fmt.Sprintf("tree/d%03d", i/100)
		if i%100 == 0 {
			for _, l := range all {
				mustMkdir(filepath.Join(l, d))
			}
		}
		rel := fmt.Sprintf("%s/f%05d", d, i)
		writeSmall(filepath.Join(fx.layers[layerOf(i)], rel), small)
		link(rel, layerOf(i))
		fx.statPaths = append(fx.statPaths, rel)
	}
	// Wide dir spread over the three layers.
	for i := 0; i < sz.wideDir; i++ {
		rel := fmt.Sprintf("wide/e%05d", i)
		writeSmall(filepath.Join(fx.layers[layerOf(i)], rel), small)
		link(rel, layerOf(i))
	}
	// Lookup depth: branches "0".."max-2" each hold d/ and one own file,
	// bottom "z" holds d/fNNNN. Short relative names keep the kernel's
	// option page (4 KiB) big enough for 500 branches.
	fx.depthDir = filepath.Join(root, "depth")
	maxN := 0
	for _, n := range sz.depths {
		maxN = max(maxN, n)
	}
	for b := 0; b < maxN-1; b++ {
		mustMkdir(filepath.Join(fx.depthDir, strconv.Itoa(b), "d"))
		writeSmall(filepath.Join(fx.depthDir, strconv.Itoa(b), "d", "own"+strconv.Itoa(b)), small)
	}
	mustMkdir(filepath.Join(fx.depthDir, "z", "d"))
	for i := 0; i < sz.lookups; i++ {
		writeSmall(filepath.Join(fx.depthDir, "z", "d", fmt.Sprintf("f%05d", i)), small)
	}
	return fx
}

// depthBranches returns the relative branch names (top first) of an
// n-branch stack; they resolve against fx.depthDir.
func (fx *fixture) depthBranches(n int) []string {
	var l []string
	for b := 0; b < n-1; b++ {
		l = append(l, strconv.Itoa(b))
	}
	return append(l, "z")
}

// ---------------------------------------------------------------------------
// Mounting.

type mounted struct {
	sys  string
	root string
	cmd  *exec.Cmd // FUSE daemon we started, nil otherwise
}

// mountSpec: lowers top first; upper/work empty for a read-only mount.
// dir is the working directory the branch paths resolve against.
type mountSpec struct {
	dir          string
	lowers       []string
	upper, work  string
	mnt          string
	strataBinary string
}

func binaryFor(sys string) string {
	switch sys {
	case "strata":
		return *flagStrata
	case "fuse-overlayfs":
		return "fuse-overlayfs"
	case "unionfs-fuse":
		if _, err := exec.LookPath("unionfs"); err == nil {
			return "unionfs"
		}
		return "unionfs-fuse"
	}
	return ""
}

func checkSystem(sys string) error {
	switch sys {
	case "plain":
		return nil
	case "kernel":
		if _, err := exec.LookPath("mount"); err != nil {
			return errors.New("no mount(8)")
		}
		return nil
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("no /dev/fuse")
	}
	if _, err := exec.LookPath(binaryFor(sys)); err != nil {
		return fmt.Errorf("%s not installed", binaryFor(sys))
	}
	return nil
}

func doMount(sys string, sp mountSpec) (*mounted, error) {
	mustMkdir(sp.mnt)
	if sp.upper != "" {
		mustMkdir(sp.upper)
		mustMkdir(sp.work)
	}
	opts := "lowerdir=" + strings.Join(sp.lowers, ":")
	if sp.upper != "" {
		opts += ",upperdir=" + sp.upper + ",workdir=" + sp.work
	}
	var args []string
	switch sys {
	case "kernel":
		c := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, sp.mnt)
		c.Dir = sp.dir
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mount -t overlay: %s", firstLine(out, err))
		}
		return &mounted{sys: sys, root: sp.mnt}, nil
	case "strata":
		args = []string{"mount", "-f", "-o", opts, sp.mnt}
	case "fuse-overlayfs":
		args = []string{"-f", "-o", opts, sp.mnt}
	case "unionfs-fuse":
		var br []string
		o := "allow_other"
		if sp.upper != "" {
			br = append(br, sp.upper+"=RW")
			o = "cow," + o
		}
		for _, l := range sp.lowers {
			br = append(br, l+"=RO")
		}
		args = []string{"-f", "-o", o, strings.Join(br, ":"), sp.mnt}
	default:
		return nil, fmt.Errorf("unknown system %s", sys)
	}
	c := exec.Command(binaryFor(sys), args...)
	c.Dir = sp.dir
	var stderr bytes.Buffer
	c.Stdout = &stderr
	c.Stderr = &stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no SIGINT from the terminal; we unmount first
	if err := c.Start(); err != nil {
		return nil, err
	}
	cleanMu.Lock()
	children[c.Process.Pid] = c
	cleanMu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(sp.mnt) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s exited before mounting (%v): %s", sys, err, firstLine(stderr.Bytes(), nil))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(c.Process.Pid, syscall.SIGKILL)
			<-exited
			return nil, fmt.Errorf("%s did not mount within 30s", sys)
		}
	}
	daemonExit[c.Process.Pid] = exited
	return &mounted{sys: sys, root: sp.mnt, cmd: c}, nil
}

var daemonExit = map[int]chan error{}

func doUnmount(m *mounted) error {
	if m == nil || m.sys == "plain" {
		return nil
	}
	var err error
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
	if m.cmd != nil {
		pid := m.cmd.Process.Pid
		select {
		case <-daemonExit[pid]:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-daemonExit[pid]
			if err == nil {
				err = fmt.Errorf("%s daemon did not exit after unmount; killed", m.sys)
			}
		}
		cleanMu.Lock()
		delete(children, pid)
		cleanMu.Unlock()
	}
	return err
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

// ---------------------------------------------------------------------------
// Results.

type kind int

const (
	throughput kind = iota // bytes per second, higher is better
	duration               // seconds, lower is better
	rate                   // operations per second, higher is better
)

type cell struct {
	value float64 // median
	note  string  // non-empty: skipped / failed, with reason
}

type workload struct {
	name string
	kind kind
	rows map[string]*cell
}

var (
	results []*workload
	notes   []string
)

func row(name string, k kind) *workload {
	for _, w := range results {
		if w.name == name {
			return w
		}
	}
	w := &workload{name: name, kind: k, rows: map[string]*cell{}}
	results = append(results, w)
	return w
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(k kind, v float64) string {
	switch k {
	case throughput:
		switch {
		case v >= 1e9:
			return fmt.Sprintf("%.2f GB/s", v/1e9)
		default:
			return fmt.Sprintf("%.0f MB/s", v/1e6)
		}
	case rate:
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM op/s", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1fk op/s", v/1e3)
		default:
			return fmt.Sprintf("%.0f op/s", v)
		}
	default:
		switch {
		case v >= 1:
			return fmt.Sprintf("%.2f s", v)
		case v >= 1e-3:
			return fmt.Sprintf("%.1f ms", v*1e3)
		default:
			return fmt.Sprintf("%.0f µs", v*1e6)
		}
	}
}

func fmtRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2fx", r)
	default:
		return fmt.Sprintf("%.3fx", r)
	}
}

// ratio is the speed relative to kernel overlay (>1 = faster).
func ratio(k kind, v, kern float64) float64 {
	if k == duration {
		return kern / v
	}
	return v / kern
}

// ---------------------------------------------------------------------------
// Timed runs.

var errTimeout = errors.New("timeout")

// timed runs fn with the per-run time limit; on timeout it aborts the
// FUSE connections mounted under base so the stuck call returns.
func timed(base string, fn func() error) (time.Duration, error) {
	type res struct {
		d   time.Duration
		err error
	}
	ch := make(chan res, 1)
	go func() {
		t := time.Now()
		err := fn()
		ch <- res{time.Since(t), err}
	}()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-time.After(*flagTimeout):
		for _, mp := range mountsUnder(base) {
			abortFuse(mp)
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
		return 0, fmt.Errorf("%w after %v", errTimeout, *flagTimeout)
	}
}

// measure runs a workload flagRuns times and records the median.
// prep (optional) runs untimed before each run; fn returns the amount of work
// (bytes or ops) done, or is measured as a duration.
func measure(w *workload, sys string, base string, prep func(run int) error, fn func(run int) (float64, error)) error {
	var vals []float64
	for run := 0; run < *flagRuns; run++ {
		if prep != nil {
			if err := prep(run); err != nil {
				w.rows[sys] = &cell{note: "failed"}
				return note(sys, w.name, err)
			}
		}
		var amount float64
		d, err := timed(base, func() error {
			var err error
			amount, err = fn(run)
			return err
		})
		if err != nil {
			w.rows[sys] = &cell{note: "failed"}
			return note(sys, w.name, err)
		}
		s := d.Seconds()
		if w.kind == duration {
			vals = append(vals, s)
		} else {
			vals = append(vals, amount/s)
		}
	}
	w.rows[sys] = &cell{value: median(vals)}
	return nil
}

func note(sys, wl string, err error) error {
	e := fmt.Errorf("%s, %s: %v", sys, wl, err)
	notes = append(notes, e.Error())
	fmt.Fprintln(os.Stderr, "strata-bench:", e)
	return e
}

func readAll(p string) (float64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return float64(n), nil
		}
		if err != nil {
			return float64(n), err
		}
	}
}

func writeNew(p string, size int64) (float64, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var n int64
	for n < size {
		k, err := f.Write(buf)
		n += int64(k)
		if err != nil {
			f.Close()
			return float64(n), err
		}
	}
	return float64(n), f.Close()
}

func statAll(root string, paths []string) (float64, error) {
	var st unix.Stat_t
	for _, p := range paths {
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			return 0, err
		}
	}
	return float64(len(paths)), nil
}

func listDir(p string, want int) (float64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	if len(names) != want {
		return 0, fmt.Errorf("readdir %s: %d entries, want %d", p, len(names), want)
	}
	return float64(len(names)), nil
}

func createUnlink(dir string, n int) (float64, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		fd, err := unix.Open(filepath.Join(dir, "c"+strconv.Itoa(i)), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return 0, err
		}
		unix.Close(fd)
	}
	for i := 0; i < n; i++ {
		if err := unix.Unlink(filepath.Join(dir, "c"+strconv.Itoa(i))); err != nil {
			return 0, err
		}
	}
	return float64(2 * n), os.Remove(dir)
}

func appendByte(p string) (float64, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write([]byte{'!'}); err != nil {
		f.Close()
		return 0, err
	}
	return 1, f.Close()
}

// ---------------------------------------------------------------------------
// Per-system driver.

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func runSystem(fx *fixture, sys string) {
	sz := fx.sz
	wlRead := row(fmt.Sprintf("seq read %s, warm", mib(sz.bigFile)), throughput)
	wlWrite := row(fmt.Sprintf("seq write %s new file", mib(sz.writeFile)), throughput)
	wlStat := row(fmt.Sprintf("stat %d files, warm", sz.statFiles), duration)
	wlDir := row(fmt.Sprintf("readdir %d entries/3 layers", sz.wideDir), duration)
	wlCreate := row(fmt.Sprintf("create+unlink %d files", sz.createN), rate)
	wlCopy := row(fmt.Sprintf("copy-up %s (append 1 B)", mib(sz.bigFile)), duration)
	var wlDepth []*workload
	for _, n := range sz.depths {
		wlDepth = append(wlDepth, row(fmt.Sprintf("lookup via %d branches, cold", n), rate))
	}
	all := append([]*workload{wlRead, wlWrite, wlStat, wlDir, wlCreate, wlCopy}, wlDepth...)
	skipAll := func(reason string) {
		for _, w := range all {
			if w.rows[sys] == nil {
				w.rows[sys] = &cell{note: "skipped"}
			}
		}
		notes = append(notes, fmt.Sprintf("%s: skipped: %s", sys, reason))
	}
	if err := checkSystem(sys); err != nil {
		skipAll(err.Error())
		return
	}
	base := filepath.Join(fx.root, "run", sys)
	mustMkdir(base)
	fmt.Fprintf(os.Stderr, "strata-bench: %s\n", sys)

	// Main writable mount.
	var m *mounted
	if sys == "plain" {
		m = &mounted{sys: sys, root: fx.plain}
	} else {
		var err error
		m, err = doMount(sys, mountSpec{dir: fx.root, lowers: fx.layers,
			upper: filepath.Join(base, "upper"), work: filepath.Join(base, "work"), mnt: filepath.Join(base, "mnt")})
		if err != nil {
			skipAll(err.Error())
			return
		}
	}
	failed := false
	step := func(err error) {
		if err != nil && errors.Is(err, errTimeout) {
			failed = true
		}
	}
	root := m.root
	// seq read, warm: one untimed pass first.
	if _, err := readAll(filepath.Join(root, "big.bin")); err != nil {
		step(note(sys, wlRead.name, err))
		wlRead.rows[sys] = &cell{note: "failed"}
	} else {
		step(measure(wlRead, sys, base, nil, func(int) (float64, error) { return readAll(filepath.Join(root, "big.bin")) }))
	}
	if !failed {
		step(measure(wlWrite, sys, base, func(run int) error {
			return os.RemoveAll(filepath.Join(root, "w.bin"))
		}, func(run int) (float64, error) { return writeNew(filepath.Join(root, "w.bin"), sz.writeFile) }))
		_ = os.Remove(filepath.Join(root, "w.bin"))
	}
	if !failed {
		_, _ = statAll(root, fx.statPaths)
		step(measure(wlStat, sys, base, nil, func(int) (float64, error) { return statAll(root, fx.statPaths) }))
	}
	if !failed {
		_, _ = listDir(filepath.Join(root, "wide"), sz.wideDir)
		step(measure(wlDir, sys, base, nil, func(int) (float64, error) { return listDir(filepath.Join(root, "wide"), sz.wideDir) }))
	}
	if !failed {
		step(measure(wlCreate, sys, base, nil, func(run int) (float64, error) {
			return createUnlink(filepath.Join(root, "cu"+strconv.Itoa(run)), sz.createN)
		}))
	}
	if err := doUnmount(m); err != nil {
		notes = append(notes, fmt.Sprintf("%s: unmount: %v", sys, err))
	}

	// Copy-up: a fresh upper for every run.
	if sys == "plain" {
		wlCopy.rows[sys] = &cell{note: "-"}
	} else if !failed {
		var cm *mounted
		step(measure(wlCopy, sys, base, func(run int) error {
			if cm != nil {
				if err := doUnmount(cm); err != nil {
					return err
				}
			}
			d := filepath.Join(base, "copyup"+strconv.Itoa(run))
			var err error
			cm, err = doMount(sys, mountSpec{dir: fx.root, lowers: fx.layers,
				upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), mnt: filepath.Join(d, "mnt")})
			return err
		}, func(run int) (float64, error) { return appendByte(filepath.Join(cm.root, "big.bin")) }))
		if cm != nil {
			_ = doUnmount(cm)
			if st, err := os.Stat(filepath.Join(cm.root, "..", "upper", "big.bin")); err == nil && st.Size() != sz.bigFile+1 {
				notes = append(notes, fmt.Sprintf("%s: copy-up: upper big.bin has %d bytes, want %d", sys, st.Size(), sz.bigFile+1))
			}
		}
	}

	// Lookup depth: read-only stacks, a fresh mount per run (cold).
	for i, n := range sz.depths {
		w := wlDepth[i]
		if failed {
			break
		}
		if sys == "kernel" && n > kernelMaxLower {
			w.rows[sys] = &cell{note: "skipped"}
			notes = append(notes, fmt.Sprintf("kernel: %s: skipped: overlay stacks at most %d lower layers", w.name, kernelMaxLower))
			continue
		}
		var dm *mounted
		prep := func(run int) error {
			if dm != nil {
				if err := doUnmount(dm); err != nil {
					return err
				}
				dm = nil
			}
			if sys == "plain" {
				dm = &mounted{sys: sys, root: filepath.Join(fx.depthDir, "z")}
				return nil
			}
			sp := mountSpec{dir: fx.depthDir, lowers: fx.depthBranches(n),
				mnt: filepath.Join(base, fmt.Sprintf("depth%d-%d", n, run))}
			if sys == "kernel" && n == 1 {
				// overlay refuses a single lowerdir without an upper:
				// put an empty upper on top instead.
				sp.upper = filepath.Join(base, fmt.Sprintf("depth1-%d.upper", run))
				sp.work = filepath.Join(base, fmt.Sprintf("depth1-%d.work", run))
			}
			var err error
			dm, err = doMount(sys, sp)
			return err
		}
		var names []string
		for k := 0; k < sz.lookups; k++ {
			names = append(names, fmt.Sprintf("d/f%05d", k))
		}
		if sys == "kernel" && n == 1 {
			notes = append(notes, "kernel: lookup via 1 branch: overlay needs two lowers without an upper, so an empty upper sits on top of the one lower")
		}
		step(measure(w, sys, base, prep, func(int) (float64, error) { return statAll(dm.root, names) }))
		_ = doUnmount(dm)
	}
	if failed {
		for _, w := range all {
			if w.rows[sys] == nil {
				w.rows[sys] = &cell{note: "skipped"}
			}
		}
		notes = append(notes, fmt.Sprintf("%s: later workloads skipped after a timeout", sys))
	}
}

// ---------------------------------------------------------------------------
// Report.

func versionOf(bin string, args ...string) string {
	if _, err := exec.LookPath(bin); err != nil {
		return "not installed"
	}
	out, _ := exec.Command(bin, args...).CombinedOutput()
	name := strings.TrimSuffix(filepath.Base(bin), "-fuse")
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, name) && strings.Contains(strings.ToLower(l), "version") {
			return l
		}
	}
	return firstLine(out, nil)
}

func report(w io.Writer, sz sizes, mode string, took time.Duration) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	var sf unix.Statfs_t
	_ = unix.Statfs(tmpRoot, &sf)
	fsType := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs"}[int64(sf.Type)]
	if fsType == "" {
		fsType = fmt.Sprintf("0x%x", sf.Type)
	}
	fmt.Fprintf(w, "strata-bench (%s sizes), %s\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "command: %s\n", strings.Join(os.Args, " "))
	fmt.Fprintf(w, "machine: Linux %s, %d CPUs, %s, backing fs %s\n", unix.ByteSliceToString(u.Release[:]), runtime.NumCPU(), runtime.Version(), fsType)
	fmt.Fprintf(w, "strata: %s; fuse-overlayfs: %s; unionfs-fuse: %s\n",
		versionOf(*flagStrata, "version"), versionOf("fuse-overlayfs", "--version"), versionOf(binaryFor("unionfs-fuse"), "--version"))
	fmt.Fprintf(w, "median of %d runs; (x) = speed relative to kernel overlay, >1 = faster; total %s\n\n", *flagRuns, took.Round(time.Second))

	cols := []string{}
	for _, s := range systems {
		if selected(s) {
			cols = append(cols, s)
		}
	}
	header := append([]string{"workload"}, cols...)
	table := [][]string{header}
	for _, wl := range results {
		r := []string{wl.name}
		kern := wl.rows["kernel"]
		for _, s := range cols {
			c := wl.rows[s]
			switch {
			case c == nil:
				r = append(r, "-")
			case c.note != "":
				r = append(r, c.note)
			case kern != nil && kern.note == "" && kern.value > 0 && s != "kernel":
				r = append(r, fmt.Sprintf("%s (%s)", format(wl.kind, c.value), fmtRatio(ratio(wl.kind, c.value, kern.value))))
			default:
				r = append(r, format(wl.kind, c.value))
			}
		}
		table = append(table, r)
	}
	width := make([]int, len(header))
	for _, r := range table {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for ri, r := range table {
		var b strings.Builder
		for i, c := range r {
			pad := width[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if ri == 0 {
			total := 0
			for _, x := range width {
				total += x + 2
			}
			fmt.Fprintln(w, strings.Repeat("-", total-2))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "workloads: seq read = 1 MiB reads of a bottom-layer file after one untimed pass; seq write = new file in the upper, no fsync;\n")
	fmt.Fprintf(w, "stat = lstat of every file of a tree spread over 3 layers, after one untimed pass; readdir = one full listing, after one untimed pass;\n")
	fmt.Fprintf(w, "create+unlink = open(O_CREAT)+close then unlink, op/s counts both; copy-up = open(O_APPEND)+1-byte write+close of the bottom\n")
	fmt.Fprintf(w, "file on a fresh mount with a fresh upper; lookup = lstat of %d distinct bottom-layer files under a dir present in every branch,\n", sz.lookups)
	fmt.Fprintf(w, "on a fresh read-only mount per run (plain: the bottom dir, warm).\n")
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}

func selected(s string) bool {
	for _, x := range strings.Split(*flagOnly, ",") {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "strata-bench:", err)
	cleanup()
	os.Exit(1)
}

func main() {
	flag.Parse()
	if *flagRuns < 3 {
		*flagRuns = 3
	}
	sz, mode := fullSizes, "full"
	if *flagQuick {
		sz, mode = quickSizes, "quick"
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "strata-bench: needs root (kernel overlay and FUSE mounts)")
		os.Exit(1)
	}
	if p, err := filepath.Abs(*flagStrata); err == nil {
		*flagStrata = p
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
	for _, s := range systems {
		if selected(s) {
			runSystem(fx, s)
		}
	}
	report(os.Stdout, sz, mode, time.Since(start))
	cleanup()
	if left := mountsUnder(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "strata-bench: stale mounts left: %v\n", left)
		os.Exit(1)
	}
}
