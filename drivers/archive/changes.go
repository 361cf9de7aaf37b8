package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Changes lists what a layer's own dir changes relative to its parent's
// merged view (parent may be nil for a base layer; B passes
// branches.Stack.FS() of the parent chain, or os.DirFS of a vfs copy).
//
// As docker diff: an object of the layer is Added when the parent has no
// such path and Modified when it has (a directory only when its mode or
// owner differ); a whiteout is a Delete of what it hides, listing the
// deleted path only, not what was below it; an opaque directory Deletes
// every parent entry in it the layer does not have again; a directory
// whose content changed is Modified. The list is in tree order (a
// directory before its content, names sorted); the root is never listed.
func Changes(dir string, parent fs.FS) ([]Change, error) {
	c := &layerChanges{parent: parent, set: changeSet{}, fresh: map[string]bool{}}
	if err := walkLayer(dir, parent, c); err != nil {
		return nil, fmt.Errorf("changes: %w", err)
	}
	c.set.markParents()
	return c.set.list(), nil
}

// layerChanges compares layer content with the parent view; it is the
// layerEvents of Changes.
type layerChanges struct {
	parent fs.FS
	set    changeSet
	// fresh: directories of the layer the parent has no directory at;
	// nothing below them can be in the parent (and the parent view must
	// not be asked: it would follow a symlink there).
	fresh map[string]bool
}

// inFresh reports whether rel is below a fresh directory.
func (c *layerChanges) inFresh(rel string) bool {
	for p := parentRel(rel); p != "."; p = parentRel(p) {
		if c.fresh[p] {
			return true
		}
	}
	return false
}

// lookup returns the parent's object at rel, if it has one.
func (c *layerChanges) lookup(rel string) (fs.FileInfo, bool, error) {
	if c.parent == nil || c.inFresh(rel) || c.fresh[rel] {
		return nil, false, nil
	}
	fi, err := lstatFS(c.parent, rel)
	switch {
	case err == nil:
		return fi, true, nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("parent view: %w", err)
}

func (c *layerChanges) object(o *object) error {
	if o.st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		return nil // not part of a layer tar, so not a change of one
	}
	pfi, ok, err := c.lookup(o.rel)
	if err != nil {
		return err
	}
	dir := isDir(&o.st)
	switch {
	case !ok:
		c.set.add(o.rel, ChangeAdd)
		if dir {
			c.fresh[o.rel] = true
		}
	case dir && pfi.IsDir():
		pst, ids := statOf(pfi)
		if o.st.Mode&0o7777 != pst.Mode&0o7777 || (ids && (o.st.Uid != pst.Uid || o.st.Gid != pst.Gid)) {
			c.set.add(o.rel, ChangeModify)
		}
	default:
		c.set.add(o.rel, ChangeModify)
		if dir {
			c.fresh[o.rel] = true
		}
	}
	return nil
}

func (c *layerChanges) whiteout(dir, name string) error {
	rel := joinRel(dir, name)
	if _, ok, err := c.lookup(rel); err != nil || !ok {
		return err
	}
	c.set.add(rel, ChangeDelete)
	return nil
}

func (c *layerChanges) opaque(dir string, present map[string]bool) error {
	if dir != "." {
		fi, ok, err := c.lookup(dir)
		if err != nil || !ok || !fi.IsDir() {
			return err
		}
	}
	if c.parent == nil {
		return nil
	}
	entries, err := fs.ReadDir(c.parent, dir)
	if err != nil {
		return fmt.Errorf("parent view: %w", err)
	}
	for _, e := range entries {
		if !present[e.Name()] {
			c.set.add(joinRel(dir, e.Name()), ChangeDelete)
		}
	}
	return nil
}

// ChangesTrees compares two full trees (vfs backend).
//
// As moby's ChangesDirs: a path only in child is Added (and everything
// below it), a path only in parent is Deleted (the path alone); a path in
// both is Modified when its type, mode, owner, device number, xattrs or,
// for a non-directory, size, mtime or symlink target differ (directory
// mtimes and sizes are not a measure of change); a directory whose content
// changed is Modified. A name starting ".wh." in either tree is an error:
// no OCI layer can carry it. Same order as Changes.
func ChangesTrees(parent, child string) ([]Change, error) {
	tc, err := compareTrees(parent, child)
	if err != nil {
		return nil, fmt.Errorf("changes %s against %s: %w", child, parent, err)
	}
	defer tc.close()
	return tc.set.list(), nil
}

