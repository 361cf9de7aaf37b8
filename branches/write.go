package branches

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/cow"
	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// The write path (docs/UNION-SEMANTICS.md, "Copy-up" and
// "Removal and rename"). Every change happens in the upper branch (the
// topmost rw one); lower branches are never written. Objects are built under
// a temp name in the workdir and renamed into place, so each change appears
// whole or not at all.

// ErrReadOnly is returned by every write on a read-only stack.
var ErrReadOnly = fmt.Errorf("read-only union: %w", unix.EROFS)

// aufsWorkdir is where a br= stack without workdir= keeps its scratch
// space: inside the rw branch, under a name every aufs-aware reader hides.
const aufsWorkdir = whiteout.AufsMetaPrefix + "strata"

type writeState struct {
	// upper is the topmost rw branch: new names go there.
	upper *rwBranch
	// rw holds every rw branch: a change to an existing object goes to the
	// nearest one at or above the branch that serves it.
	rw map[*Branch]*rwBranch
	// ns is the xattr namespace of the union's own attributes
	// (whiteout.WritableNamespace).
	ns string
	// wo writes markers in the mount's format, which may fall back from
	// overlay to aufs once.
	wo *whiteout.FallbackWriter
}

// rwBranch is a writable branch with the workdir its changes are built in
// (on its filesystem, so that a rename moves them into place).
type rwBranch struct {
	*Branch
	engine *cow.Engine
}

func (r *rwBranch) work() int        { return r.engine.Work.FD() }
func (r *rwBranch) tempName() string { return r.engine.Work.TempName() }

// openWriteState opens a workdir for every rw branch: the workdir= given
// for the topmost one, <branch>/.wh..wh.strata otherwise (only the aufs
// syntax has several rw branches, or none given).
func (s *Stack) openWriteState() (*writeState, error) {
	if s.Upper() == nil {
		return nil, nil
	}
	ns := whiteout.WritableNamespace()
	w := &writeState{
		rw: map[*Branch]*rwBranch{}, ns: ns,
		wo: whiteout.NewFallbackWriter(whiteout.Writer{Format: s.opts.Whiteout, XattrNamespace: ns}, "from now on", s.opts.logger()),
	}
	for _, b := range s.branches {
		if b.Perm != RW {
			continue
		}
		workParent := s.workdir
		if workParent == "" || w.upper != nil {
			workParent = filepath.Join(b.Path, aufsWorkdir)
			if err := os.Mkdir(workParent, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				w.close()
				return nil, &BranchError{Role: string(b.Role), Path: b.Given, Err: ErrWorkdir, Detail: err.Error()}
			}
		}
		work, err := cow.OpenWorkdir(workParent)
		if err != nil {
			w.close()
			return nil, &BranchError{Role: "workdir", Path: workParent, Err: ErrWorkdir, Detail: err.Error()}
		}
		r := &rwBranch{Branch: b, engine: &cow.Engine{Work: work, Volatile: s.opts.Volatile}}
		w.rw[b] = r
		if w.upper == nil {
			w.upper = r
		}
	}
	return w, nil
}

func (w *writeState) close() {
	for _, r := range w.rw {
		r.engine.Work.Close()
	}
}

// nearestRW is where changes to an object served by b land: b itself when
// it is rw, else the nearest rw branch above it (nil when there is none).
func (s *Stack) nearestRW(b *Branch) *rwBranch {
	for i := b.Index; i >= 0; i-- {
		if r, ok := s.w.rw[s.branches[i]]; ok {
			return r
		}
	}
	return nil
}

// layerIn returns e's copy in branch b, if e has one.
func layerIn(e *Entry, b *Branch) (Layer, bool) {
	for _, l := range e.Layers {
		if l.Branch == b {
			return l, true
		}
	}
	return Layer{}, false
}

// Writable reports whether the stack takes writes.
func (s *Stack) Writable() bool { return s.w != nil }

func (s *Stack) inoXattr() string { return s.xattrNamespace() + "strata.ino" }

// storedIno reads the inode number a copy-up recorded on an upper object.
func (s *Stack) storedIno(dirFD int, name string) uint64 {
	v, err := sys.Getxattr(dirFD, name, s.inoXattr())
	if err != nil || len(v) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(v)
}

func encodeIno(ino uint64) []byte { return binary.LittleEndian.AppendUint64(nil, ino) }

// whiteoutWriter is the writer of the current format.
func (s *Stack) whiteoutWriter() whiteout.Writer { return s.w.wo.Writer() }

