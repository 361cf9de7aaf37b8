package cow

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// WorkdirName is strata's directory inside the workdir the user gives. The
// kernel's overlay keeps its own "work" and "index" beside it, so one
// upper/workdir pair can be mounted by either.
const WorkdirName = "strata"

// Workdir is the scratch directory copies are built in.
type Workdir struct {
	path string
	fd   int // O_PATH descriptor of path
	seq  atomic.Uint64
}

// OpenWorkdir opens (creating it if needed) strata's directory under
// parent, and removes whatever an interrupted copy-up left there.
func OpenWorkdir(parent string) (*Workdir, error) {
	p := filepath.Join(parent, WorkdirName)
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("workdir %s: %w", parent, err)
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("workdir %s: %w", p, err)
	}
	w := &Workdir{path: p, fd: fd}
	if err := dropACLs(p); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := w.clean(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return w, nil
}

// dropACLs removes the ACLs the workdir got from its parent's default
// ACL, or from anyone, as kernel overlay does with its own: what is built
// here takes its ACLs from its source (copy-up) or from the directory it
// is made for (branches.Create), never from the workdir.
func dropACLs(p string) error {
	for _, attr := range []string{"system.posix_acl_default", "system.posix_acl_access"} {
		if err := unix.Removexattr(p, attr); err != nil && !sys.IsNoAttr(err) {
			return fmt.Errorf("workdir %s: removing %s: %w", p, attr, err)
		}
	}
	return nil
}

// Close releases the descriptor.
func (w *Workdir) Close() error { return unix.Close(w.fd) }

// Path is the directory copies are built in.
func (w *Workdir) Path() string { return w.path }

// clean removes every leftover. Nothing in the workdir is ever visible or
// referenced, so anything found at mount time is an interrupted copy.
func (w *Workdir) clean() error {
	entries, err := os.ReadDir(w.path)
	if err != nil {
		return fmt.Errorf("workdir %s: %w", w.path, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(w.path, e.Name())); err != nil {
			return fmt.Errorf("workdir %s: removing leftover: %w", w.path, err)
		}
	}
	return nil
}

// FD is an O_PATH descriptor of the workdir, for building objects in it.
func (w *Workdir) FD() int { return w.fd }

// TempName returns a name not used before in this workdir by this process.
func (w *Workdir) TempName() string {
	return "tmp." + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(w.seq.Add(1), 10)
}
