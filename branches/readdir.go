package branches

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// Name is one name of a merged listing, with the type its topmost visible
// copy has.
type Name struct {
	Name string
	Type uint8 // DT_* constant
}

// Names lists the names the union shows in dir, sorted: the union of the
// entries of every merged copy of dir, minus names whited out in a higher
// copy, minus markers. A name that is a non-directory in one copy and a
// directory in another counts once, with the type of its topmost copy.
func (s *Stack) Names(dir *Entry) ([]Name, error) {
	if !dir.IsDir() {
		return nil, fmt.Errorf("%s: %w", dir.Path, unix.ENOTDIR)
	}
	index, err := s.ready(dir.index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.Path, err)
	}
	seen := map[string]bool{} // decided by a higher copy, shown or not
	var out []Name
	for _, layer := range dir.Layers {
		ll, err := index.listing(layer)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %w", dir.Path, layer.Branch.Path, err)
		}
		names, hidden := ll.names, ll.hidden
		for _, e := range names {
			if !seen[e.Name] {
				seen[e.Name] = true
				out = append(out, Name{Name: e.Name, Type: e.Type})
			}
		}
		// Whiteouts act on the copies below, after this copy's own names
		// (an aufs whiteout beside a real object hides only lower ones).
		for name := range hidden {
			seen[name] = true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadDir resolves every name of the merged listing of dir. Each entry is
// exactly what Lookup returns for that name, so a listing and a lookup can
// never disagree (inode numbers included).
func (s *Stack) ReadDir(dir *Entry) ([]*Entry, error) {
	names, err := s.Names(dir)
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(names))
	fds := newListingDirs()
	defer fds.close()
	for _, n := range names {
		var e *Entry
		if t := s.tracer.Load(); t != nil {
			e, err = s.tracedLookup(t, dir, n.Name)
		} else {
			e, err = s.lookup(dir, n.Name, nil, fds)
		}
		if errors.Is(err, ErrNotExist) {
			continue // vanished between the listing and the lookup
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Nlink is the link count the union reports for e: for a directory 2 plus
// its visible subdirectories (docs/UNION-SEMANTICS.md, "Identity"); for a
// name of a lower hard-link set the number of its names the union shows; for
// anything else the serving copy's own count.
func (s *Stack) Nlink(e *Entry) (uint64, error) {
	if isLowerLinkSet(e) {
		// A lower set counts the names the union still shows.
		names, err := s.linkSet(e)
		return uint64(len(names)), err
	}
	if !e.IsDir() {
		return uint64(e.St.Nlink), nil
	}
	if e.index == nil && len(e.Layers) == 1 && e.Path != "." && e.St.Nlink >= 2 {
		// A directory only in a writable branch: its own count is the
		// union's, since no marker is a directory (the root may hold the
		// aufs scratch directory). A filesystem that does not count
		// subdirectories reports 1.
		return uint64(e.St.Nlink), nil
	}
	cached, ok, changes := s.subdirs.get(e.Ino)
	if ok {
		return 2 + uint64(cached), nil
	}
	names, err := s.Names(e)
	if err != nil {
		return 0, err
	}
	subdirs := 0
	for _, c := range names {
		if c.Type == unix.DT_DIR {
			subdirs++
		}
	}
	s.subdirs.put(e.Ino, subdirs, changes)
	return 2 + uint64(subdirs), nil
}

// Attr returns the attributes the union reports for e: the serving copy's,
// with the union inode number and link count.
func (s *Stack) Attr(e *Entry) (unix.Stat_t, error) {
	st := e.St
	st.Ino = e.Ino
	n, err := s.Nlink(e)
	if err != nil {
		return st, err
	}
	st.Nlink = n
	return st, nil
}
