package sys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestRemoveAll(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "tree/a/b/c"), 0o755))
	must(os.WriteFile(filepath.Join(root, "tree/a/b/c/f"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(root, "tree/top"), []byte("x"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "tree/a/link")))
	must(unix.Mkfifo(filepath.Join(root, "tree/a/fifo"), 0o600))
	must(os.Mkdir(filepath.Join(root, "tree/closed"), 0o000))
	must(os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "dirlink")))
	fd := openDir(t, root)

	for _, name := range []string{"tree", "file", "dirlink", "missing"} {
		if err := RemoveAll(fd, name); err != nil {
			t.Errorf("RemoveAll(%s): %v", name, err)
		}
		if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: still there (%v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("a symlink was followed: %v", err)
	}
}

// TestRemoveAllError: a failure is a PathError that names the entry and
// keeps the errno.
func TestRemoveAllError(t *testing.T) {
	fd := openDir(t, t.TempDir())
	long := strings.Repeat("n", 300)
	err := RemoveAll(fd, long)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != long || !errors.Is(err, unix.ENAMETOOLONG) {
		t.Fatalf("RemoveAll(300 bytes) = %v, want a PathError naming it, with ENAMETOOLONG", err)
	}
}