// writeWhiteout makes a whiteout for name in the upper directory dirFD and
// says which format it wrote. When overlay whiteouts are refused (mknod
// EPERM, as for unprivileged users on older kernels), the mount switches
// to aufs whiteouts and says so once (whiteout.FallbackWriter).
func (s *Stack) writeWhiteout(dirFD int, name string) (whiteout.Format, error) {
	return s.w.wo.Whiteout(dirFD, name)
}

func (s *Stack) checkWritable() error {
	if !s.Writable() {
		return ErrReadOnly
	}
	return nil
}

// checkNewName refuses names the union reserves for markers.
func checkNewName(name string) error {
	if whiteout.IsReserved(name) {
		return fmt.Errorf("%s: names starting %q are reserved for whiteouts: %w", name, whiteout.AufsPrefix, unix.EINVAL)
	}
	return nil
}

// CopyUp makes sure the object at e.Path has a copy in the upper branch,
// copying its parent directories first (each with its own metadata), and
// returns the entry as it is now. An upper object is returned as it is. A
// copied non-directory keeps its inode number (recorded in the
// <ns>strata.ino xattr); a directory keeps it by construction (see ino.go).
// A name of a lower hard-link set brings every visible name of the set up
// with it, as hard links to one copy (hardlinks.go).
func (s *Stack) CopyUp(e *Entry) (*Entry, error) {
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	return s.copyUpTo(e, s.nearestRW(e.Top().Branch))
}

// copyUpTo makes sure e has a copy in the rw branch rw (a directory: any
// merged copy there; a non-directory: the serving one), copying its
// parents into rw first.
func (s *Stack) copyUpTo(e *Entry, rw *rwBranch) (*Entry, error) {
	if rw == nil {
		return nil, fmt.Errorf("%s: no rw branch at or above %s: %w", e.Path, e.Top().Branch.Given, ErrReadOnly)
	}
	if _, ok := layerIn(e, rw.Branch); ok && (e.IsDir() || e.Top().Branch == rw.Branch) {
		return e, nil
	}
	if isLowerLinkSet(e) {
		return s.copyUpLinkSet(e, rw)
	}
	var extra map[string][]byte
	if !e.IsDir() {
		// The copy takes the object's place, so it takes its number.
		extra = map[string][]byte{s.inoXattr(): encodeIno(e.Ino)}
	}
	return s.copyUpOne(e, rw, s.withOrigin(extra, e))
}

