package branches

import (
	"container/list"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// A dirIndex remembers what the read-only copies of one merged directory
// hold. Read-only branches do not change while the union is mounted
// (SEMANTICS.md), so their listings are read once and kept: a lookup then
// visits only the branches that hold the name or a whiteout of it, which
// makes its cost independent of the number of branches, and a merged
// listing reads only the writable copies again. Writable copies are always
// read from disk.
//
// The index is a filter and a cache under the one resolution rule, never a
// second rule: lookup still stats every copy it visits, and Names still
// classifies every layer's entries with whiteout.Classify.
type dirIndex struct {
	ino uint64 // the directory's union inode number, its key in the cache
	// layers are the read-only copies the index is for.
	layers []Layer

	once sync.Once
	err  error
	// ro holds, for each read-only layer of the directory (top first), its
	// classified listing.
	ro []layerListing
	// byBranch maps a branch to its position in ro.
	byBranch map[*Branch]int
	// where maps a name to the indexes of the branches whose copy of the
	// directory holds it or a whiteout of it, ascending.
	where map[string][]int
	// counted: len(where) is part of the cache's total (guarded by the
	// cache).
	counted bool

	elem *list.Element // position in the cache's recency list
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

// build reads the listing of every read-only layer, once. first reports
// whether this call did the reading.
func (ix *dirIndex) build() (first bool, err error) {
	ix.once.Do(func() {
		first = true
		where := map[string][]int{}
		ix.byBranch = make(map[*Branch]int, len(ix.layers))
		for _, l := range ix.layers {
			names, hidden, err := listLayer(l)
			if err != nil {
				ix.err = err
				return
			}
			for _, e := range names {
				where[e.Name] = append(where[e.Name], l.Branch.Index)
			}
			for name := range hidden {
				if !slices.Contains(where[name], l.Branch.Index) {
					where[name] = append(where[name], l.Branch.Index)
				}
			}
			ix.byBranch[l.Branch] = len(ix.ro)
			ix.ro = append(ix.ro, layerListing{layer: l, names: names, hidden: hidden})
		}
		ix.where = where
	})
	return first, ix.err
}

// listing returns the classified listing of layer l, from the index when
// l is one of its read-only copies.
func (ix *dirIndex) listing(l Layer) (layerListing, bool) {
	if i, ok := ix.byBranch[l.Branch]; ok && ix.ro[i].layer.Path == l.Path {
		return ix.ro[i], true
	}
	return layerListing{}, false
}

// skip returns the first position at or after i among layers (the
// directory's own copies, up to split) that lookup must visit for name:
// a writable copy, or a read-only copy that holds the name or a whiteout
// of it. It returns split when none of them must be visited.
func (ix *dirIndex) skip(layers []Layer, i, split int, name string) int {
	want := ix.where[name]
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
const dirIndexBudget = 1 << 18

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

// built records an index's size once its listings are read, and trims
// the cache to its budget.
func (c *dirIndexCache) built(ix *dirIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ix.counted || c.byIno[ix.ino] != ix {
		return
	}
	ix.counted = true
	c.size += len(ix.where)
	for c.size > c.budget && c.recent.Len() > 1 {
		c.dropLocked(c.recent.Back().Value.(*dirIndex))
	}
}

func (c *dirIndexCache) dropLocked(ix *dirIndex) {
	if c.byIno[ix.ino] != ix {
		return
	}
	delete(c.byIno, ix.ino)
	c.recent.Remove(ix.elem)
	if ix.counted {
		c.size -= len(ix.where)
	}
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

// ready reads the index's listings if that has not happened yet. Only
// the first call takes the cache's lock (to count the names against the
// budget): later lookups in the directory do not contend on it.
func (s *Stack) ready(ix *dirIndex) error {
	first, err := ix.build()
	if err != nil {
		return fmt.Errorf("listing a read-only copy: %w", err)
	}
	if first {
		s.dirs.built(ix)
	}
	return nil
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
