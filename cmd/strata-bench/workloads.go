package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// rows are the table's lines, in order.
type rows struct {
	seqReadWarm, seqReadCold, randRead, seqWrite *row
	stat, readdir, createUnlink, untar           *row
	findWarm, findCold, copyUp                   *row
	lookup                                       []*row // one per sz.depths
	rssWalk, rssDropped                          *row
}

func declareRows(fx *fixture) *rows {
	sz := fx.sz
	t := &rows{
		seqReadWarm:  newRow(fmt.Sprintf("seq read %s, warm", sizeName(sz.bigFile)), throughput),
		seqReadCold:  newRow(fmt.Sprintf("seq read %s, cold", sizeName(sz.bigFile)), throughput),
		randRead:     newRow(fmt.Sprintf("rand read 4 KiB (fio, %v), warm", sz.randReads), rate),
		seqWrite:     newRow(fmt.Sprintf("seq write %s new file", sizeName(sz.writeFile)), throughput),
		stat:         newRow(fmt.Sprintf("stat %d files, warm", sz.statFiles), duration),
		readdir:      newRow(fmt.Sprintf("readdir %d entries/3 layers", sz.wideDir), duration),
		createUnlink: newRow(fmt.Sprintf("create+unlink %d files", sz.createN), rate),
		untar:        newRow(fmt.Sprintf("untar %d files (tar -xf)", sz.untarFiles), duration),
		findWarm:     newRow(fmt.Sprintf("find %d entries, after untar", fx.untarEntries()), duration),
		findCold:     newRow(fmt.Sprintf("find %d entries, cold, fresh mount", fx.untarEntries()), duration),
		copyUp:       newRow(fmt.Sprintf("copy-up %s (append 1 B)", sizeName(sz.bigFile)), duration),
		rssWalk:      newRow(fmt.Sprintf("daemon RSS after walking %d files", sz.walkFiles), memory),
		rssDropped:   newRow(fmt.Sprintf("daemon RSS after drop_caches+%v", sz.forgetWait), memory),
	}
	for _, r := range []*row{t.stat, t.readdir, t.createUnlink, t.untar, t.findWarm, t.findCold} {
		r.metadata = true
	}
	for _, n := range sz.depths {
		t.lookup = append(t.lookup, newRow(fmt.Sprintf("lookup via %d branches, cold", n), rate))
	}
	return t
}

func (t *rows) all() []*row {
	l := []*row{t.seqReadWarm, t.seqReadCold, t.randRead, t.seqWrite, t.stat, t.readdir, t.createUnlink,
		t.untar, t.findWarm, t.findCold, t.copyUp}
	l = append(l, t.lookup...)
	return append(l, t.rssWalk, t.rssDropped)
}