// copyUpOne copies e alone into rw (its parents first), setting extra
// xattrs on the copy before it shows.
//
// e may have been resolved before a rename or removal moved its name (a
// FUSE node's entry is refreshed after the fact): copying it by its old
// path could bring a removed name back or place the copy under a new
// directory that took the old parent's name. So the name must still lead
// to e's object when the copy starts.
func (s *Stack) copyUpOne(e *Entry, rw *rwBranch, extra map[string][]byte) (*Entry, error) {
	if now, err := s.Resolve(e.Path); err != nil || now.Ino != e.Ino {
		return nil, fmt.Errorf("copy-up %s: the name no longer leads to this object: %w", e.Path, unix.ENOENT)
	}
	parent, err := s.Resolve(path.Dir(e.Path))
	if err != nil {
		return nil, err
	}
	if parent, err = s.copyUpTo(parent, rw); err != nil {
		return nil, err
	}
	name := e.Name()
	if t := s.tracer.Load(); t != nil {
		t.copyUpStart(e, rw.Branch)
	}
	var copied cow.Result
	err = withParent(e.Top(), func(srcDir int, srcName string) error {
		return s.withDirIn(parent, rw, func(dstDir int, _ whiteout.DirMarkers) error {
			if srcName != name {
				return fmt.Errorf("copy-up %s: source name %s differs", e.Path, srcName)
			}
			res, err := rw.engine.Up(srcDir, dstDir, name, extra)
			copied = res
			if errors.Is(err, unix.EEXIST) {
				return nil // a concurrent copy-up won the race
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	s.layoutChanged()
	if t := s.tracer.Load(); t != nil {
		t.copyUpEnd(e, rw.Branch, copied)
	}
	return s.Lookup(parent, name)
}

// withDirIn runs fn with an O_PATH descriptor of dir's copy in rw, which
// must exist (copyUpTo first), and that copy's markers.
func (s *Stack) withDirIn(dir *Entry, rw *rwBranch, fn func(dirFD int, markers whiteout.DirMarkers) error) error {
	l, ok := layerIn(dir, rw.Branch)
	if !ok {
		return fmt.Errorf("%s has no copy in %s", dir.Path, rw.Given)
	}
	fd, err := rw.openDir(l.Path)
	if err != nil {
		return err
	}
	defer rw.closeDir(fd)
	return fn(fd, l.Markers)
}

// shownBelow reports whether a branch below rw shows name in dir (dir
// already copied into rw): that is when a removal must leave a whiteout,
// and when a directory landing there must be opaque.
func (s *Stack) shownBelow(dir *Entry, name string, rw *rwBranch) (bool, error) {
	var layers []Layer
	for _, l := range dir.Layers {
		if l.Branch.Index > rw.Index {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		return false, nil
	}
	below := &Entry{Path: dir.Path, Layers: layers, St: dir.St, index: dir.index}
	_, err := s.lookup(below, name, nil, nil)
	if errors.Is(err, ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// NewObject describes an object to create.
type NewObject struct {
	// Mode holds the type (S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK,
	// S_IFCHR, S_IFBLK) and the permission bits.
	Mode uint32
	Rdev uint64 // devices
	// Target is a symlink's target.
	Target string
	// Uid and Gid own the new object (the caller, not the daemon).
	Uid, Gid uint32
	// OpenFlags, for a regular file, opens it: the descriptor is returned.
	OpenFlags int
	// Umask is the creating process's umask. It narrows Mode only where
	// the parent has no default ACL; where it has one, the ACL does
	// instead (acl.go). Symlinks ignore it.
	Umask uint32
}

// Create makes name in dir (a directory made where a lower one was whited
// out is opaque: docs/UNION-SEMANTICS.md, "Removal and rename"). It fails
// with EEXIST when the union shows the name, EINVAL for a reserved name. For
// a regular file it returns an open descriptor (OpenFlags), else -1.
func (s *Stack) Create(dir *Entry, name string, obj NewObject) (*Entry, int, error) {
	if err := s.checkWritable(); err != nil {
		return nil, -1, err
	}
	if err := checkNewName(name); err != nil {
		return nil, -1, err
	}
	if _, err := s.Lookup(dir, name); err == nil {
		return nil, -1, fmt.Errorf("%s: %w", path.Join(dir.Path, name), unix.EEXIST)
	} else if !errors.Is(err, ErrNotExist) {
		return nil, -1, err
	}
	if obj.Mode&unix.S_IFMT == unix.S_IFCHR && obj.Rdev == 0 {
		// A char device 0/0 is a whiteout: refused, as by kernel overlay.
		return nil, -1, fmt.Errorf("%s: %w", path.Join(dir.Path, name), unix.EPERM)
	}
	rw := s.w.upper
	dirUp, err := s.copyUpTo(dir, rw)
	if err != nil {
		return nil, -1, err
	}
	if dirUp.St.Mode&unix.S_ISGID != 0 {
		// BSD group semantics of a setgid directory, as every Linux
		// filesystem does: the group is inherited, and so is the bit.
		obj.Gid = dirUp.St.Gid
		if obj.Mode&unix.S_IFMT == unix.S_IFDIR {
			obj.Mode |= unix.S_ISGID
		}
	}
	isDir := obj.Mode&unix.S_IFMT == unix.S_IFDIR
	fd := -1
	var made *Entry
	err = s.withDirIn(dirUp, rw, func(dirFD int, markers whiteout.DirMarkers) error {
		access, def, err := newObjectACLs(dirFD, &obj)
		if err != nil {
			return err
		}
		tmp, f, err := s.buildNew(rw, obj, access, def)
		if err != nil {
			return err
		}
		fd = f
		err = s.place(rw, markers, dirFD, name, tmp, isDir)
		if err == nil && !isDir && rw.Index == 0 {
			made, err = s.newTopEntry(dirUp, dirFD, name)
		}
		if err != nil && fd >= 0 {
			unix.Close(fd)
			fd = -1
		}
		return err
	})
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", path.Join(dir.Path, name), err)
	}
	if isDir {
		s.subdirs.changed(dir, dirUp)
	}
	e := made
	if e == nil {
		e, err = s.Lookup(dirUp, name)
	}
	if t := s.tracer.Load(); t != nil && err == nil {
		t.created(e)
	}
	if err != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return e, fd, err
}

// newTopEntry is the entry of a non-directory just made as name in the
// top branch, whose copy of dir is open as dirFD: what a lookup would
// find, without the lookup, since a non-directory in the top branch is
// the whole resolution (one layer, nothing below it counts).
func (s *Stack) newTopEntry(dir *Entry, dirFD int, name string) (*Entry, error) {
	top := s.branches[0]
	l, _ := layerIn(dir, top)
	e := &Entry{Path: path.Join(dir.Path, name), Layers: []Layer{{Branch: top, Path: path.Join(l.Path, name)}}}
	if err := sys.Lstatat(dirFD, name, &e.St); err != nil {
		return nil, err
	}
	e.Ino = s.identity(e)
	return e, nil
}

// buildNew makes the object under a temp name in the workdir, owned by
// its creator, with the ACLs it inherits (newObjectACLs). Its mode is set
// whole after it is made, so the daemon's own umask plays no part.
func (s *Stack) buildNew(rw *rwBranch, obj NewObject, access, def []byte) (tmp string, fd int, err error) {
	work := rw.work()
	tmp = rw.tempName()
	fd = -1
	perm := obj.Mode & 0o7777
	switch obj.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		flags := ReopenFlags(obj.OpenFlags) | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
		fd, err = unix.Openat(work, tmp, flags, 0o600)
	case unix.S_IFDIR:
		err = unix.Mkdirat(work, tmp, 0o700)
	case unix.S_IFLNK:
		err = unix.Symlinkat(obj.Target, work, tmp)
	default:
		err = unix.Mknodat(work, tmp, obj.Mode&unix.S_IFMT|0o600, int(obj.Rdev))
	}
	if err != nil {
		return "", -1, err
	}
	fail := func(err error) (string, int, error) {
		if fd >= 0 {
			unix.Close(fd)
		}
		sys.RemoveAll(work, tmp)
		return "", -1, err
	}
	if err := unix.Fchownat(work, tmp, int(obj.Uid), int(obj.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
		return fail(err)
	}
	if obj.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears setgid/setuid bits.
		if err := unix.Fchmodat(work, tmp, perm, 0); err != nil {
			return fail(err)
		}
		if err := setNewACLs(work, tmp, access, def); err != nil {
			return fail(err)
		}
	}
	return tmp, fd, nil
}

// place moves the temp object tmp into the upper directory dirFD as name,
// replacing a whiteout there. A directory placed over a whiteout is made
// opaque first, so the lower copies it replaces stay hidden.
func (s *Stack) place(rw *rwBranch, markers whiteout.DirMarkers, dirFD int, name, tmp string, isDir bool) error {
	work := rw.work()
	l, err := whiteout.LookupName(dirFD, name, markers)
	if err != nil {
		return err
	}
	if l.Present {
		sys.RemoveAll(work, tmp)
		return unix.EEXIST
	}
	if isDir && l.Hides != whiteout.NoMarker {
		if err := s.makeOpaque(work, tmp); err != nil {
			sys.RemoveAll(work, tmp)
			return err
		}
	}
	switch l.Hides {
	case whiteout.OverlayChar, whiteout.OverlayXattr:
		if isDir {
			// A directory cannot replace a non-directory: swap them, then
			// drop the whiteout, now in the workdir.
			if err := unix.Renameat2(work, tmp, dirFD, name, unix.RENAME_EXCHANGE); err != nil {
				sys.RemoveAll(work, tmp)
				return err
			}
			return unix.Unlinkat(work, tmp, 0)
		}
		err = unix.Renameat(work, tmp, dirFD, name)
	case whiteout.AufsFile:
		if err = unix.Renameat2(work, tmp, dirFD, name, unix.RENAME_NOREPLACE); err == nil {
			// The object hides the lower copies by itself now (an opaque
			// directory, or a non-directory).
			err = unix.Unlinkat(dirFD, whiteout.AufsName(name), 0)
		}
	default:
		err = unix.Renameat2(work, tmp, dirFD, name, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		sys.RemoveAll(work, tmp)
	}
	return err
}

func (s *Stack) makeOpaque(parentFD int, name string) error {
	fd, err := unix.Openat(parentFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	w := s.whiteoutWriter()
	if w.Format == whiteout.Overlay {
		if err := dropXattrWhiteouts(fd); err != nil {
			return err
		}
	}
	return w.MakeOpaque(fd)
}

// dropXattrWhiteouts deletes the xattr whiteouts of the directory fd before
// it is made opaque: overlay.opaque=y replaces the overlay.opaque=x that
// made them whiteouts, so they would show as empty files; and in an opaque
// directory they hide nothing.
func dropXattrWhiteouts(fd int) error {
	m, err := whiteout.ReadDirMarkers(fd, ".")
	if err != nil || !m.XattrWhiteouts {
		return err
	}
	entries, err := sys.ReadDir(fd, ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		var st unix.Stat_t
		if e.Type != unix.DT_REG && e.Type != unix.DT_UNKNOWN {
			continue
		}
		if err := sys.Lstatat(fd, e.Name, &st); err != nil {
			return err
		}
		if whiteout.IsXattrWhiteout(fd, e.Name, &st) {
			if err := unix.Unlinkat(fd, e.Name, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove unlinks a non-directory (dir false) or removes an empty directory
// (dir true) from the union: the upper copy goes, and when a lower branch
// still shows the name, a whiteout takes its place. rmdir of a directory
// with any visible entry fails with ENOTEMPTY.
func (s *Stack) Remove(dir *Entry, name string, isDir bool) error {
	if err := s.checkWritable(); err != nil {
		return err
	}
	e, err := s.Lookup(dir, name)
	if err != nil {
		return err
	}
	full := path.Join(dir.Path, name)
	switch {
	case isDir && !e.IsDir():
		return fmt.Errorf("%s: %w", full, unix.ENOTDIR)
	case !isDir && e.IsDir():
		return fmt.Errorf("%s: %w", full, unix.EISDIR)
	case isDir:
		names, err := s.Names(e)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return fmt.Errorf("%s: %w", full, unix.ENOTEMPTY)
		}
	}
	// The change lands where the object is when that branch is rw, else
	// in the nearest rw branch above it.
	rw := s.nearestRW(e.Top().Branch)
	dirIn, err := s.copyUpTo(dir, rw)
	if err != nil {
		return err
	}
	needWhiteout, err := s.shownBelow(dirIn, name, rw)
	if err != nil {
		return err
	}
	inRW := e.Top().Branch == rw.Branch
	if isDir {
		defer s.layoutChanged()
		defer s.subdirs.changed(dir, dirIn, e)
		defer s.dirs.forget(e.Ino)
	}
	err = s.withDirIn(dirIn, rw, func(dirFD int, _ whiteout.DirMarkers) error {
		switch {
		case !inRW:
			_, err := s.writeWhiteout(dirFD, name)
			return err
		case !needWhiteout:
			return s.discard(rw, dirFD, name, isDir)
		}
		return s.replaceWithWhiteout(rw, dirFD, name, isDir)
	})
	if t := s.tracer.Load(); t != nil && err == nil {
		t.removed(full, rw.Branch, isDir, !inRW || needWhiteout, s.whiteoutWriter().Format)
	}
	return err
}

// discard removes an upper object that nothing below shows: moved into the
// workdir first (atomic), then deleted there with its markers.
func (s *Stack) discard(rw *rwBranch, dirFD int, name string, isDir bool) error {
	if !isDir {
		return unix.Unlinkat(dirFD, name, 0)
	}
	work := rw.work()
	tmp := rw.tempName()
	if err := unix.Renameat(dirFD, name, work, tmp); err != nil {
		return err
	}
	return sys.RemoveAll(work, tmp)
}

// replaceWithWhiteout swaps an upper object for a whiteout, so that the
// lower copies never show in between.
func (s *Stack) replaceWithWhiteout(rw *rwBranch, dirFD int, name string, isDir bool) error {
	work := rw.work()
	if s.whiteoutWriter().Format == whiteout.Overlay {
		// Build the whiteout in the workdir and exchange it with the
		// object in one rename.
		tmp := rw.tempName()
		format, err := s.writeWhiteout(work, tmp)
		if err != nil {
			return err
		}
		if format == whiteout.Overlay {
			if err := unix.Renameat2(work, tmp, dirFD, name, unix.RENAME_EXCHANGE); err != nil {
				unix.Unlinkat(work, tmp, 0)
				return err
			}
			return sys.RemoveAll(work, tmp)
		}
		unix.Unlinkat(work, whiteout.AufsName(tmp), 0) // fell back just now
	}
	// aufs: .wh.name beside name already hides the lower copies (the same
	// layer's object still shows); then the object goes.
	if _, err := s.writeWhiteout(dirFD, name); err != nil {
		return err
	}
	return s.discard(rw, dirFD, name, isDir)
}
