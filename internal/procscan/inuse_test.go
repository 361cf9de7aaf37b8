package procscan_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-fs/strata/internal/procscan"
)

// TestInUse: a union daemon's -o options name a directory in use, and
// directories inside it and around it; others are free.
func TestInUse(t *testing.T) {
	base := t.TempDir()
	upper, lower, other := filepath.Join(base, "upper"), filepath.Join(base, "lower"), filepath.Join(base, "other")
	for _, d := range []string{upper, lower, other, filepath.Join(lower, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in daemon: a shell that waits, with a fuse-overlayfs
	// command line (its argv is what InUse reads).
	cmd := exec.Command("/bin/sh")
	cmd.Args = []string{"fuse-overlayfs", "-c", "read x", "-o", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + filepath.Join(base, "work"), filepath.Join(base, "mnt")}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	for _, tc := range []struct {
		dir  string
		used bool
	}{{upper, true}, {lower, true}, {filepath.Join(lower, "sub"), true}, {base, true}, {other, false}} {
		got, err := procscan.InUse(tc.dir)
		if err != nil {
			t.Fatalf("InUse(%s): %v", tc.dir, err)
		}
		if (got != "") != tc.used {
			t.Errorf("InUse(%s) = %q, want in use: %v", tc.dir, got, tc.used)
		}
		if tc.used && !strings.Contains(got, "fuse-overlayfs") {
			t.Errorf("InUse(%s) = %q: does not name the daemon", tc.dir, got)
		}
	}
	if _, err := procscan.InUse(filepath.Join(base, "missing")); err == nil {
		t.Error("InUse of a missing directory: no error")
	}
}