func sizeName(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// untarEntries is what find prints for the extracted tree: its root, the
// directories and the files.
func (fx *fixture) untarEntries() int { return 1 + fx.tarDirs + fx.sz.untarFiles }

// sysRun runs every workload on one system.
type sysRun struct {
	fx      *fixture
	sys     system
	t       *rows
	base    string   // this system's scratch dir
	main    *mounted // the fixture's layers with a writable upper (plain: the merged copy)
	aborted bool     // a run timed out; the rest of this system is skipped
}

func runSystem(fx *fixture, sys system, t *rows) {
	s := &sysRun{fx: fx, sys: sys, t: t, base: filepath.Join(fx.root, "run", sys.name)}
	if err := sys.available(); err != nil {
		s.skipRest(err.Error())
		return
	}
	fmt.Fprintf(os.Stderr, "strata-bench: %s\n", sys.name)
	defer func(start time.Time) {
		fmt.Fprintf(os.Stderr, "strata-bench: %s took %v\n", sys.name, time.Since(start).Round(time.Second))
	}(time.Now())
	mustMkdir(s.base)
	// The previous system's writes are flushed before this one starts,
	// not while it runs.
	unix.Sync()
	var err error
	if s.main, err = s.mountLayers("main"); err != nil {
		s.skipRest(err.Error())
		return
	}
	if !sys.trace {
		s.do(s.seqReadWarm, t.seqReadWarm)
		s.do(s.seqReadCold, t.seqReadCold)
		s.do(s.randRead, t.randRead)
		s.do(s.seqWrite, t.seqWrite)
	}
	s.do(s.stat, t.stat)
	s.do(s.readdir, t.readdir)
	s.do(s.createUnlink, t.createUnlink)
	s.do(s.untar, t.untar)
	s.do(s.findWarm, t.findWarm)
	s.do(s.findCold, t.findCold)
	if err := unmount(s.main); err != nil {
		addNote("%s: unmount: %v", sys.name, err)
	}
	s.main = nil // the workloads below mount their own unions
	if sys.trace {
		// The trace table compares the metadata workloads only.
		if s.aborted {
			s.skipRest("a run timed out, so the later workloads were not run")
		}
		for _, r := range t.all() {
			if r.unset(sys.name) {
				r.mark(sys.name, "-")
			}
		}
		return
	}
	s.do(s.copyUp, t.copyUp)
	for i := range fx.sz.depths {
		s.do(func() error { return s.lookupDepth(i) }, t.lookup[i])
	}
	s.do(s.residentMemory, t.rssWalk, t.rssDropped)
	if s.aborted {
		s.skipRest("a run timed out, so the later workloads were not run")
	}
}

// do runs one workload; an error marks its rows failed, with a note.
func (s *sysRun) do(workload func() error, rs ...*row) {
	if s.aborted {
		return
	}
	start := time.Now()
	err := workload()
	fmt.Fprintf(os.Stderr, "strata-bench:   %-40s %6.1fs\n", rs[0].name, time.Since(start).Seconds())
	if err == nil {
		return
	}
	for _, r := range rs {
		r.mark(s.sys.name, "failed")
	}
	addNote("%s, %s: %v", s.sys.name, rs[0].name, err)
	s.aborted = errors.Is(err, errTimeout)
	if how, died := s.main.died(); died {
		addNote("%s: the daemon of the main mount exited (%s); the later workloads were not run", s.sys.name, how)
		s.aborted = true
	}
}

// skipRest marks every row this system has no result on as skipped.
func (s *sysRun) skipRest(reason string) {
	for _, r := range s.t.all() {
		if r.unset(s.sys.name) {
			r.mark(s.sys.name, "skipped")
		}
	}
	addNote("%s: skipped: %s", s.sys.name, reason)
}

// notApplicable marks r "-" for this system (nothing to measure there).
func (s *sysRun) notApplicable(rs ...*row) error {
	for _, r := range rs {
		r.mark(s.sys.name, "-")
	}
	return nil
}

// mountLayers mounts the fixture's three layers with a fresh upper under
// base/name (plain: the merged copy, already there).
func (s *sysRun) mountLayers(name string) (*mounted, error) {
	if s.sys.isPlain() {
		return &mounted{sys: s.sys, root: s.fx.plain}, nil
	}
	d := filepath.Join(s.base, name)
	return mount(s.sys, mountSpec{dir: s.fx.root, lowers: s.fx.layers,
		upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), mnt: filepath.Join(d, "mnt")})
}

func (s *sysRun) path(rel string) string { return filepath.Join(s.main.root, rel) }

// dropCaches writes level to drop_caches after a sync: 3 drops page cache,
// dentries and inodes; 2 only dentries and inodes.
func dropCaches(level int) error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte(strconv.Itoa(level)), 0)
}

// ---------------------------------------------------------------------------
// The workloads, one function each.

// seqReadWarm reads big.bin (bottom layer) in 1 MiB reads after one untimed pass.
func (s *sysRun) seqReadWarm() error {
	read := func() (float64, error) { return readAll(s.path("big.bin")) }
	return s.measure(s.t.seqReadWarm, onceBefore(read), func(int) (sample, error) { return counted(read()) })
}

