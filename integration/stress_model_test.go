package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"syscall"
)

// The model of TestStress: what one worker's files must look like after
// its first n operations. Each worker owns the files of its directory
// w<N>/ and is their only writer; other workers only read them. So the
// owner's view of its files does not depend on how the workers interleave,
// and the same (seed, worker, n) always gives the same operations and the
// same end state, whoever replays them: the worker itself while it runs
// (every result is checked at once), the test afterwards (the expected
// tree) and kernel overlay (the model's own check).

// stressShape is the fixture's shape, shared by the test, the workers and
// the model.
type stressShape struct {
	Workers int
	Pool    int // names per worker that exist in the branches from the start
	Window  int // pool names a worker works on at a time
	Step    int // operations after which the window moves on by one name
}

// Operation kinds of an owner. "open" keeps a read descriptor in one of
// the owner's own slots; "readheld" reads the whole file again through one.
type stressKind int

const (
	opRead stressKind = iota
	opHold
	opReadHeld
	opWrite
	opAppend
	opPwrite
	opTruncate
	opFtruncate
	opMmap
	opRename
	opUnlink
	opLink
	opChmod
	stressOwnerKinds
)

var stressKindNames = [stressOwnerKinds]string{
	"read", "open", "readheld", "write", "append", "pwrite", "truncate",
	"ftruncate", "mmap", "rename", "unlink", "link", "chmod",
}

var stressKindWeights = [stressOwnerKinds]int{
	opRead: 14, opHold: 6, opReadHeld: 6, opWrite: 9, opAppend: 9, opPwrite: 8,
	opTruncate: 4, opFtruncate: 5, opMmap: 6, opRename: 5, opUnlink: 3, opLink: 4, opChmod: 4,
}

func (k stressKind) String() string { return stressKindNames[k] }

const (
	stressHeldSlots = 4
	stressMaxSize   = 64 << 10 // writes past this size turn into truncates
)

// Names of a worker's files besides the pool: a lower hard-link pair and
// names that exist in no branch.
var (
	stressPair  = []string{"hl-a", "hl-b"}
	stressFresh = []string{"n0", "n1", "n2", "n3"}
	stressModes = []uint32{0o600, 0o640, 0o644, 0o444, 0o700, 0o755}
)

func stressPoolName(i int) string { return fmt.Sprintf("p%04d", i) }

// stressOp is one operation of an owner on its own directory.
type stressOp struct {
	Seq   int64
	Kind  stressKind
	Name  string
	Name2 string // rename and link: the new name
	Slot  int    // open and readheld
	Trunc bool   // write: O_TRUNC
	Off   int64  // pwrite, mmap
	Size  int64  // truncate, ftruncate; mmap: the size to grow an empty file to
	Mode  uint32 // chmod
	Data  []byte // write, append, pwrite, mmap
}

func (op stressOp) String() string {
	s := fmt.Sprintf("#%d %s %s", op.Seq, op.Kind, op.Name)
	switch op.Kind {
	case opRename, opLink:
		s += " -> " + op.Name2
	case opHold, opReadHeld:
		s += fmt.Sprintf(" slot=%d", op.Slot)
	case opWrite:
		s += fmt.Sprintf(" len=%d trunc=%v", len(op.Data), op.Trunc)
	case opAppend:
		s += fmt.Sprintf(" len=%d", len(op.Data))
	case opPwrite, opMmap:
		s += fmt.Sprintf(" off=%d len=%d", op.Off, len(op.Data))
		if op.Size > 0 {
			s += fmt.Sprintf(" grow=%d", op.Size)
		}
	case opTruncate, opFtruncate:
		s += fmt.Sprintf(" size=%d", op.Size)
	case opChmod:
		s += fmt.Sprintf(" mode=%04o", op.Mode)
	}
	return s
}

// stressWant is what an operation must do: its error, and for reads the
// content and attributes it must see.
type stressWant struct {
	Errno syscall.Errno
	Data  []byte // read, readheld: the whole content
	Size  int64  // the file's size after the operation
	Perm  uint32
}

type stressInode struct {
	data []byte
	perm uint32
}

// stressModel is one worker's directory as POSIX has it: names to inodes
// (hard links share one), and the inodes its held descriptors refer to.
type stressModel struct {
	shape  stressShape
	worker int
	names  map[string]*stressInode
	held   [stressHeldSlots]*stressInode
	total  int // sum of the weights
}

// stressPoolEntry describes pool name i of worker w in the branches: which
// hold it (category), its visible mode and content.
//
//	0: lower 0 only        1: lower 1 only
//	2: lower 0 over lower 1 (the lower 1 copy is hidden)
//	3: upper over lower 0  4: lower 1, whited out in the upper (absent)
func stressPoolEntry(w, i int) (category int, perm uint32, content func(branch string) string) {
	category = i % 5
	perm = []uint32{0o644, 0o600, 0o640, 0o444}[i%4]
	content = func(branch string) string {
		if i%13 == 0 {
			return ""
		}
		return strings.Repeat(fmt.Sprintf("w%d/%s from %s\n", w, stressPoolName(i), branch), (i%5)*3+1)
	}
	return category, perm, content
}

