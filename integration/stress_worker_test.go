package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A TestStress worker is this test binary run again with stressJobEnv set
// to a JSON stressJob: TestMain hands it to runStressWorker before it
// builds anything. The worker does its owner operations (stressModel.next)
// on its own directory, checking each result against the model at once,
// and between two of them plays a reader of the other workers' files: it
// keeps read descriptors and read-only shared mappings open on the names
// each other worker is about to work on (it learns where they are from the
// board, a small file outside the union), reads them as tail -f does, and
// keeps them open while their owner copies them up.
const stressJobEnv = "STRATA_STRESS_JOB"

type stressJob struct {
	Shape    stressShape
	Worker   int
	Seed     int64
	Root     string    // the union's mountpoint
	Ops      int64     // > 0: exactly this many owner operations (a replay)
	Deadline time.Time // Ops == 0: run until then
	Board    string    // "" for no reader role (replays)
	Result   string    // where to write the stressResult as JSON
}

// stressResult is what a worker reports.
type stressResult struct {
	Worker   int
	Ops      int64            // owner operations done
	Kinds    map[string]int64 // per kind, reader actions included
	Expected map[string]int64 // expected errors, by kind:errno
	NErrors  int64            // unexpected results
	ByClass  map[string]int64 // unexpected results, by kind:what
	Errors   []string         // the first of each class, stressMaxErrors at most
}

const (
	stressMaxErrors   = 20
	stressHistory     = 8    // operations remembered per name, for error reports
	stressGiveUpAfter = 2000 // a dead mount fails everything: stop early
	stressFollowExtra = 2    // names past a window a reader already holds
	stressMapMax      = 64 << 10
)

type stressFollow struct {
	fd  int // -1: the open failed
	mem []byte
}

type stressWorker struct {
	job   stressJob
	dir   string
	res   stressResult
	held  [stressHeldSlots]int
	board *os.File
	rr    *rand.Rand // the reader role's choices (not part of the replay)
	// follows[o] are the descriptors held on worker o's files, by name.
	follows []map[string]*stressFollow
	// history has the last operations on each name, heldName the name
	// each held slot was opened on, and context the names of the current
	// operation: an error report shows what led to it.
	history  map[string][]string
	heldName [stressHeldSlots]string
	context  []string
}

// runStressWorker runs one worker and returns its exit code.
func runStressWorker(jobJSON string) int {
	var job stressJob
	if err := json.Unmarshal([]byte(jobJSON), &job); err != nil {
		fmt.Fprintf(os.Stderr, "stress worker: bad job: %v\n", err)
		return 2
	}
	unix.Umask(0)
	// A shared mapping of a file truncated meanwhile faults (SIGBUS):
	// panic, so that touch can recover, instead of crashing.
	debug.SetPanicOnFault(true)
	w := &stressWorker{
		job:     job,
		dir:     filepath.Join(job.Root, fmt.Sprintf("w%d", job.Worker)),
		res:     stressResult{Worker: job.Worker, Kinds: map[string]int64{}, Expected: map[string]int64{}, ByClass: map[string]int64{}},
		history: map[string][]string{},
		rr:      rand.New(rand.NewPCG(uint64(job.Seed)^0x5eed, uint64(job.Worker))),
	}
	for i := range w.held {
		w.held[i] = -1
	}
	if job.Board != "" {
		f, err := os.OpenFile(job.Board, os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "stress worker: %v\n", err)
			return 2
		}
		w.board = f
		w.follows = make([]map[string]*stressFollow, job.Shape.Workers)
		for o := range w.follows {
			w.follows[o] = map[string]*stressFollow{}
		}
	}
	w.run()
	data, err := json.Marshal(w.res)
	if err == nil {
		err = os.WriteFile(job.Result, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stress worker: %v\n", err)
		return 2
	}
	return 0
}

func (w *stressWorker) run() {
	m := newStressModel(w.job.Shape, w.job.Worker)
	r := stressRand(w.job.Seed, w.job.Worker)
	published := -1
	for seq := int64(0); ; seq++ {
		if w.job.Ops > 0 && seq >= w.job.Ops || w.job.Ops == 0 && time.Now().After(w.job.Deadline) {
			break
		}
		if w.res.NErrors >= stressGiveUpAfter {
			w.errorf("gave-up", "giving up after %d unexpected results", w.res.NErrors)
			break
		}
		if b := w.job.Shape.windowBase(seq); w.board != nil && b != published {
			w.publish(b)
			published = b
		}
		op := m.next(r, seq)
		want := m.apply(op)
		w.res.Kinds[op.Kind.String()]++
		w.context = []string{op.Name, op.Name2}
		if op.Kind == opReadHeld {
			w.context = []string{w.heldName[op.Slot]}
		}
		w.do(op, want)
		w.context = nil
		w.remember(op, want)
		w.res.Ops = seq + 1
		if w.board != nil {
			w.readerStep()
		}
	}
}