// seqReadCold reads big.bin after sync and drop_caches (3) before each run.
func (s *sysRun) seqReadCold() error {
	p := s.path("big.bin")
	return s.measure(s.t.seqReadCold, func(int) error { return dropCaches(3) },
		func(int) (sample, error) { return counted(readAll(p)) })
}

// randRead has fio read 4 KiB blocks of big.bin at random (fixed seed,
// psync, page cache on) after the sequential reads left it cached.
func (s *sysRun) randRead() error {
	if _, err := exec.LookPath("fio"); err != nil {
		return s.skip(s.t.randRead, "fio not installed")
	}
	p := s.path("big.bin")
	return s.measure(s.t.randRead, nil, func(int) (sample, error) { return fio(p, s.fx.sz.randReads) })
}

// seqWrite writes a new file in the upper (no fsync), removed between runs.
func (s *sysRun) seqWrite() error {
	p := s.path("w.bin")
	defer os.Remove(p)
	return s.measure(s.t.seqWrite, func(int) error { return os.RemoveAll(p) },
		func(int) (sample, error) { return counted(writeNew(p, s.fx.sz.writeFile)) })
}

// stat lstats every file of the stat tree, after one untimed pass.
func (s *sysRun) stat() error {
	walk := func() (float64, error) { return statAll(s.main.root, s.fx.statPaths) }
	return s.measure(s.t.stat, onceBefore(walk), func(int) (sample, error) { return counted(walk()) })
}

// readdir lists the merged wide/ once per run, after one untimed listing.
func (s *sysRun) readdir() error {
	list := func() (float64, error) { return listDir(s.path("wide"), s.fx.sz.wideDir) }
	return s.measure(s.t.readdir, onceBefore(list), func(int) (sample, error) { return counted(list()) })
}

// onceBefore is a measure prep that does fn once, untimed, before the first
// run: the warm-up of the warm workloads.
func onceBefore(fn func() (float64, error)) func(run int) error {
	return func(run int) error {
		if run > 0 {
			return nil
		}
		_, err := fn()
		return err
	}
}

// createUnlink creates then unlinks n empty files in a new dir per run.
func (s *sysRun) createUnlink() error {
	return s.measure(s.t.createUnlink, nil, func(run int) (sample, error) {
		return counted(createUnlink(s.path("cu"+strconv.Itoa(run)), s.fx.sz.createN))
	})
}

// untar extracts the fixture's tarball with the system tar into a new
// directory of the union per run (so into the upper).
func (s *sysRun) untar() error {
	dir := func(run int) string { return s.path("untar" + strconv.Itoa(run)) }
	return s.measure(s.t.untar, func(run int) error { return os.Mkdir(dir(run), 0o755) },
		func(run int) (sample, error) {
			out, err := exec.Command("tar", "-xf", s.fx.tarball, "-C", dir(run)).CombinedOutput()
			if err != nil {
				return sample{}, fmt.Errorf("tar -xf: %s", firstLine(out, err))
			}
			return sample{amount: float64(s.fx.sz.untarFiles)}, nil
		})
}

// findWarm runs find over the first untarred tree on the mount that made it.
func (s *sysRun) findWarm() error {
	if _, ok := s.t.untar.value(s.sys.name); !ok {
		return s.skip(s.t.findWarm, "needs the untar workload")
	}
	return s.measure(s.t.findWarm, nil, func(int) (sample, error) { return s.find() })
}

// findCold runs find over the same tree on a fresh mount of the same upper
// after drop_caches (3), each run.
func (s *sysRun) findCold() error {
	if _, ok := s.t.untar.value(s.sys.name); !ok {
		return s.skip(s.t.findCold, "needs the untar workload")
	}
	fresh := func(int) error {
		var err error
		if s.main, err = remount(s.main); err != nil {
			return err
		}
		return dropCaches(3)
	}
	return s.measure(s.t.findCold, fresh, func(int) (sample, error) { return s.find() })
}

