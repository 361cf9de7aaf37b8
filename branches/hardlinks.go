package branches

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Hard links in read-only branches (docs/UNION-SEMANTICS.md, "Identity"):
// the names of one lower inode show as one union inode, with st_nlink
// counting the names the union still shows, and a copy-up never splits the
// set: every visible name is copied up at once, as hard links to one upper
// copy. The upper is then self-describing (kernel overlay, mounting it, sees
// the same linked files), and no index is needed.
//
// A set may span read-only branches: lower branches on one filesystem can
// hold links of one inode (layer stores that share unchanged files between
// layers do this). The union numbers objects by (device, inode), so those
// names already show as one object, and they are one set like any other.
//
// Finding a set's other names takes a map of each read-only branch's
// multi-link inodes, built by one walk of the branch the first time it is
// needed. Read-only branches never change under the mount, so it stays
// right. The walk of a branch other than the name's own is only made when
// the names found so far fall short of the inode's link count.

// linkMap lists, for one branch, the paths of every non-directory with
// more than one link, by device and inode number.
type linkMap struct {
	once  sync.Once
	paths map[devIno][]string
	err   error
}

func (b *Branch) linkMap() (map[devIno][]string, error) {
	b.links.once.Do(func() {
		b.links.paths = map[devIno][]string{}
		b.links.err = walkLinks(b.fd, ".", b.links.paths)
	})
	return b.links.paths, b.links.err
}