// stressLayers are the branches, top first: the upper, lower 0, lower 1.
func stressLayers(sh stressShape) []Layer {
	var upper, l0, l1 Layer
	for w := 0; w < sh.Workers; w++ {
		dir := fmt.Sprintf("w%d", w)
		upper = append(upper, Dir(dir))
		l0 = append(l0, Dir(dir))
		l1 = append(l1, Dir(dir, Mode(0o700))) // lower 0's mode wins
		for i := 0; i < sh.Pool; i++ {
			cat, perm, content := stressPoolEntry(w, i)
			p := dir + "/" + stressPoolName(i)
			switch cat {
			case 0:
				l0 = append(l0, File(p, content("lower0"), Mode(perm)))
			case 1:
				l1 = append(l1, File(p, content("lower1"), Mode(perm)))
			case 2:
				l0 = append(l0, File(p, content("lower0"), Mode(perm)))
				l1 = append(l1, File(p, "hidden by lower 0\n", Mode(0o666)))
			case 3:
				upper = append(upper, File(p, content("upper"), Mode(perm)))
				l0 = append(l0, File(p, "hidden by the upper\n", Mode(0o666)))
			case 4:
				upper = append(upper, Whiteout(p))
				l1 = append(l1, File(p, "whited out\n", Mode(perm)))
			}
		}
		l0 = append(l0,
			File(dir+"/hl-a", fmt.Sprintf("w%d lower hard-link pair\n", w), Mode(0o640)),
			Hardlink(dir+"/hl-b", dir+"/hl-a"))
		l1 = append(l1, File(dir+"/hl-a", "hidden by lower 0's pair\n", Mode(0o666)))
	}
	return []Layer{upper, l0, l1}
}

// newStressModel is worker w's directory as the branches show it at the
// start.
func newStressModel(sh stressShape, w int) *stressModel {
	m := &stressModel{shape: sh, worker: w, names: map[string]*stressInode{}}
	for i := 0; i < sh.Pool; i++ {
		cat, perm, content := stressPoolEntry(w, i)
		switch cat {
		case 0, 2:
			m.names[stressPoolName(i)] = &stressInode{data: []byte(content("lower0")), perm: perm}
		case 1:
			m.names[stressPoolName(i)] = &stressInode{data: []byte(content("lower1")), perm: perm}
		case 3:
			m.names[stressPoolName(i)] = &stressInode{data: []byte(content("upper")), perm: perm}
		}
	}
	pair := &stressInode{data: fmt.Appendf(nil, "w%d lower hard-link pair\n", w), perm: 0o640}
	for _, n := range stressPair {
		m.names[n] = pair
	}
	for _, wt := range stressKindWeights {
		m.total += wt
	}
	return m
}

// windowBase is the index of the first pool name of the window at
// operation seq.
func (sh stressShape) windowBase(seq int64) int { return int(seq / int64(sh.Step)) }

func (m *stressModel) pickName(r *rand.Rand, seq int64) string {
	switch x := r.IntN(20); {
	case x < 12:
		return stressPoolName((m.shape.windowBase(seq) + r.IntN(m.shape.Window)) % m.shape.Pool)
	case x < 15:
		return stressPair[r.IntN(len(stressPair))]
	default:
		return stressFresh[r.IntN(len(stressFresh))]
	}
}

// stressData is the content an operation writes: its worker, sequence
// number and kind, repeated, so that any byte read back says which write
// it came from.
func (m *stressModel) data(seq int64, kind stressKind, n int) []byte {
	unit := fmt.Sprintf("<w%d #%d %s>", m.worker, seq, kind)
	return []byte(strings.Repeat(unit, n/len(unit)+1)[:n])
}

func (m *stressModel) size(name string) int64 {
	if ino := m.names[name]; ino != nil {
		return int64(len(ino.data))
	}
	return 0
}

// next draws operation seq from r. It reads the model (sizes, held slots)
// but does not change it: apply does.
func (m *stressModel) next(r *rand.Rand, seq int64) stressOp {
	x := r.IntN(m.total)
	kind := stressKind(0)
	for ; x >= stressKindWeights[kind]; kind++ {
		x -= stressKindWeights[kind]
	}
	op := stressOp{Seq: seq, Kind: kind, Name: m.pickName(r, seq)}
	size := m.size(op.Name)
	if size >= stressMaxSize && (kind == opWrite || kind == opAppend || kind == opPwrite) {
		op.Kind = opTruncate
	}
	smallLen := func() int {
		if r.IntN(4) == 0 {
			return 1 + r.IntN(6000)
		}
		return 1 + r.IntN(300)
	}
	switch op.Kind {
	case opHold, opReadHeld:
		op.Slot = r.IntN(stressHeldSlots)
		if op.Kind == opReadHeld && m.held[op.Slot] == nil {
			op.Kind = opHold
		}
	case opWrite:
		op.Trunc = r.IntN(4) == 0
		op.Data = m.data(seq, op.Kind, smallLen())
	case opAppend:
		op.Data = m.data(seq, op.Kind, smallLen())
	case opPwrite:
		op.Off = r.Int64N(min(size+8192, stressMaxSize))
		op.Data = m.data(seq, op.Kind, smallLen())
	case opTruncate, opFtruncate:
		op.Size = r.Int64N(min(2*size+4096, stressMaxSize))
	case opMmap:
		if size == 0 {
			op.Size = 1 + r.Int64N(8192)
			size = op.Size
		}
		op.Off = r.Int64N(size)
		op.Data = m.data(seq, op.Kind, int(min(int64(smallLen()), size-op.Off)))
	case opRename, opLink:
		op.Name2 = m.pickName(r, seq)
	case opChmod:
		op.Mode = stressModes[r.IntN(len(stressModes))]
	}
	return op
}