// find runs find(1) over untar0 and checks it saw every entry.
func (s *sysRun) find() (sample, error) {
	var out bytes.Buffer
	c := exec.Command("find", s.path("untar0"))
	c.Stdout = &out
	if err := c.Run(); err != nil {
		return sample{}, fmt.Errorf("find: %v", err)
	}
	n := bytes.Count(out.Bytes(), []byte{'\n'})
	if n != s.fx.untarEntries() {
		return sample{}, fmt.Errorf("find printed %d entries, want %d", n, s.fx.untarEntries())
	}
	return sample{amount: float64(n)}, nil
}

// copyUp appends one byte to the bottom layer's big.bin on a fresh mount
// with a fresh upper per run, and checks the upper got the whole file.
func (s *sysRun) copyUp() error {
	if s.sys.isPlain() {
		return s.notApplicable(s.t.copyUp)
	}
	var m *mounted
	done := func() error { // unmount, check and drop the previous run's union
		if m == nil {
			return nil
		}
		err := unmount(m)
		upperCopy := filepath.Join(m.spec.upper, "big.bin")
		if st, serr := os.Stat(upperCopy); serr != nil || st.Size() != s.fx.sz.bigFile+1 {
			err = errors.Join(err, fmt.Errorf("after copy-up, %s is not %d bytes (%v)", upperCopy, s.fx.sz.bigFile+1, serr))
		}
		if !isMounted(m.root) { // never remove through a mount
			err = errors.Join(err, os.RemoveAll(filepath.Dir(m.spec.upper)))
		}
		m = nil
		return err
	}
	fresh := func(run int) error {
		if err := done(); err != nil {
			return err
		}
		var err error
		m, err = s.mountLayers("copyup" + strconv.Itoa(run))
		return err
	}
	err := s.measure(s.t.copyUp, fresh, func(int) (sample, error) { return counted(appendByte(filepath.Join(m.root, "big.bin"))) })
	return errors.Join(err, done())
}

// lookupDepth lstats distinct bottom-layer files under a directory present
// in every branch of an n-branch read-only stack, on a fresh mount per run
// where only that directory has been looked up.
func (s *sysRun) lookupDepth(i int) error {
	n, r := s.fx.sz.depths[i], s.t.lookup[i]
	if (s.sys.isKernel() || s.sys.daemon == "gofuse-loopback") && n > kernelMaxLower {
		return s.skip(r, fmt.Sprintf("overlay stacks at most %d lower layers", kernelMaxLower))
	}
	names := s.fx.lookupNames()
	var m *mounted
	fresh := func(run int) error {
		if s.sys.isPlain() {
			m = &mounted{sys: s.sys, root: filepath.Join(s.fx.depthDir, "z")}
			return nil
		}
		if err := unmount(m); err != nil {
			return err
		}
		sp := mountSpec{dir: s.fx.depthDir, lowers: s.fx.depthBranches(n), mnt: filepath.Join(s.base, fmt.Sprintf("depth%d-%d", n, run))}
		if s.sys.isKernel() && n == 1 {
			// overlay refuses a single lowerdir without an upper:
			// an empty upper sits on top instead.
			sp.upper, sp.work = sp.mnt+".upper", sp.mnt+".work"
		}
		var err error
		if m, err = mount(s.sys, sp); err != nil {
			return err
		}
		// Resolve d, present in every branch, untimed: the timed part is
		// then the lookups of names below it alone, whatever their count.
		var st unix.Stat_t
		return unix.Lstat(filepath.Join(m.root, "d"), &st)
	}
	if s.sys.isKernel() && n == 1 {
		addNote("kernel, %s: overlay needs two lowers without an upper, so an empty upper sits on top of the one lower", r.name)
	}
	err := s.measure(r, fresh, func(int) (sample, error) { return counted(statAll(m.root, names)) })
	return errors.Join(err, unmount(m))
}