// errorf records an unexpected result of class (kind:what). The first of
// each class is kept, with the recent history of the names involved.
func (w *stressWorker) errorf(class, format string, args ...any) {
	w.res.NErrors++
	w.res.ByClass[class]++
	if w.res.ByClass[class] > 1 || len(w.res.Errors) >= stressMaxErrors {
		return
	}
	msg := fmt.Sprintf("w%d ", w.job.Worker) + fmt.Sprintf(format, args...)
	for _, name := range w.context {
		if h := w.history[name]; name != "" && len(h) > 0 {
			msg += fmt.Sprintf("\n      earlier on %s: %s", name, strings.Join(h, "; "))
		}
	}
	w.res.Errors = append(w.res.Errors, msg)
}

// remember notes op in the history of the names it used.
func (w *stressWorker) remember(op stressOp, want stressWant) {
	s := op.String()
	if want.Errno != 0 {
		s += " (" + unix.ErrnoName(want.Errno) + ")"
	}
	names := []string{op.Name, op.Name2}
	if op.Kind == opReadHeld {
		names = []string{w.heldName[op.Slot]}
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		h := append(w.history[n], s)
		w.history[n] = h[max(0, len(h)-stressHistory):]
	}
	if op.Kind == opHold {
		w.heldName[op.Slot] = ""
		if want.Errno == 0 {
			w.heldName[op.Slot] = op.Name
		}
	}
}

// retry repeats a system call that a signal interrupted.
func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if err != nil {
		return syscall.EIO
	}
	return 0
}

func (w *stressWorker) path(name string) string { return filepath.Join(w.dir, name) }

func openFd(p string, flags int, mode uint32) (fd int, err error) {
	err = retry(func() error {
		var e error
		fd, e = unix.Open(p, flags|unix.O_CLOEXEC, mode)
		return e
	})
	return fd, err
}

// preadAll reads fd from offset 0 to its end.
func preadAll(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		var n int
		err := retry(func() error {
			var e error
			n, e = unix.Pread(fd, buf, int64(len(out)))
			return e
		})
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

func writeAll(fd int, data []byte, off int64) error {
	for len(data) > 0 {
		var n int
		err := retry(func() error {
			var e error
			if off < 0 {
				n, e = unix.Write(fd, data)
			} else {
				n, e = unix.Pwrite(fd, data, off)
			}
			return e
		})
		if err != nil {
			return err
		}
		data = data[n:]
		if off >= 0 {
			off += int64(n)
		}
	}
	return nil
}

func fstatFd(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstat(fd, &st) })
	return st, err
}

// contentDiff says where got and want first differ.
func contentDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	excerpt := func(b []byte) string {
		end := min(len(b), i+40)
		return fmt.Sprintf("%q", b[i:end])
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at byte %d: got %s, want %s",
		len(got), len(want), i, excerpt(got), excerpt(want))
}

