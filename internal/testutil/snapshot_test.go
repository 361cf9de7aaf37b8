package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lineOf is the line of rel in a snapshot.
func lineOf(t *testing.T, snap, rel string) string {
	t.Helper()
	for _, l := range strings.Split(snap, "\n") {
		if strings.HasPrefix(l, rel+" mode=") {
			return l
		}
	}
	t.Fatalf("no line for %s in\n%s", rel, snap)
	return ""
}

func TestSnapshotFields(t *testing.T) {
	root := t.TempDir()
	WriteFile(t, filepath.Join(root, "d/a"), "x")
	Must(t, os.Link(filepath.Join(root, "d/a"), filepath.Join(root, "d/b")))
	Must(t, os.Symlink("a", filepath.Join(root, "d/l")))
	Setxattr(t, filepath.Join(root, "d"), "user.k", "v")
	old := time.Unix(1700000000, 5)
	for _, p := range []string{root, filepath.Join(root, "d"), filepath.Join(root, "d/a")} {
		Must(t, os.Chtimes(p, old, old))
	}
	const mtime = " mtime=1700000000.000000005"

	snap := Snapshot(t, root, WithContent|WithMtime|WithLinkGroups|WithXattrNames)
	var rels []string
	for _, l := range strings.Split(snap, "\n") {
		rels = append(rels, strings.Fields(l)[0])
	}
	if got := strings.Join(rels, " "); got != ". d d/a d/b d/l" {
		t.Errorf("walk order %q", got)
	}
	for rel, want := range map[string][]string{
		"d":   {mtime, " xattrs=[user.k]"},
		"d/a": {" sha256=2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", mtime, " linkgroup=d/a", " xattrs=[]"},
		"d/b": {" linkgroup=d/a"},
		"d/l": {" -> a"},
	} {
		for _, w := range want {
			if l := lineOf(t, snap, rel); !strings.Contains(l, w) {
				t.Errorf("%s: no %q in %q", rel, w, l)
			}
		}
	}
	if l := lineOf(t, snap, "."); strings.Contains(l, "mtime") {
		t.Errorf("the root's mtime without WithRootMtime: %q", l)
	}
	if l := lineOf(t, snap, "d/a"); strings.Contains(l, "ctime") || strings.Contains(l, "ino=") || strings.Contains(l, "size=") {
		t.Errorf("fields not asked for: %q", l)
	}
	if l := lineOf(t, Snapshot(t, root, WithMtime|WithRootMtime), "."); !strings.Contains(l, mtime) {
		t.Errorf("WithRootMtime: %q", l)
	}
}