// treeCompare holds the changes between two full trees, and the trees,
// for DiffTrees to write.
type treeCompare struct {
	parentFD, childFD int
	set               changeSet
}

func compareTrees(parent, child string) (*treeCompare, error) {
	tc := &treeCompare{parentFD: -1, childFD: -1, set: changeSet{}}
	var err error
	if tc.parentFD, err = unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	if tc.childFD, err = unix.Open(child, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		tc.close()
		return nil, fmt.Errorf("child: %w", err)
	}
	if err := tc.walk(tc.parentFD, tc.childFD, "."); err != nil {
		tc.close()
		return nil, err
	}
	tc.set.markParents()
	return tc, nil
}

func (tc *treeCompare) close() {
	for _, fd := range []int{tc.parentFD, tc.childFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// names lists a directory of a full tree (none for fd -1), refusing
// marker names.
func treeNames(fd int, rel string) (map[string]bool, error) {
	out := map[string]bool{}
	if fd < 0 {
		return out, nil
	}
	entries, err := sys.ReadDir(fd, ".")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		if whiteout.IsReserved(e.Name) {
			return nil, fmt.Errorf("%s: names starting %q cannot be carried in an OCI layer (they read as whiteouts)", joinRel(rel, e.Name), whiteout.AufsPrefix)
		}
		out[e.Name] = true
	}
	return out, nil
}

// walk compares the directory pFD of the parent (-1: the parent has no
// directory here) with cFD of the child, both at rel.
func (tc *treeCompare) walk(pFD, cFD int, rel string) error {
	cNames, err := treeNames(cFD, rel)
	if err != nil {
		return err
	}
	pNames, err := treeNames(pFD, rel)
	if err != nil {
		return err
	}
	for name := range pNames {
		if !cNames[name] {
			tc.set.add(joinRel(rel, name), ChangeDelete)
		}
	}
	for name := range cNames {
		crel := joinRel(rel, name)
		var cst, pst unix.Stat_t
		if err := sys.Lstatat(cFD, name, &cst); err != nil {
			return fmt.Errorf("%s: %w", crel, err)
		}
		inParent := pNames[name]
		if inParent {
			if err := sys.Lstatat(pFD, name, &pst); err != nil {
				return fmt.Errorf("%s: %w", crel, err)
			}
		}
		switch {
		case !inParent:
			tc.set.add(crel, ChangeAdd)
		default:
			changed, err := differs(pFD, cFD, name, &pst, &cst)
			if err != nil {
				return fmt.Errorf("%s: %w", crel, err)
			}
			if changed {
				tc.set.add(crel, ChangeModify)
			}
		}
		if !isDir(&cst) {
			continue
		}
		if err := tc.walkChild(pFD, cFD, name, crel, inParent && isDir(&pst)); err != nil {
			return err
		}
	}
	return nil
}

func (tc *treeCompare) walkChild(pFD, cFD int, name, rel string, parentDir bool) error {
	cfd, err := sys.OpenDirBeneath(cFD, name)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(cfd)
	pfd := -1
	if parentDir {
		if pfd, err = sys.OpenDirBeneath(pFD, name); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		defer unix.Close(pfd)
	}
	return tc.walk(pfd, cfd, rel)
}

// differs reports whether name changed between the parent directory pFD
// and the child directory cFD.
func differs(pFD, cFD int, name string, p, c *unix.Stat_t) (bool, error) {
	dir := isDir(c)
	if !dir && c.Dev == p.Dev && c.Ino == p.Ino {
		return false, nil // the same inode (a hard-linked copy)
	}
	if c.Mode != p.Mode || c.Uid != p.Uid || c.Gid != p.Gid || c.Rdev != p.Rdev {
		return true, nil
	}
	if !dir && (c.Size != p.Size || !sameTime(c.Mtim, p.Mtim)) {
		return true, nil
	}
	if c.Mode&unix.S_IFMT == unix.S_IFLNK {
		pt, err := sys.Readlinkat(pFD, name)
		if err != nil {
			return false, err
		}
		ct, err := sys.Readlinkat(cFD, name)
		if err != nil || pt != ct {
			return true, err
		}
	}
	px, err := readXattrs(pFD, name)
	if err != nil {
		return false, err
	}
	cx, err := readXattrs(cFD, name)
	if err != nil {
		return false, err
	}
	return !slices.EqualFunc(px, cx, func(a, b xattr) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }), nil
}

