package branches

import (
	"errors"
	"fmt"

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
