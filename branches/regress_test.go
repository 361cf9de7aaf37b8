package branches_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// Regression tests for bugs found by review, each named after what broke.

// writableStack opens lowerdir=lowers (top first),upperdir=u,workdir=w
// under base.
func writableStack(t *testing.T, base string, lowers ...string) *branches.Stack {
	t.Helper()
	var ls []string
	for _, l := range lowers {
		ls = append(ls, filepath.Join(base, l))
	}
	mk(t, base, "u/", "w/")
	opts, err := branches.ParseOptions([]string{"lowerdir=" + strings.Join(ls, ":") +
		",upperdir=" + filepath.Join(base, "u") + ",workdir=" + filepath.Join(base, "w")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLinkSetUnderRenamedDirectory: a lower hard-link pair inside a
// directory renamed with a redirect could no longer be found by its branch
// paths, so a write through one name split the pair while both names kept
// one inode number (and the FUSE node shared by them wrote to the wrong
// one). Renaming the directory now copies its link sets up first.
func TestLinkSetUnderRenamedDirectory(t *testing.T) {
	testutil.NeedRoot(t, "mknod of whiteouts and trusted.* xattrs")
	base := t.TempDir()
	mk(t, base, "l/a/x=orig", "l/a/y => l/a/x")
	s := writableStack(t, base, "l")
	root, _ := s.Root()
	if err := s.Rename(root, "a", root, "b", 0); err != nil {
		t.Fatal(err)
	}
	x, err := s.Resolve("b/x")
	if err != nil {
		t.Fatal(err)
	}
	_, fd, err := s.OpenWrite(x, unix.O_WRONLY|unix.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte("new"))
	unix.Close(fd)
	for _, p := range []string{"b/x", "b/y"} {
		e, err := s.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		if e.Ino != x.Ino {
			t.Errorf("%s: ino %d, want the pair's %d", p, e.Ino, x.Ino)
		}
		if n, _ := s.Nlink(e); n != 2 {
			t.Errorf("%s: nlink %d, want 2", p, n)
		}
		got, err := os.ReadFile(filepath.Join(base, "u", p))
		if err != nil || string(got) != "new" {
			t.Errorf("%s in the upper = %q, %v; want the pair's new content", p, got, err)
		}
	}
}

// TestRedirectThroughLowerRedirect: the way to a redirect target may pass
// a directory that a lower branch renamed itself (its own redirect); the
// rest of the path goes on from there, as in kernel overlay. Entries that
// only that path reaches were lost after a rename.
func TestRedirectThroughLowerRedirect(t *testing.T) {
	testutil.NeedRoot(t, "mknod of whiteouts and trusted.* xattrs")
	base := t.TempDir()
	mk(t, base, "l2/a/c/f=F", "l1/b/c/g=G", "c:l1/a")
	if err := unix.Setxattr(filepath.Join(base, "l1", "b"), "trusted.overlay.redirect", []byte("/a"), 0); err != nil {
		t.Fatal(err)
	}
	s := writableStack(t, base, "l1", "l2")
	if got := names(t, s, resolve(t, s, "b/c")); got != "f g" {
		t.Fatalf("before: b/c holds %s, want f g", got)
	}
	b := resolve(t, s, "b")
	root, _ := s.Root()
	if err := s.Rename(b, "c", root, "d", 0); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, resolve(t, s, "d")); got != "f g" {
		t.Errorf("after the rename d holds %s, want f g", got)
	}
}

// TestOpenCopiesUpOnlyForWriting: the copy-up trigger of open(2) lives in
// the library (Stack.Open), not in the FUSE layer.
func TestOpenCopiesUpOnlyForWriting(t *testing.T) {
	base := t.TempDir()
	mk(t, base, "l/f=lower")
	s := writableStack(t, base, "l")
	for _, tc := range []struct {
		flags  int
		copies bool
	}{
		{unix.O_RDONLY, false},
		{unix.O_RDONLY | unix.O_NONBLOCK, false},
		{unix.O_RDONLY | unix.O_TRUNC, true},
		{unix.O_WRONLY, true},
		{unix.O_RDWR | unix.O_APPEND, true},
	} {
		os.RemoveAll(filepath.Join(base, "u", "f"))
		e, err := s.Resolve("f")
		if err != nil {
			t.Fatal(err)
		}
		_, fd, copied, err := s.Open(e, tc.flags)
		if err != nil {
			t.Fatalf("Open(%#x): %v", tc.flags, err)
		}
		unix.Close(fd)
		_, statErr := os.Lstat(filepath.Join(base, "u", "f"))
		if copied != tc.copies || (statErr == nil) != tc.copies {
			t.Errorf("Open(%#x): copied=%v, upper copy exists=%v; want %v", tc.flags, copied, statErr == nil, tc.copies)
		}
	}
}
