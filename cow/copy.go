package cow

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Method says how the data of a copy-up was moved.
type Method string

const (
	// NoData: a directory, symlink or special file (no data to move).
	NoData Method = "none"
	// Reflink: FICLONE shared the extents; no data was copied.
	Reflink Method = "reflink"
	// CopyFileRange: the kernel copied the data (in-kernel, holes kept).
	CopyFileRange Method = "copy_file_range"
	// Loop: a read/write loop in userspace (holes kept).
	Loop Method = "loop"
)

// Engine copies objects up through a workdir.
type Engine struct {
	Work *Workdir
	// Volatile skips every fsync (kernel overlay's "volatile").
	Volatile bool
	// disable forces the fallbacks, for tests.
	disable struct{ reflink, copyFileRange bool }
}

// Result reports one copy-up.
type Result struct {
	Method Method
	Bytes  int64
}

// Up copies the object name in the lower directory srcDir to the same
// name in the upper directory dstDir: a regular file, directory (its own
// metadata only, never its entries), symlink, fifo, socket or device. The
// destination name must not exist (EEXIST otherwise): copy-up never
// replaces anything. extra xattrs (the union's bookkeeping, such as the
// object's inode number) are set on the copy before it becomes visible.
func (e *Engine) Up(srcDir int, dstDir int, name string, extra map[string][]byte) (Result, error) {
	var st unix.Stat_t
	if err := sys.Lstatat(srcDir, name, &st); err != nil {
		return Result{}, fmt.Errorf("copy-up %s: %w", name, err)
	}
	tmp := e.Work.TempName()
	res, err := e.build(srcDir, name, &st, tmp)
	for attr, v := range extra {
		if err == nil {
			err = sys.Setxattr(e.Work.fd, tmp, attr, v, 0)
		}
	}
	if err == nil && !e.Volatile {
		err = e.syncTemp(tmp, &st)
	}
	if err == nil {
		err = unix.Renameat2(e.Work.fd, tmp, dstDir, name, unix.RENAME_NOREPLACE)
	}
	if err == nil && !e.Volatile {
		err = fsyncDir(dstDir)
	}
	if err != nil {
		removeTemp(e.Work.fd, tmp, &st)
		return Result{}, fmt.Errorf("copy-up %s: %w", name, err)
	}
	return res, nil
}

// build makes the complete copy under the temp name.
func (e *Engine) build(srcDir int, name string, st *unix.Stat_t, tmp string) (Result, error) {
	w := e.Work.fd
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return e.buildFile(srcDir, name, st, tmp)
	case unix.S_IFDIR:
		if err := unix.Mkdirat(w, tmp, 0o700); err != nil {
			return Result{}, err
		}
	case unix.S_IFLNK:
		target, err := sys.Readlinkat(srcDir, name)
		if err != nil {
			return Result{}, err
		}
		if err := unix.Symlinkat(target, w, tmp); err != nil {
			return Result{}, err
		}
	default: // fifo, socket, char and block devices
		if err := unix.Mknodat(w, tmp, st.Mode, int(st.Rdev)); err != nil {
			return Result{}, err
		}
	}
	return Result{Method: NoData}, copyMetadata(srcDir, name, w, tmp, st)
}

func (e *Engine) buildFile(srcDir int, name string, st *unix.Stat_t, tmp string) (Result, error) {
	src, err := unix.Openat(srcDir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(src)
	dst, err := unix.Openat(e.Work.fd, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(dst)
	method, err := e.copyData(src, dst, st.Size)
	if err != nil {
		return Result{}, err
	}
	return Result{Method: method, Bytes: st.Size}, copyMetadata(srcDir, name, e.Work.fd, tmp, st)
}

// copyData moves size bytes from src to dst by the cheapest method that
// works, keeping holes.
func (e *Engine) copyData(src, dst int, size int64) (Method, error) {
	if size == 0 {
		return CopyFileRange, nil
	}
	if !e.disable.reflink && unix.IoctlFileClone(dst, src) == nil {
		return Reflink, nil
	}
	method := CopyFileRange
	if e.disable.copyFileRange {
		method = Loop
	}
	err := forEachData(src, size, func(off, n int64) error {
		if method == CopyFileRange {
			err := copyRange(src, dst, off, n)
			if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
				return err
			}
			method = Loop // this filesystem pair cannot; fall back for good
		}
		return loopRange(src, dst, off, n)
	})
	if err != nil {
		return "", err
	}
	// The size covers a trailing hole.
	return method, unix.Ftruncate(dst, size)
}

// forEachData calls fn for each data segment of src (SEEK_DATA/SEEK_HOLE),
// or once for the whole file where the filesystem cannot say.
func forEachData(src int, size int64, fn func(off, n int64) error) error {
	var off int64
	for off < size {
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fn(off, size-off) // no hole support: copy it all
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if err := fn(data, min(hole, size)-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

func copyRange(src, dst int, off, n int64) error {
	for n > 0 {
		roff, woff := off, off
		c, err := unix.CopyFileRange(src, &roff, dst, &woff, int(min(n, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF // the source shrank under us
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

func loopRange(src, dst int, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		c, err := unix.Pread(src, buf[:min(n, int64(len(buf)))], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if c == 0 {
			return io.ErrUnexpectedEOF
		}
		if _, err := unix.Pwrite(dst, buf[:c], off); err != nil {
			return err
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

// copyMetadata gives the temp copy the source's owner, mode, xattrs and
// times, in an order that keeps each: chown clears setuid bits, so mode
// comes after it; writing xattrs changes ctime only; times come last.
func copyMetadata(srcDir int, name string, dstDir int, tmp string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := unix.Fchownat(dstDir, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
		// EPERM: an unprivileged mount keeps the copy as its own user,
		// as fuse-overlayfs does.
		return err
	}
	if err := copyXattrs(srcDir, name, dstDir, tmp); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Fchmodat(dstDir, tmp, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(dstDir, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyXattrs copies every xattr but the union's own markers.
func copyXattrs(srcDir int, name string, dstDir int, tmp string) error {
	names, err := sys.Listxattr(srcDir, name)
	if sys.IsNoAttr(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, attr := range names {
		if whiteout.IsUnionXattr(attr) {
			continue
		}
		v, err := sys.Getxattr(srcDir, name, attr)
		if sys.IsNoAttr(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
		if err := sys.Setxattr(dstDir, tmp, attr, v, 0); err != nil {
			if errors.Is(err, unix.EPERM) && !isUserXattr(attr) {
				continue // trusted./security. need privileges we lack
			}
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	return nil
}

func isUserXattr(attr string) bool { return len(attr) > 5 && attr[:5] == "user." }

// syncTemp makes the copy durable before it becomes visible. Only regular
// files and directories have anything to flush; a symlink's or a device's
// content is its inode, which the rename's directory fsync covers.
func (e *Engine) syncTemp(tmp string, st *unix.Stat_t) error {
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFREG && typ != unix.S_IFDIR {
		return nil
	}
	fd, err := unix.Openat(e.Work.fd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

func fsyncDir(dirFD int) error {
	fd, err := unix.Openat(dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

func removeTemp(workFD int, tmp string, st *unix.Stat_t) {
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	unix.Unlinkat(workFD, tmp, flags)
}
