package branches

import "sync"

// Inode numbers of the union.
//
// A union object's number is built from the (device, inode) pair of the
// object that gives it its identity (see Entry.Ino): the device's index
// among the stack's devices in the top 16 bits, the inode in the low 48
// bits. Objects of different branches on different filesystems therefore
// never collide, and the number is the same every time the same branches
// are mounted in the same order. An inode too large for 48 bits, or a
// device beyond the 32767th, gets a number from a table instead, starting at
// 2^63; those are stable only for the life of the stack.
const (
	inoBits       = 48
	maxDevIndex   = 1<<15 - 1
	firstTableIno = 1 << 63
)

type devIno struct{ dev, ino uint64 }

type inoTable struct {
	mu      sync.Mutex
	devices map[uint64]uint64 // st_dev -> index+1
	table   map[devIno]uint64
	next    uint64
}

func newInoTable() *inoTable {
	return &inoTable{devices: map[uint64]uint64{}, table: map[devIno]uint64{}, next: firstTableIno}
}

// addDevice registers dev in order of first appearance; branch roots are
// registered at Open, top first, so their indexes are reproducible.
func (t *inoTable) addDevice(dev uint64) uint64 {
	if idx, ok := t.devices[dev]; ok {
		return idx
	}
	idx := uint64(len(t.devices) + 1)
	t.devices[dev] = idx
	return idx
}

func (t *inoTable) number(dev, ino uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	idx := t.addDevice(dev)
	if idx <= maxDevIndex && ino < 1<<inoBits {
		return idx<<inoBits | ino
	}
	k := devIno{dev, ino}
	if n, ok := t.table[k]; ok {
		return n
	}
	n := t.next
	t.next++
	t.table[k] = n
	return n
}
