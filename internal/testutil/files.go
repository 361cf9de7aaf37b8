package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Must fails the test at once when err is not nil.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes content at p (mode 0644), creating the parents (0755).
func WriteFile(t testing.TB, p, content string) {
	t.Helper()
	WriteFileMode(t, p, content, 0o644)
}

// WriteFileMode is WriteFile with the mode of a new file.
func WriteFileMode(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	Must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	Must(t, os.WriteFile(p, []byte(content), mode))
}

// Mkdirs creates each path with its parents (0755) and returns them in
// order.
func Mkdirs(t testing.TB, paths ...string) []string {
	t.Helper()
	for _, p := range paths {
		Must(t, os.MkdirAll(p, 0o755))
	}
	return paths
}

// ReadDirNames lists the names in dir, sorted (never nil).
func ReadDirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	Must(t, err)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// Lstat is unix.Lstat of p, failing the test on an error.
func Lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

// OpenDir opens dir as an O_PATH directory descriptor (as the union holds
// its branches), closed at the end of the test.
func OpenDir(t testing.TB, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
