package branches_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// TestSeveralRWBranches: with the aufs syntax a stack may have several rw
// branches. New names go to the topmost one; a change to an existing
// object lands in the nearest rw branch at or above the branch serving it
// (in place when that branch is rw), and so does the whiteout of a
// removal. Each rw branch builds its changes in its own .wh..wh.strata.
func TestSeveralRWBranches(t *testing.T) {
	base := t.TempDir()
	a, b, c, d := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "c"), filepath.Join(base, "d")
	mk(t, base, "a/", "b/b.txt=B", "c/c.txt=C", "d/d.txt=D", "d/dir/x=X")
	opts, err := branches.ParseOptions([]string{"br=" + a + "=rw:" + b + "=ro:" + c + "=rw:" + d + "=ro"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	appendTo := func(p string) {
		t.Helper()
		e, err := s.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		_, fd, err := s.OpenWrite(e, unix.O_WRONLY|unix.O_APPEND)
		if err != nil {
			t.Fatalf("OpenWrite %s: %v", p, err)
		}
		unix.Write(fd, []byte("+"))
		unix.Close(fd)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }

	appendTo("d.txt") // served by d (ro): copied up to c, the nearest rw above
	if !exists(filepath.Join(c, "d.txt")) || exists(filepath.Join(a, "d.txt")) {
		t.Errorf("d.txt copied to a=%v c=%v; want only c", exists(filepath.Join(a, "d.txt")), exists(filepath.Join(c, "d.txt")))
	}
	appendTo("c.txt") // served by c (rw): changed in place
	if got, _ := os.ReadFile(filepath.Join(c, "c.txt")); string(got) != "C+" || exists(filepath.Join(a, "c.txt")) {
		t.Errorf("c.txt: c holds %q, a has a copy: %v; want C+ in place", got, exists(filepath.Join(a, "c.txt")))
	}
	appendTo("b.txt") // served by b (ro): copied up to a
	if !exists(filepath.Join(a, "b.txt")) {
		t.Errorf("b.txt not copied to a")
	}
	appendTo("dir/x") // parents follow the object into c
	if !exists(filepath.Join(c, "dir", "x")) || exists(filepath.Join(a, "dir")) {
		t.Errorf("dir/x: want it (and dir) copied into c only")
	}

	root, _ := s.Root()
	if _, _, err := s.Create(root, "new.txt", branches.NewObject{Mode: unix.S_IFREG | 0o644}); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(a, "new.txt")) {
		t.Errorf("a new name must go to the topmost rw branch")
	}

	// Removing d.txt (now in c, still in d): the whiteout goes to c.
	if err := s.Remove(root, "d.txt", false); err != nil {
		t.Fatal(err)
	}
	overlayWhiteout := testutil.IsCharWhiteout(filepath.Join(c, "d.txt"))
	aufsWhiteout := exists(filepath.Join(c, ".wh.d.txt")) && !exists(filepath.Join(c, "d.txt"))
	if !overlayWhiteout && !aufsWhiteout {
		t.Errorf("d.txt: want its copy in c replaced by a whiteout")
	}
	if _, err := s.Resolve("d.txt"); !errors.Is(err, branches.ErrNotExist) {
		t.Errorf("d.txt still resolves: %v", err)
	}
	// Removing c.txt (only in c): gone, no whiteout anywhere.
	if err := s.Remove(root, "c.txt", false); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{a, c} {
		if exists(filepath.Join(dir, "c.txt")) || exists(filepath.Join(dir, ".wh.c.txt")) {
			t.Errorf("c.txt: %s still holds it or a whiteout", dir)
		}
	}
	// Each rw branch has its own scratch dir, empty, and never shown.
	for _, dir := range []string{a, c} {
		entries, err := os.ReadDir(filepath.Join(dir, ".wh..wh.strata", "strata"))
		if err != nil || len(entries) != 0 {
			t.Errorf("%s scratch dir: %d entries, %v; want it empty", dir, len(entries), err)
		}
	}
	names, err := s.Names(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n.Name == ".wh..wh.strata" {
			t.Errorf("the scratch dir shows in the union")
		}
	}
}

// TestNoRWBranchAbove: an object in a branch above every rw branch cannot
// be changed: EROFS, naming it.
func TestNoRWBranchAbove(t *testing.T) {
	base := t.TempDir()
	mk(t, base, "top/f=F", "rw/")
	opts, err := branches.ParseOptions([]string{"br=" + filepath.Join(base, "top") + "=ro:" + filepath.Join(base, "rw") + "=rw"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Resolve("f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CopyUp(e); !errors.Is(err, unix.EROFS) {
		t.Errorf("CopyUp of an object above every rw branch: %v, want EROFS", err)
	}
}