// sameTime compares mtimes as moby does: tar formats without sub-second
// precision lose the nanoseconds, so a time with none matches any time in
// the same second.
func sameTime(a, b unix.Timespec) bool {
	return a.Sec == b.Sec && (a.Nsec == b.Nsec || a.Nsec == 0 || b.Nsec == 0)
}

// emit writes the changes as a layer tar: per directory, its deletions
// (.wh.<name>) first, then its added and modified entries by name.
func (tc *treeCompare) emit(e *tarEmitter) error {
	deleted := map[string][]string{}
	for rel, k := range tc.set {
		if k == ChangeDelete {
			dir := parentRel(rel)
			deleted[dir] = append(deleted[dir], rel[strings.LastIndexByte(rel, '/')+1:])
		}
	}
	return tc.emitDir(e, tc.childFD, ".", deleted)
}

func (tc *treeCompare) emitDir(e *tarEmitter, fd int, rel string, deleted map[string][]string) error {
	gone := deleted[rel]
	slices.Sort(gone)
	for _, name := range gone {
		if err := e.whiteout(rel, name); err != nil {
			return err
		}
	}
	entries, err := sys.ReadDir(fd, ".")
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	slices.SortFunc(entries, func(a, b sys.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	for _, ent := range entries {
		crel := joinRel(rel, ent.Name)
		if k, ok := tc.set[crel]; !ok || k == ChangeDelete {
			continue
		}
		o, err := layerObject(fd, ent.Name, crel)
		if err != nil {
			return err
		}
		if err := e.object(o); err != nil {
			return err
		}
		if !isDir(&o.st) {
			continue
		}
		cfd, err := sys.OpenDirBeneath(fd, ent.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", crel, err)
		}
		err = tc.emitDir(e, cfd, crel, deleted)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// Size is the DiffSize of a layer dir: the bytes of its regular files
// (hard links counted once). Markers and aufs/strata bookkeeping
// (.wh.*) do not count.
func Size(dir string) (int64, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("size %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var total int64
	seen := map[devIno]bool{}
	if err := sizeDir(fd, ".", seen, &total); err != nil {
		return 0, fmt.Errorf("size %s: %w", dir, err)
	}
	return total, nil
}

func sizeDir(fd int, rel string, seen map[devIno]bool, total *int64) error {
	entries, err := sys.ReadDir(fd, ".")
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		if whiteout.IsReserved(e.Name) {
			continue
		}
		crel := joinRel(rel, e.Name)
		var st unix.Stat_t
		if err := sys.Lstatat(fd, e.Name, &st); err != nil {
			return fmt.Errorf("%s: %w", crel, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			countOnce(&st, seen, total)
		case unix.S_IFDIR:
			cfd, err := sys.OpenDirBeneath(fd, e.Name)
			if err != nil {
				return fmt.Errorf("%s: %w", crel, err)
			}
			err = sizeDir(cfd, crel, seen, total)
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// countOnce adds a regular file's size, once per inode.
func countOnce(st *unix.Stat_t, seen map[devIno]bool, total *int64) {
	if st.Nlink > 1 {
		key := devIno{st.Dev, st.Ino}
		if seen[key] {
			return
		}
		seen[key] = true
	}
	*total += st.Size
}

// ChangesSize is the DiffSize of a full tree against its parent (vfs
// backend): the bytes of the regular files changes Adds or Modifies in
// child, hard links counted once, as moby's ChangesSize.
func ChangesSize(child string, changes []Change) (int64, error) {
	fd, err := unix.Open(child, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("size %s: %w", child, err)
	}
	defer unix.Close(fd)
	var total int64
	seen := map[devIno]bool{}
	for _, c := range changes {
		if c.Kind == ChangeDelete {
			continue
		}
		p, err := parseEntryName(strings.TrimPrefix(c.Path, "/"))
		if err != nil || p.isRoot() {
			return 0, fmt.Errorf("size %s: change %q: bad path", child, c.Path)
		}
		dfd, err := sys.OpenDirBeneath(fd, p.parent().String())
		if err != nil {
			return 0, fmt.Errorf("size %s: %s: %w", child, c.Path, err)
		}
		st, ok, err := lstatAt(dfd, p.base())
		unix.Close(dfd)
		if err != nil || !ok {
			return 0, fmt.Errorf("size %s: %s: %w", child, c.Path, errors.Join(err, fs.ErrNotExist))
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			countOnce(&st, seen, &total)
		}
	}
	return total, nil
}
