package branches

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotWritable is wrapped by the error for an rw branch the mount could
// not write to (a read-only filesystem, or no write permission).
var ErrNotWritable = errors.New("is not writable")

// checkBranchesWritable refuses rw branches this process cannot write, so that a
// mount over them fails at once, naming the branch, instead of failing
// every later write.
func (s *Stack) checkBranchesWritable() error {
	if s.opts.ReadOnly {
		return nil
	}
	for _, b := range s.branches {
		if b.Perm != RW {
			continue
		}
		if err := unix.Faccessat2(b.fd, "", unix.W_OK, unix.AT_EACCESS|unix.AT_EMPTY_PATH); err != nil {
			return &BranchError{Role: string(b.Role), Path: b.Given, Err: ErrNotWritable, Detail: err.Error()}
		}
	}
	return nil
}

// bookkeepingNamespace is the xattr namespace of the union's own
// attributes (opaque markers, redirects, inode numbers). trusted. needs
// CAP_SYS_ADMIN in the initial user namespace: root inside a user
// namespace (rootless podman runs its mount program there) is refused
// with EPERM, so it uses user., as an unprivileged user does and as
// kernel overlay does with userxattr.
func bookkeepingNamespace() string {
	if os.Geteuid() == 0 && inInitialUserNamespace() {
		return "trusted."
	}
	return "user."
}

// inInitialUserNamespace reports whether this process's user namespace is
// the initial one, whose uid_map maps every id to itself.
func inInitialUserNamespace() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true // no /proc: assume the plain case
	}
	return bytes.Equal(bytes.Join(bytes.Fields(data), []byte(" ")), []byte("0 0 4294967295"))
}

// checkRedirectAllowed refuses, with redirect_dir=off or follow, to move
// a directory that has lower copies: keeping them would take an
// overlay.redirect. EXDEV is what kernel overlay and fuse-overlayfs answer
// there; mv then copies the tree.
func (s *Stack) checkRedirectAllowed(e *Entry) error {
	if !s.opts.Compat.NoRedirects || !e.IsDir() {
		return nil
	}
	for _, l := range e.Layers {
		if l.Branch != s.w.upper.Branch {
			return fmt.Errorf("%s: has lower copies and the mount has redirect_dir=off: %w", e.Path, unix.EXDEV)
		}
	}
	return nil
}