// walkLinks collects multi-link non-directories below rel.
func walkLinks(rootFD int, rel string, out map[devIno][]string) error {
	entries, err := sys.ReadDir(rootFD, rel)
	if err != nil {
		return fmt.Errorf("listing %s: %w", rel, err)
	}
	dfd, err := sys.OpenDirBeneath(rootFD, rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for _, e := range entries {
		if whiteout.IsReserved(e.Name) {
			continue
		}
		p := path.Join(rel, e.Name)
		if e.Type == unix.DT_DIR {
			if err := walkLinks(rootFD, p, out); err != nil {
				return err
			}
			continue
		}
		var st unix.Stat_t
		if err := sys.Lstatat(dfd, e.Name, &st); err != nil {
			continue // vanished
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := walkLinks(rootFD, p, out); err != nil {
				return err
			}
		} else if st.Nlink > 1 {
			k := devIno{uint64(st.Dev), st.Ino}
			out[k] = append(out[k], p)
		}
	}
	return nil
}

// isLowerLinkSet reports whether e is a name of a multi-link inode in a
// branch the union never writes.
func isLowerLinkSet(e *Entry) bool {
	return !e.IsDir() && e.St.Nlink > 1 && e.Top().Branch.Perm != RW
}

// linkSet returns the union paths of every name the union shows for e's
// inode (e's own included), for a name of a lower link set. A name counts
// when it resolves, in the union, to the same inode (device and number)
// served by a read-only branch: e's own or another on the same filesystem.
func (s *Stack) linkSet(e *Entry) ([]string, error) {
	own := e.Top().Branch
	k := devIno{uint64(e.St.Dev), e.St.Ino}
	// Branch paths of the inode, e's branch first; the other read-only
	// branches on its filesystem are walked only while names are missing
	// (a link may also be outside every branch: then all are walked, once).
	order := []*Branch{own}
	for _, b := range s.branches {
		if b != own && b.Perm != RW && b.dev == k.dev {
			order = append(order, b)
		}
	}
	var found []string
	for i, b := range order {
		if i > 0 && uint64(len(found)) >= uint64(e.St.Nlink) {
			break // every link is accounted for
		}
		m, err := b.linkMap()
		if err != nil {
			return nil, err
		}
		found = append(found, m[k]...)
	}
	var out []string
	for _, p := range found {
		if slices.Contains(out, p) {
			continue // the same path in two branches: the union shows one
		}
		other, err := s.Resolve(p)
		if errors.Is(err, ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !other.IsDir() && other.Top().Branch.Perm != RW && uint64(other.St.Dev) == k.dev && other.St.Ino == k.ino {
			out = append(out, other.Path)
		}
	}
	if len(out) == 0 {
		out = []string{e.Path} // renamed directories: at least e itself
	}
	return out, nil
}

// copyUpLinkSet copies every visible name of e's lower link set up as hard
// links to one upper copy, and returns e's new entry. The copy is made as
// e, the other names are linked to it, and only then does the shared inode
// get the set's union inode number: a crash before that leaves names with
// numbers of their own, never two objects with one number.
func (s *Stack) copyUpLinkSet(e *Entry, rw *rwBranch) (*Entry, error) {
	names, err := s.linkSet(e)
	if err != nil {
		return nil, err
	}
	first, err := s.copyUpOne(e, rw, s.withOrigin(nil, e))
	if err != nil {
		return nil, err
	}
	for _, p := range names {
		if p == e.Path {
			continue
		}
		other, err := s.Resolve(p)
		if err != nil {
			return nil, err
		}
		if other.Top().Branch == rw.Branch {
			continue // a concurrent copy-up did it
		}
		dir, err := s.Resolve(path.Dir(p))
		if err != nil {
			return nil, err
		}
		if _, err := s.linkIn(rw, first, dir, path.Base(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, err
		}
		if t := s.tracer.Load(); t != nil {
			t.copyUpLink(p, e, rw.Branch)
		}
	}
	err = withParent(first.Top(), func(dirFD int, name string) error {
		return sys.Setxattr(dirFD, name, s.inoXattr(), encodeIno(e.Ino), 0)
	})
	if err != nil {
		return nil, err
	}
	s.layoutChanged() // the other names of the set moved up too
	return s.Resolve(e.Path)
}

// linkIn links obj, whose copy is in rw, as name in dir (copied into rw
// first), replacing a whiteout there, and returns the new name's entry.
func (s *Stack) linkIn(rw *rwBranch, obj *Entry, dir *Entry, name string) (*Entry, error) {
	dirUp, err := s.copyUpTo(dir, rw)
	if err != nil {
		return nil, err
	}
	err = withParent(obj.Top(), func(srcDir int, srcName string) error {
		return s.withDirIn(dirUp, rw, func(dstDir int, markers whiteout.DirMarkers) error {
			tmp := rw.tempName()
			if err := unix.Linkat(srcDir, srcName, rw.work(), tmp, 0); err != nil {
				return err
			}
			return s.place(rw, markers, dstDir, name, tmp, false)
		})
	})
	if err != nil {
		return nil, err
	}
	return s.Lookup(dirUp, name)
}

// copyUpLinkSetsUnder copies up every lower hard-link set with a name
// inside the directory dir, before dir is renamed with a redirect. Names
// below a redirect cannot be found by their branch paths any more, so a
// set split there would leave the union showing two objects with one
// inode number; copied up first, the set is a set of plain upper links
// wherever it moves. (Sets under a redirect the kernel wrote remain a
// known limit.)
func (s *Stack) copyUpLinkSetsUnder(dir *Entry) error {
	for _, l := range dir.Layers {
		if l.Branch.Perm == RW {
			continue
		}
		m, err := l.Branch.linkMap()
		if err != nil {
			return err
		}
		prefix := l.Path + "/"
		if l.Path == "." {
			prefix = ""
		}
		for _, paths := range m {
			for _, p := range paths {
				if !strings.HasPrefix(p, prefix) {
					continue
				}
				e, err := s.Resolve(path.Join(dir.Path, strings.TrimPrefix(p, prefix)))
				if errors.Is(err, ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
					continue // hidden in the union
				}
				if err != nil {
					return err
				}
				if isLowerLinkSet(e) && e.Top().Branch == l.Branch {
					if _, err := s.CopyUp(e); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
