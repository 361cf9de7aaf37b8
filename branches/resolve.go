package branches

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Layer is one branch's copy of a union object.
type Layer struct {
	Branch *Branch
	// Path is relative to the branch root, "." for the root itself.
	Path string
	// Markers are the directory markers of this copy (directories only).
	Markers whiteout.DirMarkers
}

// Entry is a resolved union object.
type Entry struct {
	// Path is the union path, "." for the root.
	Path string
	// Layers: one for a non-directory; for a directory every merged copy,
	// top first, down to the first opaque one.
	Layers []Layer
	// St is the lstat of Layers[0], the copy that serves the object's
	// attributes and data, as the branch reports it.
	St unix.Stat_t
	// Ino is the union inode number (see ino.go). A non-directory takes
	// its identity from its serving copy; a directory from its bottom-most
	// merged copy, so that creating the directory in a higher branch (as a
	// copy-up does) keeps its number.
	Ino uint64
	// storedIno is the number a copy-up recorded on an upper object.
	storedIno uint64
	// index caches what the read-only copies of a directory hold (nil:
	// none, or not a directory).
	index *dirIndex
}

// IsDir reports whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.St.Mode&unix.S_IFMT == unix.S_IFDIR }

// Top is the serving copy.
func (e *Entry) Top() Layer { return e.Layers[0] }

// Name is the last element of the union path.
func (e *Entry) Name() string { return path.Base(e.Path) }

// ErrNotExist is wrapped by lookups of names the union does not show.
var ErrNotExist = fs.ErrNotExist

// Root returns the union root: the root of every branch. An opaque marker
// on a branch root is ignored, as kernel overlay ignores it: opacity hides a
// directory's lower copies, and the roots are the stack itself. It is
// resolved once, when the stack is opened.
func (s *Stack) Root() (*Entry, error) {
	if s.root == nil {
		return nil, errors.New("stack is not open")
	}
	return s.root, nil
}

func (s *Stack) resolveRoot() (*Entry, error) {
	e := &Entry{Path: "."}
	for _, b := range s.branches {
		m, err := whiteout.ReadDirMarkers(b.fd, ".")
		if err != nil {
			return nil, fmt.Errorf("branch %s: %w", b.Path, err)
		}
		m.Opaque = whiteout.NoMarker
		e.Layers = append(e.Layers, Layer{Branch: b, Path: ".", Markers: m})
	}
	if err := sys.Fstat(s.branches[0].fd, &e.St); err != nil {
		return nil, err
	}
	bottom := e.Layers[len(e.Layers)-1].Branch
	var bst unix.Stat_t
	if err := sys.Fstat(bottom.fd, &bst); err != nil {
		return nil, err
	}
	e.Ino = s.inos.number(uint64(bst.Dev), bst.Ino)
	s.dirs.attach(e)
	return e, nil
}

// Lookup resolves name in the directory dir. It returns an error wrapping
// ErrNotExist when the union does not show the name (absent, whited out,
// or a reserved marker name).
func (s *Stack) Lookup(dir *Entry, name string) (*Entry, error) {
	if t := s.tracer.Load(); t != nil {
		return s.tracedLookup(t, dir, name)
	}
	return s.lookup(dir, name, nil, nil)
}

