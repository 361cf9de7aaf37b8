package unionfs

import (
	"errors"
	"io/fs"
	"syscall"
)

// toErrno maps an error of the union packages to the errno FUSE returns.
// An errno anywhere in the chain wins; otherwise the io/fs sentinels map to
// their usual errnos, and anything else is EIO.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fs.ErrInvalid):
		return syscall.EINVAL
	}
	return syscall.EIO
}
