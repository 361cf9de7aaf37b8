package branches

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FS returns the read-only union as an io/fs.FS (also fs.ReadDirFS,
// fs.StatFS and fs.ReadLinkFS). Open and Stat follow symlinks whose targets
// stay inside the union; absolute targets and targets that climb above the
// root fail with fs.ErrNotExist, since they name something outside the
// union. FileInfo.Sys returns the *Entry.
func (s *Stack) FS() fs.FS { return unionFS{s} }

type unionFS struct{ s *Stack }

var (
	_ fs.ReadDirFS   = unionFS{}
	_ fs.StatFS      = unionFS{}
	_ fs.ReadLinkFS  = unionFS{}
	_ fs.ReadDirFile = (*dirFile)(nil)
)

const maxSymlinks = 40 // as the kernel's MAXSYMLINKS

// resolve walks name from the root, following symlinks in every component
// (and in the last one when follow is set).
func (u unionFS) resolve(op, name string, follow bool) (*Entry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	root, err := u.s.Root()
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	e := root
	todo := splitPath(name)
	links := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		if !e.IsDir() {
			return nil, &fs.PathError{Op: op, Path: name, Err: unix.ENOTDIR}
		}
		if comp == ".." {
			// Only reachable through a symlink target.
			if e.Path == "." {
				return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
			if e, err = u.s.Resolve(path.Dir(e.Path)); err != nil {
				return nil, &fs.PathError{Op: op, Path: name, Err: err}
			}
			continue
		}
		child, err := u.s.Lookup(e, comp)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: errNotExistOr(err)}
		}
		if child.St.Mode&unix.S_IFMT == unix.S_IFLNK && (len(todo) > 0 || follow) {
			if links++; links > maxSymlinks {
				return nil, &fs.PathError{Op: op, Path: name, Err: unix.ELOOP}
			}
			target, err := u.s.Readlink(child)
			if err != nil {
				return nil, &fs.PathError{Op: op, Path: name, Err: err}
			}
			if strings.HasPrefix(target, "/") {
				return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
			todo = append(splitPath(target), todo...)
			continue // e stays the directory holding the link
		}
		e = child
	}
	if e == root {
		// The cached root's layers are fixed; its attributes are not.
		if e, err = u.s.refresh(e); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
	}
	return e, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func errNotExistOr(err error) error {
	if errors.Is(err, ErrNotExist) {
		return fs.ErrNotExist
	}
	return err
}

func (u unionFS) Open(name string) (fs.File, error) {
	e, err := u.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	info, err := u.info(e, path.Base(name))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if e.IsDir() {
		return &dirFile{u: u, e: e, info: info, name: name}, nil
	}
	fd, err := u.s.OpenLayer(e.Top(), unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{File: os.NewFile(uintptr(fd), name), info: info}, nil
}

func (u unionFS) Stat(name string) (fs.FileInfo, error) {
	e, err := u.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return u.info(e, path.Base(name))
}

func (u unionFS) Lstat(name string) (fs.FileInfo, error) {
	e, err := u.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return u.info(e, path.Base(name))
}

func (u unionFS) ReadLink(name string) (string, error) {
	e, err := u.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if e.St.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return u.s.Readlink(e)
}

func (u unionFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := u.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	return u.readDir(e, name)
}

func (u unionFS) readDir(e *Entry, name string) ([]fs.DirEntry, error) {
	children, err := u.s.ReadDir(e)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(children))
	for _, c := range children {
		info, err := u.info(c, c.Name())
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
		}
		out = append(out, fs.FileInfoToDirEntry(info))
	}
	return out, nil
}

func (u unionFS) info(e *Entry, name string) (fs.FileInfo, error) {
	st, err := u.s.Attr(e)
	if err != nil {
		return nil, err
	}
	if name == "." || name == "/" {
		name = "."
	}
	return &fileInfo{name: name, st: st, e: e}, nil
}

// fileInfo is the union's view of an entry.
type fileInfo struct {
	name string
	st   unix.Stat_t
	e    *Entry
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.st.Size }
func (i *fileInfo) Mode() fs.FileMode  { return FileMode(i.st.Mode) }
func (i *fileInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *fileInfo) IsDir() bool        { return i.Mode().IsDir() }
func (i *fileInfo) Sys() any           { return i.e }

// FileMode converts a stat mode to an fs.FileMode.
func FileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// file is a non-directory opened read-only from its serving copy.
type file struct {
	*os.File
	info fs.FileInfo
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }

// dirFile is an opened merged directory.
type dirFile struct {
	u       unionFS
	e       *Entry
	info    fs.FileInfo
	name    string
	entries []fs.DirEntry
	listed  bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: unix.EISDIR}
}
func (d *dirFile) Close() error { return nil }

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.listed {
		entries, err := d.u.readDir(d.e, d.name)
		if err != nil {
			return nil, err
		}
		d.entries, d.listed = entries, true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}