// do runs op on the union and checks what it returns against want.
func (w *stressWorker) do(op stressOp, want stressWant) {
	p := w.path(op.Name)
	// check compares an outcome; it returns false when the operation
	// cannot go on.
	check := func(step string, err error) bool {
		got := errnoOf(err)
		if got == want.Errno {
			if got != 0 {
				w.res.Expected[op.Kind.String()+":"+unix.ErrnoName(got)]++
			}
			return got == 0
		}
		w.errorf(fmt.Sprintf("%s:%s:%s", op.Kind, step, errnoName(got)), "%s: %s: got %v, want %v", op, step, err, errnoName(want.Errno))
		return false
	}
	// checkFd checks size and mode through the descriptor itself.
	checkFd := func(fd int, step string) {
		st, err := fstatFd(fd)
		if err != nil {
			w.errorf(op.Kind.String()+":fstat:"+errnoName(errnoOf(err)), "%s: fstat after %s: %v", op, step, err)
			return
		}
		if st.Size != want.Size || st.Mode&0o7777 != want.Perm {
			w.errorf(op.Kind.String()+":fstat-size-mode", "%s: fstat after %s: size %d mode %04o, want size %d mode %04o", op, step, st.Size, st.Mode&0o7777, want.Size, want.Perm)
		}
	}
	switch op.Kind {
	case opRead:
		fd, err := openFd(p, unix.O_RDONLY, 0)
		if !check("open", err) {
			return
		}
		defer unix.Close(fd)
		checkFd(fd, "open")
		got, err := preadAll(fd)
		if err != nil {
			w.errorf("read:read:"+errnoName(errnoOf(err)), "%s: read: %v", op, err)
		} else if !bytes.Equal(got, want.Data) {
			w.errorf("read:content", "%s: read %s", op, contentDiff(got, want.Data))
		}
	case opHold:
		if w.held[op.Slot] >= 0 {
			unix.Close(w.held[op.Slot])
			w.held[op.Slot] = -1
		}
		fd, err := openFd(p, unix.O_RDONLY, 0)
		if check("open", err) {
			w.held[op.Slot] = fd
		}
	case opReadHeld:
		fd := w.held[op.Slot]
		if fd < 0 {
			return // its open failed, and said so
		}
		got, err := preadAll(fd)
		if err != nil {
			w.errorf("readheld:read:"+errnoName(errnoOf(err)), "%s: read: %v", op, err)
		} else if !bytes.Equal(got, want.Data) {
			w.errorf("readheld:content", "%s: a descriptor held across changes read %s", op, contentDiff(got, want.Data))
		}
	case opWrite, opAppend:
		flags := unix.O_WRONLY | unix.O_CREAT
		if op.Kind == opAppend {
			flags |= unix.O_APPEND
		}
		if op.Trunc {
			flags |= unix.O_TRUNC
		}
		fd, err := openFd(p, flags, 0o644)
		if !check("open", err) {
			return
		}
		defer unix.Close(fd)
		off := int64(0)
		if op.Kind == opAppend {
			off = -1
		}
		if err := writeAll(fd, op.Data, off); err != nil {
			w.errorf(op.Kind.String()+":write:"+errnoName(errnoOf(err)), "%s: write: %v", op, err)
			return
		}
		checkFd(fd, "write")
	case opPwrite:
		fd, err := openFd(p, unix.O_RDWR, 0)
		if !check("open", err) {
			return
		}
		defer unix.Close(fd)
		if err := writeAll(fd, op.Data, op.Off); err != nil {
			w.errorf("pwrite:pwrite:"+errnoName(errnoOf(err)), "%s: pwrite: %v", op, err)
			return
		}
		back := make([]byte, len(op.Data))
		n, err := unix.Pread(fd, back, op.Off)
		if err != nil || !bytes.Equal(back[:max(n, 0)], op.Data) {
			w.errorf("pwrite:read-back", "%s: pread after pwrite: %v, %s", op, err, contentDiff(back[:max(n, 0)], op.Data))
		}
		checkFd(fd, "pwrite")
	case opTruncate:
		check("truncate", retry(func() error { return unix.Truncate(p, op.Size) }))
	case opFtruncate:
		fd, err := openFd(p, unix.O_RDWR, 0)
		if !check("open", err) {
			return
		}
		defer unix.Close(fd)
		if err := retry(func() error { return unix.Ftruncate(fd, op.Size) }); err != nil {
			w.errorf("ftruncate:ftruncate:"+errnoName(errnoOf(err)), "%s: ftruncate: %v", op, err)
			return
		}
		checkFd(fd, "ftruncate")
	case opMmap:
		fd, err := openFd(p, unix.O_RDWR, 0)
		if !check("open", err) {
			return
		}
		defer unix.Close(fd)
		if op.Size > 0 {
			if st, err := fstatFd(fd); err == nil && st.Size == 0 {
				if err := retry(func() error { return unix.Ftruncate(fd, op.Size) }); err != nil {
					w.errorf("mmap:ftruncate:"+errnoName(errnoOf(err)), "%s: ftruncate: %v", op, err)
					return
				}
			}
		}
		if err := mmapWrite(fd, int(want.Size), op.Off, op.Data); err != nil {
			w.errorf("mmap:mmap", "%s: %v", op, err)
			return
		}
		checkFd(fd, "msync")
	case opRename:
		check("rename", retry(func() error { return unix.Rename(p, w.path(op.Name2)) }))
	case opUnlink:
		check("unlink", retry(func() error { return unix.Unlink(p) }))
	case opLink:
		check("link", retry(func() error { return unix.Link(p, w.path(op.Name2)) }))
	case opChmod:
		check("chmod", retry(func() error { return unix.Chmod(p, op.Mode) }))
	}
}

func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "success"
	}
	return unix.ErrnoName(e)
}

// mmapWrite maps fd's first size bytes shared and writable, copies data in
// at off, and msyncs. A fault (the file is shorter than the model says) is
// an error, not a crash.
func mmapWrite(fd, size int, off int64, data []byte) (err error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	defer unix.Munmap(mem)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fault writing through a shared mapping of %d bytes: %v", size, r)
		}
	}()
	copy(mem[off:], data)
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		return fmt.Errorf("msync: %w", err)
	}
	return nil
}

// publish tells the other workers where this worker's window is.
func (w *stressWorker) publish(base int) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(base))
	if _, err := w.board.WriteAt(b[:], int64(8*w.job.Worker)); err != nil {
		w.errorf("board", "board: %v", err)
	}
}

