package whiteout

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// ErrWhiteoutDenied means the overlay whiteout (mknod of a char device 0/0)
// was refused, as it is for unprivileged users on older kernels. Callers
// fall back to the aufs form.
var ErrWhiteoutDenied = errors.New("overlay whiteout not permitted")

// Writer writes markers in one dialect.
type Writer struct {
	Format Format
	// XattrNamespace is "trusted." (the kernel's default) or "user." (for
	// unprivileged mounts, kernel -o userxattr). Empty means "trusted.".
	XattrNamespace string
}

func (w Writer) namespace() string {
	if w.XattrNamespace == "" {
		return "trusted."
	}
	return w.XattrNamespace
}

// Whiteout creates a whiteout for name in the directory dirFD. The name must
// not exist in dirFD in the overlay form (the whiteout takes its place); in
// the aufs form an existing object of that name is left alone.
func (w Writer) Whiteout(dirFD int, name string) error {
	switch w.Format {
	case Overlay:
		err := unix.Mknodat(dirFD, name, unix.S_IFCHR|0, 0)
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("whiteout %s: %w: %v", name, ErrWhiteoutDenied, err)
		}
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", name, err)
		}
		return nil
	case Aufs:
		fd, err := unix.Openat(dirFD, AufsName(name), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o444)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", AufsName(name), err)
		}
		return unix.Close(fd)
	}
	return fmt.Errorf("whiteout %s: unknown format %v", name, w.Format)
}

// MakeOpaque marks the directory dirFD opaque: its lower copies are hidden.
func (w Writer) MakeOpaque(dirFD int) error {
	switch w.Format {
	case Overlay:
		if err := sys.Setxattr(dirFD, "", w.namespace()+xattrOpaque, []byte("y"), 0); err != nil {
			return fmt.Errorf("opaque marker %s%s: %w", w.namespace(), xattrOpaque, err)
		}
		return nil
	case Aufs:
		// O_EXCL: an existing marker (mode 0444) cannot be reopened for
		// writing without CAP_DAC_OVERRIDE; it already does the job.
		fd, err := unix.Openat(dirFD, AufsOpaque, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o444)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("opaque marker %s: %w", AufsOpaque, err)
		}
		return unix.Close(fd)
	}
	return fmt.Errorf("opaque marker: unknown format %v", w.Format)
}

// SetRedirect records on the directory dirFD that its lower copies are at
// target (a path relative to the branch roots), in the kernel's form: an
// absolute overlay.redirect. It is written in every format: aufs has no
// equivalent, and strata reads it in both.
func (w Writer) SetRedirect(dirFD int, target string) error {
	if err := sys.Setxattr(dirFD, "", w.namespace()+xattrRedirect, []byte("/"+target), 0); err != nil {
		return fmt.Errorf("redirect %s%s: %w", w.namespace(), xattrRedirect, err)
	}
	return nil
}
