package branches

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// SetAttr lists the attribute changes of one setattr; nil fields stay.
type SetAttr struct {
	Mode         *uint32 // permission bits
	Uid, Gid     *uint32
	Size         *int64
	Atime, Mtime *unix.Timespec // UTIME_NOW and UTIME_OMIT allowed in Nsec
}

// owner is the chown(2) arguments of a: -1 for an id that stays.
func (a SetAttr) owner() (uid, gid int) {
	uid, gid = -1, -1
	if a.Uid != nil {
		uid = int(*a.Uid)
	}
	if a.Gid != nil {
		gid = int(*a.Gid)
	}
	return uid, gid
}

// times is the utimensat(2) argument of a: UTIME_OMIT for a time that
// stays.
func (a SetAttr) times() [2]unix.Timespec {
	omit := unix.Timespec{Nsec: unix.UTIME_OMIT}
	ts := [2]unix.Timespec{omit, omit}
	if a.Atime != nil {
		ts[0] = *a.Atime
	}
	if a.Mtime != nil {
		ts[1] = *a.Mtime
	}
	return ts
}

// Setattr changes attributes, copying the object up first: chmod, chown,
// utimens and truncate copy up (docs/UNION-SEMANTICS.md, "Copy-up"). It
// returns the entry as it is afterwards.
func (s *Stack) Setattr(e *Entry, a SetAttr) (*Entry, error) {
	up, err := s.CopyUp(e)
	if err != nil {
		return nil, err
	}
	isLink := up.St.Mode&unix.S_IFMT == unix.S_IFLNK
	err = withParent(up.Top(), func(dirFD int, name string) error {
		if name == "" {
			name = "."
		}
		if a.Uid != nil || a.Gid != nil {
			uid, gid := a.owner()
			if err := unix.Fchownat(dirFD, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if a.Mode != nil && !isLink {
			if err := unix.Fchmodat(dirFD, name, *a.Mode&0o7777, 0); err != nil {
				return err
			}
		}
		if a.Size != nil {
			fd, err := sys.OpenBeneath(dirFD, name, unix.O_WRONLY, 0)
			if err != nil {
				return err
			}
			err = unix.Ftruncate(fd, *a.Size)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		if a.Atime != nil || a.Mtime != nil {
			ts := a.times()
			if err := unix.UtimesNanoAt(dirFD, name, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	return s.refresh(up)
}

// SetattrOpen is Setattr through an open file: fd is the descriptor Open
// returned for e. A copy in a writable branch is changed through fd,
// which stays right after e's name is unlinked or given to another
// object (ftruncate of an unlinked temp file). A read-only copy must be
// copied up by its name first, which only makes sense while the name
// still leads to this object: once it does not (unlinked, so whited out),
// the change fails with ENOENT rather than bring the name back.
func (s *Stack) SetattrOpen(e *Entry, fd int, a SetAttr) (*Entry, error) {
	if e.Top().Branch.Perm != RW {
		now, err := s.Resolve(e.Path)
		if err != nil || now.Ino != e.Ino {
			return nil, fmt.Errorf("%s: open file no longer has this name, nothing to copy up: %w", e.Path, unix.ENOENT)
		}
		return s.Setattr(now, a)
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if err := setattrFD(fd, a); err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	n := *e
	if err := sys.Fstat(fd, &n.St); err != nil {
		return nil, fmt.Errorf("%s: %w", e.Path, err)
	}
	return &n, nil
}

// setattrFD applies a to the open file fd.
func setattrFD(fd int, a SetAttr) error {
	if a.Uid != nil || a.Gid != nil {
		uid, gid := a.owner()
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return err
		}
	}
	if a.Mode != nil {
		if err := unix.Fchmod(fd, *a.Mode&0o7777); err != nil {
			return err
		}
	}
	if a.Size != nil {
		if err := unix.Ftruncate(fd, *a.Size); err != nil {
			return err
		}
	}
	if a.Atime != nil || a.Mtime != nil {
		ts := a.times()
		// futimens(3): utimensat with a NULL path acts on fd itself.
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if errno != 0 {
			return errno
		}
	}
	return nil
}

// Restat returns e with its serving copy stat'ed again (sizes and times
// change under writes).
func (s *Stack) Restat(e *Entry) (*Entry, error) { return s.refresh(e) }

// refresh re-stats the serving copy of e.
func (s *Stack) refresh(e *Entry) (*Entry, error) {
	n := *e
	if err := s.StatLayer(n.Top(), &n.St); err != nil {
		return nil, err
	}
	return &n, nil
}

// ErrUnionXattr refuses writes of the union's own attributes through the
// mount, as kernel overlay does (EOPNOTSUPP).
var ErrUnionXattr = fmt.Errorf("attribute reserved for the union: %w", unix.EOPNOTSUPP)

// Setxattr sets an attribute, copying the object up first.
func (s *Stack) Setxattr(e *Entry, attr string, value []byte, flags int) (*Entry, error) {
	if err := s.checkWritable(); err != nil {
		return nil, err // as the kernel: EROFS before anything else
	}
	if whiteout.IsUnionXattr(attr) {
		return nil, ErrUnionXattr
	}
	up, err := s.CopyUp(e)
	if err != nil {
		return nil, err
	}
	err = withParent(up.Top(), func(dirFD int, name string) error {
		return sys.Setxattr(dirFD, name, attr, value, flags)
	})
	return up, err
}

// Removexattr removes an attribute, copying the object up first (when the
// attribute exists: removing a missing one answers ENODATA and copies
// nothing).
func (s *Stack) Removexattr(e *Entry, attr string) (*Entry, error) {
	if err := s.checkWritable(); err != nil {
		return nil, err // as the kernel: EROFS before ENODATA
	}
	if whiteout.IsUnionXattr(attr) {
		return nil, ErrUnionXattr
	}
	if _, err := s.Getxattr(e, attr); err != nil {
		return nil, err
	}
	up, err := s.CopyUp(e)
	if err != nil {
		return nil, err
	}
	err = withParent(up.Top(), func(dirFD int, name string) error {
		return sys.Removexattr(dirFD, name, attr)
	})
	return up, err
}

// Open opens e with open(2) flags and says whether it copied e up: a
// read-only open (no O_TRUNC) opens the serving copy and never copies up;
// any other open copies up first (docs/UNION-SEMANTICS.md, "Copy-up").
func (s *Stack) Open(e *Entry, flags int) (*Entry, int, bool, error) {
	if flags&unix.O_ACCMODE == unix.O_RDONLY && flags&unix.O_TRUNC == 0 {
		fd, err := s.OpenObject(e, flags)
		return e, fd, false, err
	}
	up, fd, err := s.OpenWrite(e, flags)
	return up, fd, true, err
}

// OpenWrite opens e for writing (flags as open(2)), copying it up first.
func (s *Stack) OpenWrite(e *Entry, flags int) (*Entry, int, error) {
	up, err := s.CopyUp(e)
	if err != nil {
		return nil, -1, err
	}
	fd, err := s.OpenObject(up, flags)
	return up, fd, err
}

// OpenObject opens e's serving copy and checks that it is e's object: an
// entry resolved before an unlink or a rename-over leads by its path to
// what holds the name now (another file, or a whiteout, which as a
// character device answers ENXIO). Such an open fails with ENOENT, as an
// open that lost the race with the unlink would.
func (s *Stack) OpenObject(e *Entry, flags int) (int, error) {
	fd, err := s.OpenLayer(e.Top(), flags)
	var st unix.Stat_t
	switch {
	case err == nil:
		if sys.Fstat(fd, &st) == nil && (st.Dev != e.St.Dev || st.Ino != e.St.Ino) {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: the name leads to another object now: %w", e.Path, unix.ENOENT)
		}
		return fd, nil
	case errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV):
		if s.StatLayer(e.Top(), &st) == nil && (st.Dev != e.St.Dev || st.Ino != e.St.Ino) {
			return -1, fmt.Errorf("%s: the name leads to another object now: %w", e.Path, unix.ENOENT)
		}
	}
	return -1, err
}

// Link makes newName in newDir another name of e: both are copied up and
// linked in the upper branch.
func (s *Stack) Link(e *Entry, newDir *Entry, newName string) (*Entry, error) {
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	if err := checkNewName(newName); err != nil {
		return nil, err
	}
	if e.IsDir() {
		return nil, fmt.Errorf("%s: %w", e.Path, unix.EPERM)
	}
	if _, err := s.Lookup(newDir, newName); err == nil {
		return nil, fmt.Errorf("%s/%s: %w", newDir.Path, newName, unix.EEXIST)
	} else if !errors.Is(err, ErrNotExist) {
		return nil, err
	}
	// A new name goes to the topmost rw branch, and a hard link must be
	// in the branch of what it links to: the object goes there too.
	up, err := s.copyUpTo(e, s.w.upper)
	if err != nil {
		return nil, err
	}
	return s.linkIn(s.w.upper, up, newDir, newName)
}
