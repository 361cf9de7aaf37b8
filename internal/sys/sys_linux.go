package sys

import (
	"encoding/binary"
	"errors"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// beneath is how every path inside a branch is resolved: it may not leave the
// branch (RESOLVE_BENEATH) and may not pass through a symlink, because the
// union resolves each component itself and a symlink inside a branch is an
// object of the union, never a way into another directory.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// OpenBeneath opens rel (slash-separated, relative, "." for the root itself)
// under the directory rootFD with the given open flags. O_CLOEXEC is always
// added. A symlink in any component, the last one included, fails with ELOOP
// unless flags has O_PATH|O_NOFOLLOW semantics via the caller's own checks.
func OpenBeneath(rootFD int, rel string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: beneath,
	}
	for {
		fd, err := unix.Openat2(rootFD, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			// EAGAIN: a concurrent rename raced the lookup; the kernel asks
			// us to retry.
			continue
		}
		return fd, err
	}
}

// OpenDirBeneath opens the directory rel under rootFD as an O_PATH
// descriptor, suitable as the dirfd of *at calls and for ProcPath.
func OpenDirBeneath(rootFD int, rel string) (int, error) {
	return OpenBeneath(rootFD, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// Lstatat stats name in the directory dirFD without following a final symlink.
func Lstatat(dirFD int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirFD, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// Fstat stats the object behind fd (O_PATH descriptors included).
func Fstat(fd int, st *unix.Stat_t) error {
	return unix.Fstatat(fd, "", st, unix.AT_EMPTY_PATH)
}

// ProcPath names the object behind fd, or the entry name inside the
// directory fd when name is not empty, as a /proc/self/fd path. The xattr
// calls need a path; going through the descriptor keeps them beneath the
// branch.
func ProcPath(fd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if name != "" {
		p += "/" + name
	}
	return p
}

// The xattr calls below act on name inside dirFD without following a final
// symlink (the l* calls), or, when name is empty, on dirFD itself. The
// latter must follow: a bare /proc/self/fd/N is a magic link, and the l*
// calls would act on the link (EOPNOTSUPP), not on the directory.
func xattrCalls(name string) (get func(string, string, []byte) (int, error), list func(string, []byte) (int, error), set func(string, string, []byte, int) error) {
	if name == "" {
		return unix.Getxattr, unix.Listxattr, unix.Setxattr
	}
	return unix.Lgetxattr, unix.Llistxattr, unix.Lsetxattr
}

// Getxattr returns the value of attr on name inside dirFD (or on dirFD itself
// when name is empty) without following a final symlink. A missing attribute
// returns ENODATA.
func Getxattr(dirFD int, name, attr string) ([]byte, error) {
	if name == "" {
		// fgetxattr is one syscall; it refuses O_PATH descriptors (EBADF),
		// which then go through /proc.
		v, err := sized(func(buf []byte) (int, error) { return unix.Fgetxattr(dirFD, attr, buf) })
		if err != unix.EBADF {
			return v, err
		}
	}
	path := ProcPath(dirFD, name)
	get, _, _ := xattrCalls(name)
	return sized(func(buf []byte) (int, error) { return get(path, attr, buf) })
}

// Listxattr returns the attribute names of name inside dirFD (or of dirFD
// itself when name is empty) without following a final symlink.
func Listxattr(dirFD int, name string) ([]string, error) {
	if name == "" {
		b, err := sized(func(buf []byte) (int, error) { return unix.Flistxattr(dirFD, buf) })
		if err != unix.EBADF {
			return splitNul(b), err
		}
	}
	path := ProcPath(dirFD, name)
	_, list, _ := xattrCalls(name)
	b, err := sized(func(buf []byte) (int, error) { return list(path, buf) })
	if err != nil {
		return nil, err
	}
	return splitNul(b), nil
}

// sized runs an xattr-style call that fills buf, growing buf when the call
// answers ERANGE (asking for the size with an empty buffer) and retrying on
// EINTR.
func sized(call func(buf []byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := call(buf)
		switch err {
		case nil:
			return buf[:n], nil
		case unix.EINTR:
			continue
		case unix.ERANGE:
			size, err := call(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, size+1)
			continue
		}
		return nil, err
	}
}

// Readlinkat returns the target of the symlink name in dirFD.
func Readlinkat(dirFD int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirFD, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Setxattr sets attr on name inside dirFD (or on dirFD itself when name is
// empty) without following a final symlink.
func Setxattr(dirFD int, name, attr string, value []byte, flags int) error {
	_, _, set := xattrCalls(name)
	return set(ProcPath(dirFD, name), attr, value, flags)
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

// IsNoAttr reports whether err means "this attribute is not there" or "this
// filesystem has no attributes of that kind": both read as absent.
func IsNoAttr(err error) bool {
	return errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP)
}

// DirEntry is one raw entry of a directory in one branch.
type DirEntry struct {
	Name string
	Ino  uint64
	Type uint8 // DT_* constant; DT_UNKNOWN when the filesystem does not say
}

// ReadDir lists the directory rel beneath rootFD, "." and ".." excluded, in
// the order the filesystem returns them.
func ReadDir(rootFD int, rel string) ([]DirEntry, error) {
	fd, err := OpenBeneath(rootFD, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []DirEntry
	buf := make([]byte, 32*1024)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents decodes linux_dirent64 records.
func parseDirents(b []byte, out []DirEntry) []DirEntry {
	for len(b) >= 19 {
		ino := binary.NativeEndian.Uint64(b[0:8])
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		typ := b[18]
		nameBytes := b[19:reclen]
		for i, c := range nameBytes {
			if c == 0 {
				nameBytes = nameBytes[:i]
				break
			}
		}
		name := string(nameBytes)
		b = b[reclen:]
		if name == "." || name == ".." {
			continue
		}
		out = append(out, DirEntry{Name: name, Ino: ino, Type: typ})
	}
	return out
}

// IsNotDir reports errors that mean "a component is not a directory or is a
// symlink we refuse to follow".
func IsNotDir(err error) bool {
	return errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP)
}

// Removexattr removes attr from name inside dirFD (or from dirFD itself
// when name is empty) without following a final symlink.
func Removexattr(dirFD int, name, attr string) error {
	if name == "" {
		return unix.Removexattr(ProcPath(dirFD, ""), attr)
	}
	return unix.Lremovexattr(ProcPath(dirFD, name), attr)
}
