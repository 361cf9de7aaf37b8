package branches_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/whiteout"
)

// TestInspectDanglingRedirect: a redirect is checked against the branches
// below its own; one that no lower branch satisfies is dangling.
func TestInspectDanglingRedirect(t *testing.T) {
	dirs := trees(t, dialects[3], []string{"ok/", "lost/"}, []string{"orig/f"})
	for _, r := range []struct{ dir, target string }{{"ok", "/orig"}, {"lost", "/nowhere"}} {
		if err := unix.Lsetxattr(filepath.Join(dirs[0], r.dir), "user.overlay.redirect", []byte(r.target), 0); err != nil {
			t.Fatal(err)
		}
	}
	s := openStack(t, dirs...)
	invs, err := s.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) != 2 {
		t.Fatalf("%d inventories for 2 branches", len(invs))
	}
	top := invs[0]
	if len(top.Redirects) != 2 {
		t.Errorf("redirects %+v, want ok and lost", top.Redirects)
	}
	if len(top.Problems) != 1 || top.Problems[0].Code != whiteout.ProblemDanglingRedirect || top.Problems[0].Path != "lost" {
		t.Errorf("problems %+v, want one dangling redirect at lost", top.Problems)
	}
	if len(invs[1].Problems) != 0 || invs[1].Branch.Name != "lower1" {
		t.Errorf("bottom branch: %+v", invs[1])
	}
}

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
		got, err := branches.InUse(tc.dir)
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
	if _, err := branches.InUse(filepath.Join(base, "missing")); err == nil {
		t.Error("InUse of a missing directory: no error")
	}
}
