package archive

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// xattr is one extended attribute.
type xattr struct {
	Name  string
	Value []byte
}

// readXattrs returns the xattrs of name in dirFD (of dirFD itself when name
// is empty), sorted by name, without the union's own (whiteout.IsUnionXattr):
// those are markers, translated or dropped, never data.
func readXattrs(dirFD int, name string) ([]xattr, error) {
	names, err := sys.Listxattr(dirFD, name)
	if sys.IsNoAttr(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	var out []xattr
	for _, attr := range names {
		if whiteout.IsUnionXattr(attr) {
			continue
		}
		v, err := sys.Getxattr(dirFD, name, attr)
		if sys.IsNoAttr(err) {
			continue // removed under us
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", attr, err)
		}
		out = append(out, xattr{attr, v})
	}
	slices.SortFunc(out, func(a, b xattr) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// lstatAt stats name in dirFD; ok is false when it does not exist.
func lstatAt(dirFD int, name string) (st unix.Stat_t, ok bool, err error) {
	err = sys.Lstatat(dirFD, name, &st)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	return st, err == nil, err
}

// setTimesFD sets the times of the object behind fd (any descriptor,
// O_PATH included), going through /proc as package sys does for xattrs.
func setTimesFD(fd int, atime, mtime unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, sys.ProcPath(fd, ""), []unix.Timespec{atime, mtime}, 0)
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// devIno identifies an inode, for hard links.
type devIno struct{ dev, ino uint64 }
