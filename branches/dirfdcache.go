package branches

import (
	"container/list"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// dirFDCache keeps O_PATH descriptors of recently used branch directories
// for the whole stack (one listing's lookups use listingDirs instead),
// so that a stream of operations in one directory (an untar, a create and
// unlink loop, the lookups of a listing) does not resolve the directory's
// path beneath the branch root for every one of them (openat2 walks every
// component).
//
// A descriptor follows its directory, a path does not: after a rename the
// descriptor cached for "a/b" would be the directory now at "a/c". So the
// cache holds descriptors opened at one Generation of the stack, and drops
// them all when it changes (a rename, a directory removal, a copy-up:
// everything that can move or replace a directory bumps it).
type dirFDCache struct {
	gen func() uint64

	mu      sync.Mutex
	at      uint64 // the generation the held descriptors were opened at
	byPlace map[dirPlace]*heldDir
	byFD    map[int]*heldDir // also holds dropped descriptors still in use
	recent  list.List        // of *heldDir, front = most recently used
}

type heldDir struct {
	place   dirPlace
	fd      int
	users   int
	dropped bool // out of byPlace: closed when the last user is done
	elem    *list.Element
}

// dirFDCacheSize bounds the descriptors held (far below any RLIMIT_NOFILE
// Go leaves a process with).
const dirFDCacheSize = 256

func newDirFDCache(gen func() uint64) *dirFDCache {
	return &dirFDCache{gen: gen, byPlace: map[dirPlace]*heldDir{}, byFD: map[int]*heldDir{}}
}

// open returns an O_PATH descriptor of rel beneath b's root; the caller
// hands it back with close, never unix.Close.
func (c *dirFDCache) open(b *Branch, rel string) (int, error) {
	key := dirPlace{b, rel}
	gen := c.gen()
	c.mu.Lock()
	if gen != c.at {
		c.dropAllLocked()
		c.at = gen
	}
	if h := c.byPlace[key]; h != nil {
		h.users++
		c.recent.MoveToFront(h.elem)
		c.mu.Unlock()
		return h.fd, nil
	}
	c.mu.Unlock()
	fd, err := sys.OpenDirBeneath(b.fd, rel)
	if err != nil {
		return -1, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at != gen || c.byPlace[key] != nil {
		return fd, nil // not kept: close closes it
	}
	h := &heldDir{place: key, fd: fd, users: 1}
	h.elem = c.recent.PushFront(h)
	c.byPlace[key], c.byFD[fd] = h, h
	for c.recent.Len() > dirFDCacheSize {
		c.dropLocked(c.recent.Back().Value.(*heldDir))
	}
	return fd, nil
}

// close hands back a descriptor from open.
func (c *dirFDCache) close(fd int) {
	c.mu.Lock()
	h := c.byFD[fd]
	if h != nil {
		h.users--
		if !h.dropped || h.users > 0 {
			c.mu.Unlock()
			return
		}
		delete(c.byFD, fd)
	}
	c.mu.Unlock()
	unix.Close(fd)
}

func (c *dirFDCache) dropLocked(h *heldDir) {
	delete(c.byPlace, h.place)
	c.recent.Remove(h.elem)
	h.dropped = true
	if h.users == 0 {
		delete(c.byFD, h.fd)
		unix.Close(h.fd)
	}
}

func (c *dirFDCache) dropAllLocked() {
	for c.recent.Len() > 0 {
		c.dropLocked(c.recent.Back().Value.(*heldDir))
	}
}

// closeAll drops every descriptor (the stack is closing).
func (c *dirFDCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAllLocked()
}

// openDir opens rel beneath the branch root as an O_PATH directory
// descriptor, from the stack's cache; hand it back with closeDir.
func (b *Branch) openDir(rel string) (int, error) {
	if b.dirCache == nil {
		return sys.OpenDirBeneath(b.fd, rel)
	}
	return b.dirCache.open(b, rel)
}

// closeDir hands back a descriptor from openDir.
func (b *Branch) closeDir(fd int) {
	if b.dirCache == nil {
		unix.Close(fd)
		return
	}
	b.dirCache.close(fd)
}