// writeAt writes data at off, filling a gap with zeros as a hole reads.
func (ino *stressInode) writeAt(off int64, data []byte) {
	if end := off + int64(len(data)); end > int64(len(ino.data)) {
		ino.resize(end)
	}
	copy(ino.data[off:], data)
}

func (ino *stressInode) resize(n int64) {
	if n <= int64(len(ino.data)) {
		ino.data = ino.data[:n]
		return
	}
	ino.data = append(ino.data, make([]byte, n-int64(len(ino.data)))...)
}

// apply changes the model as op does and says what op must return.
func (m *stressModel) apply(op stressOp) stressWant {
	ino := m.names[op.Name]
	create := func() {
		if ino == nil {
			ino = &stressInode{perm: 0o644} // created with mode 0644, umask 0
			m.names[op.Name] = ino
		}
	}
	done := func() stressWant {
		return stressWant{Size: int64(len(ino.data)), Perm: ino.perm}
	}
	switch op.Kind {
	case opWrite:
		create()
		if op.Trunc {
			ino.data = ino.data[:0]
		}
		ino.writeAt(0, op.Data)
		return done()
	case opAppend:
		create()
		ino.writeAt(int64(len(ino.data)), op.Data)
		return done()
	case opHold:
		m.held[op.Slot] = ino // the old descriptor is closed first
		if ino == nil {
			return stressWant{Errno: syscall.ENOENT}
		}
		return done()
	case opReadHeld:
		h := m.held[op.Slot]
		return stressWant{Data: bytes.Clone(h.data), Size: int64(len(h.data)), Perm: h.perm}
	case opLink:
		if ino == nil {
			return stressWant{Errno: syscall.ENOENT}
		}
		if m.names[op.Name2] != nil {
			return stressWant{Errno: syscall.EEXIST}
		}
		m.names[op.Name2] = ino
		return done()
	}
	if ino == nil {
		return stressWant{Errno: syscall.ENOENT}
	}
	switch op.Kind {
	case opRead:
		w := done()
		w.Data = bytes.Clone(ino.data)
		return w
	case opPwrite:
		ino.writeAt(op.Off, op.Data)
	case opTruncate, opFtruncate:
		ino.resize(op.Size)
	case opMmap:
		if len(ino.data) == 0 {
			ino.resize(op.Size)
		}
		ino.writeAt(op.Off, op.Data)
	case opRename:
		// rename(2) of a name onto itself, or onto another name of the same
		// inode, does nothing and succeeds.
		if dst := m.names[op.Name2]; dst != ino {
			m.names[op.Name2] = ino
			delete(m.names, op.Name)
		}
	case opUnlink:
		delete(m.names, op.Name)
	case opChmod:
		ino.perm = op.Mode
	}
	return done()
}

// stressFileState is what the end check compares for one name.
type stressFileState struct {
	Size   int64
	SHA256 string
	Perm   uint32
	Nlink  uint64
	Links  string // every name of the same inode, sorted, comma-separated
}

func (s stressFileState) String() string {
	return fmt.Sprintf("size=%d sha256=%.12s mode=%04o nlink=%d links=%s", s.Size, s.SHA256, s.Perm, s.Nlink, s.Links)
}

// state is the model's directory in the form the end check reads.
func (m *stressModel) state() map[string]stressFileState {
	links := map[*stressInode][]string{}
	for name, ino := range m.names {
		links[ino] = append(links[ino], name)
	}
	out := map[string]stressFileState{}
	for ino, names := range links {
		sort.Strings(names)
		for _, n := range names {
			out[n] = stressFileState{Size: int64(len(ino.data)), SHA256: sha256Hex(string(ino.data)),
				Perm: ino.perm, Nlink: uint64(len(names)), Links: strings.Join(names, ",")}
		}
	}
	return out
}

// stressExpected replays worker w's first n operations on the model.
func stressExpected(sh stressShape, seed int64, w int, n int64) map[string]stressFileState {
	m := newStressModel(sh, w)
	r := stressRand(seed, w)
	for seq := int64(0); seq < n; seq++ {
		m.apply(m.next(r, seq))
	}
	return m.state()
}

// stressRand is worker w's operation source.
func stressRand(seed int64, w int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), uint64(w)))
}
