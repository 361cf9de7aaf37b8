package branches

import (
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// withParent runs fn with an O_PATH descriptor of the directory holding l
// and l's name in it ("" and the branch root for the root itself).
func withParent(l Layer, fn func(dirFD int, name string) error) error {
	if l.Path == "." {
		return fn(l.Branch.fd, "")
	}
	dir, name := path.Split(l.Path)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	dfd, err := l.Branch.openDir(dir)
	if err != nil {
		return err
	}
	defer l.Branch.closeDir(dfd)
	return fn(dfd, name)
}

// Getxattr reads attr from the serving copy of e. The union's own
// attributes (overlay.*, strata.*) read as absent (ENODATA).
func (s *Stack) Getxattr(e *Entry, attr string) ([]byte, error) {
	if whiteout.IsUnionXattr(attr) {
		return nil, unix.ENODATA
	}
	var v []byte
	err := withParent(e.Top(), func(dfd int, name string) (err error) {
		v, err = sys.Getxattr(dfd, name, attr)
		return err
	})
	return v, err
}

// Listxattr lists the attributes of the serving copy of e, without the
// union's own.
func (s *Stack) Listxattr(e *Entry) ([]string, error) {
	var names []string
	err := withParent(e.Top(), func(dfd int, name string) (err error) {
		names, err = sys.Listxattr(dfd, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !whiteout.IsUnionXattr(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Statfs reports the filesystem of the top branch (where new data goes),
// with the name length reduced by the ".wh." prefix, as fuse-overlayfs
// does, so that every name the union accepts can be whited out in aufs
// form.
func (s *Stack) Statfs(st *unix.Statfs_t) error {
	if err := unix.Fstatfs(s.branches[0].fd, st); err != nil {
		return err
	}
	st.Namelen -= int64(len(whiteout.AufsPrefix))
	return nil
}