// residentMemory reads the daemon's VmRSS after walking (lstat of every
// entry) the walk/ tree on a fresh read-only mount, then again after
// drop_caches (2) and a pause for the kernel's FORGETs. Median per row.
func (s *sysRun) residentMemory() error {
	if s.sys.daemon == "" {
		return s.notApplicable(s.t.rssWalk, s.t.rssDropped)
	}
	var afterWalk, afterDrop []float64
	for run := 0; run < *flagRuns; run++ {
		m, err := mount(s.sys, mountSpec{dir: s.fx.root, lowers: s.fx.layers, mnt: filepath.Join(s.base, fmt.Sprintf("rss%d", run))})
		if err != nil {
			return err
		}
		walked, dropped, err := s.residentAround(m)
		if err = errors.Join(err, unmount(m)); err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		afterWalk, afterDrop = append(afterWalk, walked), append(afterDrop, dropped)
	}
	s.t.rssWalk.set(s.sys.name, afterWalk)
	s.t.rssDropped.set(s.sys.name, afterDrop)
	return nil
}

func (s *sysRun) residentAround(m *mounted) (walked, dropped float64, err error) {
	pid, err := daemonPID(m)
	if err != nil {
		return 0, 0, err
	}
	if _, err := timed(s.base, func() error { return walkAll(filepath.Join(m.root, "walk"), s.fx.walkFiles+s.fx.walkDirs) }); err != nil {
		return 0, 0, err
	}
	if walked, err = residentBytes(pid); err != nil {
		return 0, 0, err
	}
	if err := dropCaches(2); err != nil {
		return 0, 0, err
	}
	time.Sleep(s.fx.sz.forgetWait)
	dropped, err = residentBytes(pid)
	return walked, dropped, err
}

// skip marks r skipped for this system, with the reason in the notes once.
func (s *sysRun) skip(r *row, reason string) error {
	r.mark(s.sys.name, "skipped")
	addNote("%s, %s: skipped: %s", s.sys.name, r.name, reason)
	return nil
}

// ---------------------------------------------------------------------------
// File-system operations the workloads time.

func readAll(p string) (float64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return float64(n), err
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

// walkAll lstats every entry under root and checks there were want.
func walkAll(root string, want int) error {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, err := d.Info(); err != nil {
			return err
		}
		n++
		return nil
	})
	if err == nil && n != want {
		err = fmt.Errorf("walk %s: %d entries, want %d", root, n, want)
	}
	return err
}

// fio reads random 4 KiB blocks of p for d (page cache on, psync, fixed
// seed) and returns the reads done and fio's own elapsed time. A time-based
// run keeps fio's millisecond clock precise at any speed.
func fio(p string, d time.Duration) (sample, error) {
	c := exec.Command("fio", "--name=randread", "--filename="+p, "--readonly", "--rw=randread", "--bs=4k",
		"--direct=0", "--invalidate=0", "--ioengine=psync", "--randseed=20261123",
		"--time_based", fmt.Sprintf("--runtime=%dms", d.Milliseconds()), "--output-format=json")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return sample{}, fmt.Errorf("fio: %s", firstLine(stderr.Bytes(), err))
	}
	var res struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  struct {
				TotalIOs  float64 `json:"total_ios"`
				RuntimeMS float64 `json:"runtime"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:] // fio may print notices before the JSON
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return sample{}, fmt.Errorf("fio output: %v", err)
	}
	if len(res.Jobs) != 1 || res.Jobs[0].Error != 0 || res.Jobs[0].Read.TotalIOs <= 0 || res.Jobs[0].Read.RuntimeMS <= 0 {
		return sample{}, fmt.Errorf("fio: unexpected result %+v", res.Jobs)
	}
	rd := res.Jobs[0].Read
	return sample{amount: rd.TotalIOs, took: time.Duration(rd.RuntimeMS * float64(time.Millisecond))}, nil
}
