package branches_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// TestRedirectDirOff: with redirect_dir=off a directory with lower copies
// does not move (EXDEV, as kernel overlay and fuse-overlayfs answer, and
// nothing is written); one that lives only in the upper still does.
func TestRedirectDirOff(t *testing.T) {
	lower, upper, work := t.TempDir(), t.TempDir(), t.TempDir()
	mk(t, lower, "d/", "d/f=x")
	mk(t, upper, "own/", "own/g=y")
	o := upperOpts(upper, work, lower)
	o.Compat.NoRedirects = true
	s, err := branches.Open(o, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	root := resolve(t, s, ".")
	before := snapshot(t, upper)
	if err := s.Rename(root, "d", root, "e", 0); !errors.Is(err, unix.EXDEV) {
		t.Fatalf("Rename of a directory with a lower copy = %v, want EXDEV", err)
	}
	if got := snapshot(t, upper); got != before {
		t.Errorf("a refused rename changed the upper:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if err := s.Rename(root, "own", root, "mine", 0); err != nil {
		t.Fatalf("Rename of an upper-only directory: %v", err)
	}
	if got := content(t, s, resolve(t, s, "mine/g")); got != "y" {
		t.Errorf("mine/g = %q after the rename, want y", got)
	}
}
