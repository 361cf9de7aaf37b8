package branches_test

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

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
