package branches

import (
	"container/list"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// A dirIndex remembers what the read-only copies of one merged directory
// hold. Read-only branches do not change while the union is mounted
// (docs/UNION-SEMANTICS.md, "Out of scope"), so their listings are read once
// and kept: a lookup then visits only the branches that hold the name or a
// whiteout of it, which makes its cost independent of the number of
// branches, and a merged listing reads only the writable copies again.
// Writable copies are always read from disk.
//
// The index is a filter and a cache under the one resolution rule, never a
// second rule: lookup still stats every copy it visits, and Names still
// classifies every layer's entries with whiteout.Classify.
//
// Entries keep a pointer to their directory's index, but the listings hang
// off it only while the cache holds it: an index the cache drops lets its
// listings go (however many nodes still point at it), and is read again
// and counted again on its next use. So the budget bounds the memory.
type dirIndex struct {
	ino uint64 // the directory's union inode number, its key in the cache
	// layers are the read-only copies the index is for.
	layers []Layer

	mu   sync.Mutex                // serialises reading the listings
	data atomic.Pointer[indexData] // nil until read, and again once dropped

	// Guarded by the cache's lock: counted is how many names of data the
	// cache's total holds (0: not counted, not in the recency list).
	counted int
	elem    *list.Element // position in the cache's recency list, or nil
}

// indexData is what an index knows once its listings are read.
type indexData struct {
	// ro holds, for each read-only layer of the directory (top first), its
	// classified listing.
	ro []layerListing
	// byBranch maps a branch to its position in ro.
	byBranch map[*Branch]int
	// where maps a name to the indexes of the branches whose copy of the
	// directory holds it or a whiteout of it, ascending.
	where map[string][]int
}

// layerListing is one copy's entries as whiteout.Classify sorts them.
type layerListing struct {
	layer  Layer
	names  []sys.DirEntry
	hidden map[string]whiteout.Kind
}

// readOnly reports whether the layer's branch cannot change under the
// union.
func (l Layer) readOnly() bool { return l.Branch.Perm != RW }

// roLayers are the read-only layers of e.
func roLayers(layers []Layer) []Layer {
	var out []Layer
	for _, l := range layers {
		if l.readOnly() {
			out = append(out, l)
		}
	}
	return out
}

// sameCopies reports whether two lists of layers are the same copies.
func sameCopies(a, b []Layer) bool {
	return slices.EqualFunc(a, b, func(x, y Layer) bool { return x.Branch == y.Branch && x.Path == y.Path })
}

// load returns the index's listings, reading every read-only layer when
// they are not held. read reports whether this call did the reading.
func (ix *dirIndex) load() (d *indexData, read bool, err error) {
	if d := ix.data.Load(); d != nil {
		return d, false, nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if d := ix.data.Load(); d != nil {
		return d, false, nil
	}
	d = &indexData{byBranch: make(map[*Branch]int, len(ix.layers)), where: map[string][]int{}}
	for _, l := range ix.layers {
		names, hidden, err := listLayer(l)
		if err != nil {
			return nil, false, err
		}
		for _, e := range names {
			d.where[e.Name] = append(d.where[e.Name], l.Branch.Index)
		}
		for name := range hidden {
			if !slices.Contains(d.where[name], l.Branch.Index) {
				d.where[name] = append(d.where[name], l.Branch.Index)
			}
		}
		d.byBranch[l.Branch] = len(d.ro)
		d.ro = append(d.ro, layerListing{layer: l, names: names, hidden: hidden})
	}
	ix.data.Store(d)
	return d, true, nil
}

// listing returns the classified listing of layer l: from the index when
// l is one of its read-only copies, else read now (listLayer). d may be
// nil (no index). Names and ExplainPath both list a layer through it.
func (d *indexData) listing(l Layer) (layerListing, error) {
	if d != nil {
		if i, ok := d.byBranch[l.Branch]; ok && d.ro[i].layer.Path == l.Path {
			return d.ro[i], nil
		}
	}
	names, hidden, err := listLayer(l)
	return layerListing{layer: l, names: names, hidden: hidden}, err
}

// skip returns the first position at or after i among layers (the
// directory's own copies, up to split) that lookup must visit for name:
// a writable copy, or a read-only copy that holds the name or a whiteout
// of it. It returns split when none of them must be visited.
func (d *indexData) skip(layers []Layer, i, split int, name string) int {
	want := d.where[name]
	k := 0
	for ; i < split; i++ {
		l := layers[i]
		if !l.readOnly() {
			return i
		}
		for k < len(want) && want[k] < l.Branch.Index {
			k++
		}
		if k < len(want) && want[k] == l.Branch.Index {
			return i
		}
	}
	return split
}

// listLayer reads and classifies one copy of a directory.
func listLayer(l Layer) ([]sys.DirEntry, map[string]whiteout.Kind, error) {
	raw, err := sys.ReadDir(l.Branch.fd, l.Path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || sys.IsNotDir(err) {
			return nil, nil, nil // changed behind our back
		}
		return nil, nil, err
	}
	needFD := l.Markers.XattrWhiteouts
	for _, e := range raw {
		if e.Type == unix.DT_UNKNOWN || e.Type == unix.DT_CHR {
			needFD = true
			break
		}
	}
	dfd := -1
	if needFD {
		if dfd, err = sys.OpenDirBeneath(l.Branch.fd, l.Path); err != nil {
			return nil, nil, err
		}
		defer unix.Close(dfd)
	}
	return whiteout.Classify(dfd, raw, l.Markers)
}

// dirIndexCache keeps the indexes of recently used directories, within a
// budget of names, so that the daemon's memory follows its working set.
type dirIndexCache struct {
	mu     sync.Mutex
	byIno  map[uint64]*dirIndex
	recent *list.List // front = most recently used
	size   int
	budget int
}

// dirIndexBudget is how many names the cache holds at most (about 100
// bytes each, so about 25 MiB): enough for the directories a workload is
// in, small beside the daemon's memory target (docs/PERFORMANCE.md).
const dirIndexBudget = 1 << 16

func newDirIndexCache(budget int) *dirIndexCache {
	return &dirIndexCache{byIno: map[uint64]*dirIndex{}, recent: list.New(), budget: budget}
}

// attach gives dir the index of its read-only copies, when it has any.
// An index made for other copies under the same number (which the inode
// numbering rules out, but cheaply checked) is replaced.
func (c *dirIndexCache) attach(dir *Entry) {
	ro := roLayers(dir.Layers)
	if len(ro) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ix := c.byIno[dir.Ino]
	if ix != nil && !sameCopies(ix.layers, ro) {
		c.dropLocked(ix)
		ix = nil
	}
	if ix == nil {
		ix = &dirIndex{ino: dir.Ino, layers: ro}
		ix.elem = c.recent.PushFront(ix)
		c.byIno[dir.Ino] = ix
	} else {
		c.recent.MoveToFront(ix.elem)
	}
	dir.index = ix
}

// built counts the listings an index just read, putting the index back in
// the cache if the cache had dropped it, and trims the cache to its
// budget.
func (c *dirIndexCache) built(ix *dirIndex, d *indexData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ix.data.Load() != d {
		return // dropped again meanwhile
	}
	if other := c.byIno[ix.ino]; other != ix {
		if other != nil {
			c.dropLocked(other)
		}
		c.byIno[ix.ino] = ix
		ix.elem = c.recent.PushFront(ix)
	}
	c.size += len(d.where) - ix.counted
	ix.counted = len(d.where)
	for c.size > c.budget && c.recent.Len() > 1 {
		c.dropLocked(c.recent.Back().Value.(*dirIndex))
	}
}

// dropLocked takes ix out of the cache and lets its listings go.
func (c *dirIndexCache) dropLocked(ix *dirIndex) {
	if c.byIno[ix.ino] != ix {
		return
	}
	delete(c.byIno, ix.ino)
	c.recent.Remove(ix.elem)
	ix.elem = nil
	c.size -= ix.counted
	ix.counted = 0
	ix.data.Store(nil)
}

// forget drops the index of the directory numbered ino: its number may
// be reused by another directory.
func (c *dirIndexCache) forget(ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ix := c.byIno[ino]; ix != nil {
		c.dropLocked(ix)
	}
}

// ready returns the index's listings, reading them if they are not held.
// Only a call that reads takes the cache's lock (to count the names
// against the budget): later lookups in the directory do not contend on
// it. A nil index has no listings (nil, nil).
func (s *Stack) ready(ix *dirIndex) (*indexData, error) {
	if ix == nil {
		return nil, nil
	}
	d, read, err := ix.load()
	if err != nil {
		return nil, fmt.Errorf("listing a read-only copy: %w", err)
	}
	if read {
		s.dirs.built(ix, d)
	}
	return d, nil
}

// subdirCounts remembers how many visible subdirectories directories
// have (their link count is 2 plus that), by union inode number. A count
// is dropped by every change through the union that makes, removes or
// moves a directory in that directory; changes counts those drops, so a
// count taken while a change was under way is not stored.
type subdirCounts struct {
	mu      sync.Mutex
	byIno   map[uint64]int
	changes uint64
}

// subdirCountsMax bounds the map; past it, it starts again empty.
const subdirCountsMax = 1 << 16

func (c *subdirCounts) get(ino uint64) (n int, ok bool, changes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok = c.byIno[ino]
	return n, ok, c.changes
}

func (c *subdirCounts) put(ino uint64, n int, changes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changes != changes {
		return
	}
	if c.byIno == nil || len(c.byIno) >= subdirCountsMax {
		c.byIno = map[uint64]int{}
	}
	c.byIno[ino] = n
}

// changed forgets the counts of the given directories.
func (c *subdirCounts) changed(dirs ...*Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes++
	for _, d := range dirs {
		if d != nil {
			delete(c.byIno, d.Ino)
		}
	}
}