// Resolve resolves a slash-separated union path from the root, without
// following symlinks ("." is the root).
func (s *Stack) Resolve(p string) (*Entry, error) {
	e, err := s.Root()
	if err != nil {
		return nil, err
	}
	if p == "." || p == "" || p == "/" {
		// The cached root's layers are fixed; its attributes are not.
		return s.refresh(e)
	}
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if !e.IsDir() {
			return nil, fmt.Errorf("%s: %w", p, unix.ENOTDIR)
		}
		if e, err = s.Lookup(e, name); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Verdict is what one branch's copy of a name became in a lookup.
type Verdict int

const (
	// Absent: the branch has nothing at that name.
	Absent Verdict = iota
	// Serves: this copy is the union object (or its top layer).
	Serves
	// Merged: a lower copy of a directory, merged into the listing.
	Merged
	// Hidden: a real copy that the union does not show; HiddenBy says why.
	Hidden
	// Marker: the branch holds a whiteout at that name.
	Marker
)

var verdictNames = [...]string{Absent: "absent", Serves: "serves", Merged: "merged", Hidden: "hidden", Marker: "whiteout"}

// String names the verdict as explain prints it; a value outside the
// constants above prints as "Verdict(n)" rather than panicking.
func (v Verdict) String() string {
	if v >= 0 && int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Observation is what one branch held at a name, and what became of it.
type Observation struct {
	Branch *Branch
	// Path is where the branch was consulted: the union path, or the
	// place a redirect leads to.
	Path    string
	Verdict Verdict
	// Type is the S_IFMT bits of the real copy (Serves, Merged, Hidden).
	Type uint32
	// Marker is the whiteout kind at this name (Verdict Marker, or an aufs
	// whiteout beside a real copy), or the opaque marker of a directory copy.
	Marker whiteout.Kind
	// HiddenBy says, for Hidden, which higher branch hid the copy and with
	// what (see Reason).
	HiddenBy *Cause
	// held is what the lookup read in the branch (readHeld), which
	// ExplainPath reports.
	held held
}

// Cause is what hides a lower copy: a marker, or an object of the union
// in a higher branch.
type Cause struct {
	Branch *Branch
	// Marker is set when a marker hides the copy.
	Marker whiteout.Kind
	// Type (S_IFMT bits) is the higher object's type when an object, not
	// a marker, hides the copy.
	Type uint32
}

// Reason says in words why the observed copy is hidden, without the
// branch ("overlay whiteout (char 0/0)", "file over dir", "shadowed by a
// file"); "" when it is not hidden.
func (o Observation) Reason() string {
	c := o.HiddenBy
	switch {
	case c == nil:
		return ""
	case c.Marker != whiteout.NoMarker:
		return c.Marker.String()
	case c.Type == o.Type:
		return "shadowed by a " + typeName(c.Type)
	}
	return typeName(c.Type) + " over " + typeName(o.Type)
}

// Explain resolves name in dir like Lookup, and also reports what every
// branch of dir holds at that name and what became of it. Entry is nil when
// the union does not show the name.
func (s *Stack) Explain(dir *Entry, name string) (*Entry, []Observation, error) {
	var obs []Observation
	e, err := s.lookup(dir, name, &obs, nil)
	if errors.Is(err, ErrNotExist) {
		err = nil
	}
	return e, obs, err
}

// lookup is the one resolution rule. When obs is not nil it keeps going
// after the decision to record what lower branches held. fds, when not
// nil, keeps the parent directories it opens for the next lookup in the
// same directory (a listing resolves every name of one directory).
func (s *Stack) lookup(dir *Entry, name string, obs *[]Observation, fds *listingDirs) (*Entry, error) {
	if whiteout.IsReserved(name) || name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%s: %w", path.Join(dir.Path, name), ErrNotExist)
	}
	var (
		found   *Entry
		stopped *Cause // set once no lower copy can contribute
	)
	childPath := path.Join(dir.Path, name)
	cands := candidates{layers: dir.Layers, name: name, split: len(dir.Layers)}
	var index *indexData
	if obs == nil && dir.index != nil {
		// Explain (obs) visits every copy; a lookup only those the index
		// says may hold something at name.
		var err error
		if index, err = s.ready(dir.index); err != nil {
			return nil, fmt.Errorf("%s: %w", childPath, err)
		}
	}
	for i := 0; i < cands.len(); i++ {
		if stopped != nil && obs == nil {
			break
		}
		if index != nil && i < cands.split {
			if i = index.skip(dir.Layers, i, cands.split, name); i >= cands.len() {
				break
			}
		}
		c := cands.at(i)
		b := c.branch
		rel := childPath
		if c.parent != dir.Path || c.name != name {
			rel = path.Join(c.parent, c.name)
		}
		if c.viaRedirect {
			w, err := redirectPath(b, c.parent)
			if err != nil {
				return nil, fmt.Errorf("%s in %s: %w", childPath, b.Path, err)
			}
			switch {
			case w.stop:
				cands.truncate(i) // nothing here or below contributes
				continue
			case w.last:
				cands.truncate(i + 1) // this branch, none below it
			case w.rebase != "":
				// A directory on the way was renamed in this branch:
				// below it, the path goes on from its redirect.
				cands.truncate(i + 1)
				cands.extra = append(cands.extra, s.redirectCandidates(b, path.Join(w.rebase, c.name))...)
			}
			if w.absent {
				continue
			}
		}
		dfd, err := fds.open(b, c.parent)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || sys.IsNotDir(err) {
				continue // not in this branch, or changed behind our back
			}
			return nil, fmt.Errorf("%s in %s: %w", childPath, b.Path, err)
		}
		parentMarkers := c.markers
		if parentMarkers == nil {
			// Reached through a redirect: this parent was never merged.
			m, err := whiteout.ReadDirMarkers(dfd, c.parent)
			if err != nil {
				fds.release(b, dfd)
				return nil, fmt.Errorf("%s in %s: %w", childPath, b.Path, err)
			}
			parentMarkers = &m
		}
		h, err := readHeld(b, dfd, c.name, rel, *parentMarkers)
		if err != nil {
			fds.release(b, dfd)
			return nil, fmt.Errorf("%s in %s: %w", childPath, b.Path, err)
		}
		l, childMarkers, isDir := h.Lookup, h.markers, h.isDir()
		if isDir && stopped == nil && childMarkers.Redirect != "" && !cands.allAt(i+1, childMarkers.Redirect) {
			// A renamed directory: its lower copies are at the redirect
			// path in every branch below this one (kernel redirect_dir),
			// even when that is its own path: its parent's lower copies
			// may be elsewhere, or none.
			cands.truncate(i + 1)
			cands.extra = append(cands.extra, s.redirectCandidates(b, childMarkers.Redirect)...)
		}
		o := Observation{Branch: b, Path: rel, Type: l.St.Mode & unix.S_IFMT, Marker: l.Hides}
		switch {
		case !l.Present && l.Hides == whiteout.NoMarker:
			o.Verdict = Absent
		case !l.Present:
			o.Verdict = Marker
			if stopped == nil {
				stopped = &Cause{Branch: b, Marker: l.Hides}
			} else {
				o.Verdict, o.HiddenBy = Hidden, stopped
			}
		case stopped != nil:
			o.Verdict, o.HiddenBy = Hidden, stopped
		case found == nil:
			o.Verdict = Serves
			found = &Entry{Path: childPath, St: l.St}
			found.Layers = []Layer{{Branch: b, Path: rel, Markers: childMarkers}}
			if !isDir && b.Perm == RW {
				found.storedIno = s.storedIno(dfd, c.name)
			}
			switch {
			case !isDir:
				stopped = &Cause{Branch: b, Type: l.St.Mode & unix.S_IFMT}
			case childMarkers.Opaque != whiteout.NoMarker:
				o.Marker = childMarkers.Opaque
				stopped = &Cause{Branch: b, Marker: childMarkers.Opaque}
			case l.Hides != whiteout.NoMarker:
				stopped = &Cause{Branch: b, Marker: l.Hides}
			}
		case !isDir:
			// A directory above hides a non-directory here, and the
			// merge ends: kernel overlay stops at the first non-dir.
			o.Verdict = Hidden
			o.HiddenBy = &Cause{Branch: found.Layers[0].Branch, Type: unix.S_IFDIR}
			stopped = o.HiddenBy
		default:
			o.Verdict = Merged
			found.Layers = append(found.Layers, Layer{Branch: b, Path: rel, Markers: childMarkers})
			switch {
			case childMarkers.Opaque != whiteout.NoMarker:
				o.Marker = childMarkers.Opaque
				stopped = &Cause{Branch: b, Marker: childMarkers.Opaque}
			case l.Hides != whiteout.NoMarker:
				stopped = &Cause{Branch: b, Marker: l.Hides}
			}
		}
		fds.release(b, dfd)
		if obs != nil {
			o.held = h
			*obs = append(*obs, o)
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", childPath, ErrNotExist)
	}
	found.Ino = s.identity(found)
	if found.IsDir() {
		s.dirs.attach(found)
	}
	return found, nil
}

// listingDirs keeps directory descriptors open across the lookups of one
// listing (ReadDir), without a lock: it lives for one listing of one
// directory, whose lookups come back to the same few directories (one per
// branch, which bounds it) thousands of times. The stack-wide dirFDCache
// serves every other lookup and operation: bounded, shared, dropped when
// the layout changes. A nil *listingDirs uses that cache.
type listingDirs struct {
	byPlace map[dirPlace]int
	held    map[int]bool
}

type dirPlace struct {
	branch *Branch
	rel    string
}

func newListingDirs() *listingDirs {
	return &listingDirs{byPlace: map[dirPlace]int{}, held: map[int]bool{}}
}

func (d *listingDirs) open(b *Branch, rel string) (int, error) {
	if d == nil {
		return b.openDir(rel)
	}
	if fd, ok := d.byPlace[dirPlace{b, rel}]; ok {
		return fd, nil
	}
	fd, err := sys.OpenDirBeneath(b.fd, rel)
	if err == nil {
		d.byPlace[dirPlace{b, rel}] = fd
		d.held[fd] = true
	}
	return fd, err
}

// release hands back fd from open.
func (d *listingDirs) release(b *Branch, fd int) {
	switch {
	case d == nil:
		b.closeDir(fd)
	case !d.held[fd]:
		unix.Close(fd)
	}
}

// close closes every kept descriptor.
func (d *listingDirs) close() {
	for fd := range d.held {
		unix.Close(fd)
	}
}

// candidate is a place in one branch where a copy of a name may be.
type candidate struct {
	branch       *Branch
	parent, name string // the copy would be parent/name in the branch
	// markers of the parent copy, when it is a merged layer; nil when
	// the parent was reached through a redirect and must be read.
	markers *whiteout.DirMarkers
	// viaRedirect: the path comes from a redirect, and the directories on
	// the way to it must be checked in this branch (redirectPath).
	viaRedirect bool
}

// candidates is the list of places a lookup visits, made on demand (a
// name near the top costs nothing for the layers below it): first the
// parent's layers, up to split; after a redirect, the redirect's places.
type candidates struct {
	layers []Layer
	name   string
	split  int // how many of layers are still candidates
	extra  []candidate
}

func (cs *candidates) len() int { return cs.split + len(cs.extra) }

func (cs *candidates) at(i int) candidate {
	if i < cs.split {
		l := &cs.layers[i]
		return candidate{branch: l.Branch, parent: l.Path, name: cs.name, markers: &l.Markers}
	}
	return cs.extra[i-cs.split]
}

// allAt reports whether there are candidates from the i-th on and all of
// them are at p: a redirect to p would then look where the lookup goes
// anyway, and need not be followed.
func (cs *candidates) allAt(i int, p string) bool {
	if i >= cs.len() {
		return false
	}
	for ; i < cs.len(); i++ {
		c := cs.at(i)
		if path.Join(c.parent, c.name) != p {
			return false
		}
	}
	return true
}

// truncate keeps the first n candidates.
func (cs *candidates) truncate(n int) {
	if n <= cs.split {
		cs.split, cs.extra = n, nil
		return
	}
	cs.extra = cs.extra[:n-cs.split]
}

// pathWalk is what redirectPath found on the way to a redirect target in
// one branch.
type pathWalk struct {
	// absent: a directory on the way is missing here (lower branches
	// may still have it).
	absent bool
	// stop: a whiteout or a non-directory on the way ends the search in
	// this and every lower branch.
	stop bool
	// last: an opaque directory on the way lets this branch contribute,
	// but none below it.
	last bool
	// rebase: a directory on the way carries a redirect, so in the lower
	// branches the parent path continues from there (empty: unchanged).
	rebase string
}

// redirectPath checks, in branch b, the directories on the way to a
// redirect's parent path, as kernel overlay does (see pathWalk).
func redirectPath(b *Branch, parent string) (pathWalk, error) {
	var w pathWalk
	cur := "."
	comps := strings.Split(parent, "/")
	for k, comp := range comps {
		if comp == "." || comp == "" {
			continue
		}
		pfd, err := sys.OpenDirBeneath(b.fd, cur)
		if err != nil {
			return w, err
		}
		next := path.Join(cur, comp)
		m, err := whiteout.ReadDirMarkers(pfd, cur)
		var h held
		if err == nil {
			h, err = readHeld(b, pfd, comp, next, m)
		}
		unix.Close(pfd)
		if err != nil {
			return w, err
		}
		switch {
		case !h.Present && h.Hides != whiteout.NoMarker:
			return pathWalk{stop: true}, nil
		case !h.Present:
			w.absent = true
			return w, nil
		case !h.isDir():
			return pathWalk{stop: true}, nil
		}
		cur = next
		if h.markers.Opaque != whiteout.NoMarker || h.Hides != whiteout.NoMarker {
			w.last = true
		}
		if h.markers.Redirect != "" {
			w.rebase = path.Join(append([]string{h.markers.Redirect}, comps[k+1:]...)...)
		}
	}
	return w, nil
}

// redirectCandidates are the places a redirected directory's lower copies
// may be: target in every branch below b.
func (s *Stack) redirectCandidates(b *Branch, target string) []candidate {
	parent, name := path.Split(target)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	var out []candidate
	for _, lower := range s.branches[b.Index+1:] {
		out = append(out, candidate{branch: lower, parent: parent, name: name, viaRedirect: true})
	}
	return out
}

// identity is the union inode number of e (see Entry.Ino).
func (s *Stack) identity(e *Entry) uint64 {
	if e.storedIno != 0 {
		return e.storedIno
	}
	if !e.IsDir() || len(e.Layers) == 1 {
		return s.inos.number(uint64(e.St.Dev), e.St.Ino)
	}
	var st unix.Stat_t
	if err := s.StatLayer(e.Layers[len(e.Layers)-1], &st); err != nil {
		return s.inos.number(uint64(e.St.Dev), e.St.Ino)
	}
	return s.inos.number(uint64(st.Dev), st.Ino)
}

// held is what one branch holds at one name, read the way resolution
// reads it: the name looked up in its parent copy in every whiteout
// dialect (a real object, a whiteout, or an aufs whiteout beside a real
// object) and, for a directory, that copy's own markers.
type held struct {
	whiteout.Lookup
	markers whiteout.DirMarkers // a directory's; zero otherwise
}

func (h held) isDir() bool { return h.Present && h.St.Mode&unix.S_IFMT == unix.S_IFDIR }

// readHeld reads what branch b holds at name in its directory dfd, whose
// markers are pm; rel is the name's path in the branch. It is the one
// reading of a copy of a name: lookup, redirectPath and ExplainPath (via
// heldAt) all go through it, so explain reports what resolution saw.
func readHeld(b *Branch, dfd int, name, rel string, pm whiteout.DirMarkers) (held, error) {
	l, err := whiteout.LookupName(dfd, name, pm)
	if err != nil {
		return held{}, err
	}
	h := held{Lookup: l}
	if h.isDir() {
		h.markers, err = readMarkersAt(b.fd, rel)
	}
	return h, err
}

// heldAt reads what b holds at rel (a path in the branch, "." for its
// root) straight from its parent, as a lookup does at a redirect's places
// (the parent's markers read there). A missing parent, or one that is not
// a directory, holds nothing.
func (b *Branch) heldAt(rel string) (held, error) {
	if rel == "." {
		h := held{Lookup: whiteout.Lookup{Present: true}}
		err := sys.Fstat(b.fd, &h.St)
		if err == nil {
			h.markers, err = readMarkersAt(b.fd, ".")
		}
		return h, err
	}
	parent, name := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	dfd, err := b.openDir(parent)
	if errors.Is(err, unix.ENOENT) || sys.IsNotDir(err) {
		return held{}, nil
	}
	if err != nil {
		return held{}, err
	}
	defer b.closeDir(dfd)
	pm, err := whiteout.ReadDirMarkers(dfd, parent)
	if err != nil {
		return held{}, err
	}
	return readHeld(b, dfd, name, rel, pm)
}

// readMarkersAt reads the directory markers of rel beneath the branch root.
// A readable descriptor lets the xattr reads be plain fgetxattr calls; a
// directory we may not read falls back to an O_PATH descriptor.
func readMarkersAt(rootFD int, rel string) (whiteout.DirMarkers, error) {
	fd, err := sys.OpenBeneath(rootFD, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.EACCES) {
		fd, err = sys.OpenDirBeneath(rootFD, rel)
	}
	if err != nil {
		return whiteout.DirMarkers{}, err
	}
	defer unix.Close(fd)
	return whiteout.ReadDirMarkers(fd, rel)
}

// StatLayer lstats one copy.
func (s *Stack) StatLayer(l Layer, st *unix.Stat_t) error {
	return withParent(l, func(dfd int, name string) error {
		if name == "" {
			return sys.Fstat(dfd, st)
		}
		return sys.Lstatat(dfd, name, st)
	})
}

// OpenLayer opens one copy with the given flags. Symlinks are never
// followed: opening one fails with ELOOP.
func (s *Stack) OpenLayer(l Layer, flags int) (int, error) {
	return sys.OpenBeneath(l.Branch.fd, l.Path, flags, 0)
}

// Readlink reads the target of a symlink entry.
func (s *Stack) Readlink(e *Entry) (string, error) {
	var target string
	err := withParent(e.Top(), func(dfd int, name string) (err error) {
		target, err = sys.Readlinkat(dfd, name)
		return err
	})
	return target, err
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "object"
}

// TypeName names the file type in mode ("file", "dir", "symlink", ...).
func TypeName(mode uint32) string { return typeName(mode) }