func (w *stressWorker) windowOf(o int) int {
	var b [8]byte
	if _, err := w.board.ReadAt(b[:], int64(8*o)); err != nil {
		w.errorf("board", "board: %v", err)
		return 0
	}
	return int(binary.LittleEndian.Uint64(b[:]))
}

// readerStep is one action of the reader role: follow another worker's
// window, read a followed file on from where it was (tail -f), or touch a
// followed file's mapping.
func (w *stressWorker) readerStep() {
	if w.job.Shape.Workers < 2 {
		return
	}
	switch x := w.rr.IntN(10); {
	case x < 3:
		o := w.rr.IntN(w.job.Shape.Workers - 1)
		if o >= w.job.Worker {
			o++
		}
		w.follow(o)
	case x < 8:
		if f := w.randomFollow(false); f != nil {
			w.tail(f)
		}
	default:
		if f := w.randomFollow(true); f != nil {
			w.touch(f)
		}
	}
}

// follow brings the descriptors held on worker o's files in line with its
// window: the lower hard-link pair always, and the pool names of the
// window and just past it (not yet touched: still lower copies), each kept
// until the window has moved past it.
func (w *stressWorker) follow(o int) {
	sh := w.job.Shape
	base := w.windowOf(o)
	want := map[string]bool{}
	for j := 0; j < sh.Window+stressFollowExtra; j++ {
		want[stressPoolName((base+j)%sh.Pool)] = true
	}
	for _, n := range stressPair {
		want[n] = w.rr.IntN(40) != 0 // now and then open the pair again
	}
	fs := w.follows[o]
	for name, f := range fs {
		if !want[name] {
			f.close()
			delete(fs, name)
		}
	}
	names := make([]string, 0, len(want))
	for name, ok := range want {
		if _, held := fs[name]; ok && !held {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		w.res.Kinds["reader-open"]++
		p := filepath.Join(w.job.Root, fmt.Sprintf("w%d", o), name)
		fd, err := openFd(p, unix.O_RDONLY, 0)
		f := &stressFollow{fd: -1}
		fs[name] = f
		if err != nil {
			// The owner removes and renames its names; nothing else fails.
			if errnoOf(err) == syscall.ENOENT {
				w.res.Expected["reader-open:ENOENT"]++
			} else {
				w.errorf("reader-open:"+errnoName(errnoOf(err)), "reader open %s: %v", p, err)
			}
			continue
		}
		f.fd = fd
		if w.rr.IntN(2) == 0 {
			continue
		}
		st, err := fstatFd(fd)
		if err != nil {
			w.errorf("reader-fstat:"+errnoName(errnoOf(err)), "reader fstat %s: %v", p, err)
			continue
		}
		if st.Size == 0 {
			continue
		}
		mem, err := unix.Mmap(fd, 0, int(min(st.Size, stressMapMax)), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			w.errorf("reader-mmap:"+errnoName(errnoOf(err)), "reader mmap %s: %v", p, err)
			continue
		}
		w.res.Kinds["reader-mmap"]++
		f.mem = mem
	}
}

func (f *stressFollow) close() {
	if f.mem != nil {
		unix.Munmap(f.mem)
	}
	if f.fd >= 0 {
		unix.Close(f.fd)
	}
}

func (w *stressWorker) randomFollow(mapped bool) *stressFollow {
	var pick *stressFollow
	n := 0
	for _, fs := range w.follows {
		for _, f := range fs {
			if f.fd < 0 || mapped && f.mem == nil {
				continue
			}
			if n++; w.rr.IntN(n) == 0 {
				pick = f
			}
		}
	}
	return pick
}

// tail reads on from the descriptor's offset, as tail -f does; now and
// then it starts over from the beginning (a log shipper after rotation).
func (w *stressWorker) tail(f *stressFollow) {
	w.res.Kinds["reader-tail"]++
	if w.rr.IntN(8) == 0 {
		unix.Seek(f.fd, 0, 0)
	}
	buf := make([]byte, 16<<10)
	err := retry(func() error { _, e := unix.Read(f.fd, buf); return e })
	if err != nil {
		w.errorf("reader-tail:"+errnoName(errnoOf(err)), "reader read: %v", err)
	}
}

// touch reads every page of a read-only shared mapping. A page past the
// end of a file that its owner truncated faults (SIGBUS), as it must.
func (w *stressWorker) touch(f *stressFollow) {
	w.res.Kinds["reader-touch"]++
	defer func() {
		if r := recover(); r != nil {
			// What SetPanicOnFault panics with carries the faulting address.
			if _, fault := r.(interface{ Addr() uintptr }); fault {
				w.res.Expected["reader-touch:SIGBUS"]++
				return
			}
			panic(r)
		}
	}()
	var sum byte
	for i := 0; i < len(f.mem); i += 4096 {
		sum += f.mem[i]
	}
	_ = sum
}
