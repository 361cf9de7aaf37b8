package archive_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

func changeLines(cs []archive.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

func TestChangeString(t *testing.T) {
	for _, tc := range []struct {
		c    archive.Change
		want string
	}{
		{archive.Change{Path: "/a/b", Kind: archive.ChangeAdd}, "A /a/b"},
		{archive.Change{Path: "/a", Kind: archive.ChangeModify}, "C /a"},
		{archive.Change{Path: "/x", Kind: archive.ChangeDelete}, "D /x"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
	// The values are moby's archive.ChangeType.
	if archive.ChangeModify != 0 || archive.ChangeAdd != 1 || archive.ChangeDelete != 2 {
		t.Errorf("ChangeKind values differ from moby's")
	}
}

// TestChangesMapFS: a layer dir in aufs form against a parent given as an
// fstest.MapFS.
func TestChangesMapFS(t *testing.T) {
	dirMode := fs.ModeDir | 0o755
	parent := fstest.MapFS{
		"a":         {Mode: dirMode},
		"a/x":       {Data: []byte("x")},
		"a/y":       {Data: []byte("y")},
		"b":         {Mode: dirMode},
		"b/z":       {Data: []byte("z")},
		"b/deep":    {Mode: dirMode},
		"b/deep/q":  {Data: []byte("q")},
		"gone":      {Mode: dirMode},
		"gone/sub":  {Data: []byte("s")},
		"mod":       {Data: []byte("old")},
		"perm":      {Mode: dirMode},
		"file":      {Data: []byte("f")},
		"untouched": {Mode: dirMode},
	}
	d := newLayer(t)
	j := func(p string) string { return filepath.Join(d, p) }
	testutil.WriteFile(t, j("a/new"), "n")
	testutil.WriteFile(t, j("a/.wh.x"), "")
	testutil.WriteFile(t, j("b/.wh..wh..opq"), "")
	testutil.WriteFile(t, j("b/w"), "w")
	testutil.WriteFile(t, j(".wh.gone"), "")
	testutil.WriteFile(t, j(".wh.never-existed"), "")
	testutil.WriteFile(t, j("mod"), "new")
	testutil.Mkdirs(t, j("perm"))
	if err := os.Chmod(j("perm"), 0o700); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, j("newdir/f"), "f")
	testutil.WriteFile(t, j("file/now-a-dir"), "d") // was a file in the parent
	testutil.Mkdirs(t, j("untouched"))
	got, err := archive.Changes(d, parent)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"C /a", "A /a/new", "D /a/x",
		"C /b", "D /b/deep", "A /b/w", "D /b/z",
		"C /file", "A /file/now-a-dir",
		"D /gone",
		"C /mod",
		"A /newdir", "A /newdir/f",
		"C /perm",
	}
	if g := changeLines(got); !slices.Equal(g, want) {
		t.Errorf("Changes:\n got %q\nwant %q", g, want)
	}
	// A base layer: everything is added, whiteouts delete nothing.
	got, err = archive.Changes(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if c.Kind != archive.ChangeAdd {
			t.Errorf("base layer: %v, want only adds", c)
		}
	}
}

// copyTree makes a full copy of a tree with everything kept, through the
// package itself (DiffTrees against an empty dir, applied flat).
func copyTree(t *testing.T, src string) string {
	t.Helper()
	empty := t.TempDir()
	var buf bytes.Buffer
	if err := archive.DiffTrees(&buf, empty, src, archive.DiffOptions{}); err != nil {
		t.Fatalf("DiffTrees: %v", err)
	}
	dst := newLayer(t)
	apply(t, dst, buf.Bytes(), archive.ApplyOptions{Flatten: true, AllowDevices: true})
	return dst
}

// flatten applies a layer dir's Diff onto a full copy of its parent tree.
func flatten(t *testing.T, parentTree, layer string, parentView fs.FS) string {
	t.Helper()
	merged := copyTree(t, parentTree)
	apply(t, merged, diff(t, layer, archive.DiffOptions{Parent: parentView}), archive.ApplyOptions{Flatten: true, AllowDevices: true})
	return merged
}

func openStack(t *testing.T, lowers ...string) *branches.Stack {
	t.Helper()
	opts, err := branches.ParseOptions([]string{"lowerdir=" + strings.Join(lowers, ":")})
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

// TestChangesAgree: for a chain of layers in overlay form, Changes of the
// top layer against the parents' union view (branches.Stack.FS), and
// ChangesTrees of the flattened trees, list the same changes; Diff's tar
// (with a renamed directory in it) flattened reproduces the union.
func TestChangesAgree(t *testing.T) {
	testutil.NeedRoot(t, "overlay whiteouts and trusted.overlay xattrs")
	// Base layer and a second layer, both as layer dirs.
	base := newLayer(t)
	for p, body := range map[string]string{
		"etc/conf": "c", "etc/old": "o", "usr/lib/a": "a", "usr/lib/sub/b": "b",
		"var/log/l": "l", "srv/x": "x", "tmp/t": "t",
	} {
		testutil.WriteFile(t, filepath.Join(base, p), body)
	}
	second := newLayer(t)
	testutil.WriteFile(t, filepath.Join(second, "etc/conf"), "c2")
	testutil.MknodWhiteout(t, filepath.Join(second, "tmp"), 0)
	// The top layer: kernel overlay's own form of "mv usr/lib usr/lib64;
	// rm usr/lib64/a; echo > usr/lib64/new; rm -r var; mkdir var; touch
	// var/fresh; rm etc/old; echo > etc/add; mkdir tmp".
	top := newLayer(t)
	j := func(p string) string { return filepath.Join(top, p) }
	testutil.Mkdirs(t, j("usr"))
	testutil.MknodWhiteout(t, j("usr/lib"), 0)
	testutil.Mkdirs(t, j("usr/lib64"))
	testutil.Setxattr(t, j("usr/lib64"), "trusted.overlay.redirect", "/usr/lib")
	testutil.MknodWhiteout(t, j("usr/lib64/a"), 0)
	testutil.WriteFile(t, j("usr/lib64/new"), "n")
	testutil.WriteFile(t, j("var/fresh"), "f")
	testutil.Setxattr(t, j("var"), "trusted.overlay.opaque", "y")
	testutil.Mkdirs(t, j("etc"))
	testutil.MknodWhiteout(t, j("etc/old"), 0)
	testutil.WriteFile(t, j("etc/add"), "+")
	testutil.Mkdirs(t, j("tmp"))

	parentView := openStack(t, second, base).FS()
	parentTree := flatten(t, copyTree(t, t.TempDir()), base, nil)
	parentTree = flatten(t, parentTree, second, nil)

	got, err := archive.Changes(top, parentView)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"C /etc", "A /etc/add", "D /etc/old",
		"A /tmp",
		"C /usr", "D /usr/lib", "A /usr/lib64", "A /usr/lib64/new", "A /usr/lib64/sub", "A /usr/lib64/sub/b",
		"C /var", "A /var/fresh", "D /var/log",
	}
	if g := changeLines(got); !slices.Equal(g, want) {
		t.Errorf("Changes:\n got %q\nwant %q", g, want)
	}
	merged := flatten(t, parentTree, top, parentView)
	trees, err := archive.ChangesTrees(parentTree, merged)
	if err != nil {
		t.Fatal(err)
	}
	// The trees see /var as deleted-and-recreated content only, and a
	// directory's own mode or owner did not change anywhere.
	if g := changeLines(trees); !slices.Equal(g, want) {
		t.Errorf("ChangesTrees of the flattened trees:\n got %q\nwant %q", g, want)
	}
	// The renamed directory carries its lower content.
	if b, err := os.ReadFile(filepath.Join(merged, "usr/lib64/sub/b")); err != nil || string(b) != "b" {
		t.Errorf("usr/lib64/sub/b after flattening: %q, %v", b, err)
	}
	for _, p := range []string{"usr/lib", "usr/lib64/a", "var/log", "etc/old", "tmp/t"} {
		if exists(filepath.Join(merged, p)) {
			t.Errorf("%s survived flattening", p)
		}
	}
	// Without the parent view, a renamed directory cannot be written.
	if err := archive.Diff(&bytes.Buffer{}, top, archive.DiffOptions{}); err == nil || !strings.Contains(err.Error(), "usr/lib64") || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("Diff without Parent of a renamed dir: %v", err)
	}
}

// TestDiffRedirectTar: the exact OCI form of a renamed directory.
func TestDiffRedirectTar(t *testing.T) {
	testutil.NeedRoot(t, "overlay whiteouts and trusted.overlay xattrs")
	lower := newLayer(t)
	testutil.WriteFile(t, filepath.Join(lower, "old/a"), "a")
	testutil.WriteFile(t, filepath.Join(lower, "old/sub/b"), "b")
	top := newLayer(t)
	testutil.MknodWhiteout(t, filepath.Join(top, "old"), 0)
	testutil.Mkdirs(t, filepath.Join(top, "new"))
	testutil.Setxattr(t, filepath.Join(top, "new"), "trusted.overlay.redirect", "old")
	testutil.WriteFile(t, filepath.Join(top, "new/c"), "c")
	testutil.MknodWhiteout(t, filepath.Join(top, "new/a"), 0)
	got := tarNames(t, diff(t, top, archive.DiffOptions{Parent: os.DirFS(lower)}))
	want := []string{".wh.old", "new/", "new/.wh..wh..opq", "new/c", "new/sub/", "new/sub/b"}
	if !slices.Equal(got, want) {
		t.Errorf("tar of a renamed dir:\n got %q\nwant %q", got, want)
	}
}

// TestChangesTreesDiffTrees: the vfs backend's pair, on two full trees.
func TestChangesTreesDiffTrees(t *testing.T) {
	parent := newLayer(t)
	j := func(root, p string) string { return filepath.Join(root, p) }
	for p, body := range map[string]string{
		"same": "s", "content": "old", "mode": "m", "gone": "g", "gonedir/x": "x",
		"file2dir": "f", "dir2file/y": "y", "deep/a/b/c": "c", "xattr": "x", "link.src": "l",
	} {
		testutil.WriteFile(t, j(parent, p), body)
	}
	if err := os.Symlink("same", j(parent, "sym")); err != nil {
		t.Fatal(err)
	}
	child := copyTree(t, parent)
	testutil.WriteFile(t, j(child, "content"), "new content")
	os.Chmod(j(child, "mode"), 0o600)
	os.Remove(j(child, "gone"))
	os.RemoveAll(j(child, "gonedir"))
	os.Remove(j(child, "file2dir"))
	testutil.WriteFile(t, j(child, "file2dir/in"), "i")
	os.RemoveAll(j(child, "dir2file"))
	testutil.WriteFile(t, j(child, "dir2file"), "now a file")
	testutil.WriteFile(t, j(child, "deep/a/b/new"), "n")
	testutil.WriteFile(t, j(child, "added/dir/f"), "f")
	testutil.Setxattr(t, j(child, "xattr"), "user.k", "v")
	os.Remove(j(child, "sym"))
	if err := os.Symlink("mode", j(child, "sym")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(j(child, "link.src"), j(child, "link.new")); err != nil {
		t.Fatal(err)
	}
	got, err := archive.ChangesTrees(parent, child)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"A /added", "A /added/dir", "A /added/dir/f",
		"C /content",
		"C /deep", "C /deep/a", "C /deep/a/b", "A /deep/a/b/new",
		"C /dir2file",
		"C /file2dir", "A /file2dir/in",
		"D /gone", "D /gonedir",
		"A /link.new",
		"C /mode",
		"C /sym",
		"C /xattr",
	}
	if g := changeLines(got); !slices.Equal(g, want) {
		t.Errorf("ChangesTrees:\n got %q\nwant %q", g, want)
	}
	if n, err := archive.ChangesSize(child, got); err != nil || n != int64(len("f"+"new content"+"n"+"now a file"+"i"+"l"+"m"+"x")) {
		t.Errorf("ChangesSize = %d, %v", n, err)
	}
	var buf bytes.Buffer
	if err := archive.DiffTrees(&buf, parent, child, archive.DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	if !slices.Contains(names, ".wh.gone") || !slices.Contains(names, ".wh.gonedir") || slices.Contains(names, "same") {
		t.Errorf("DiffTrees entries: %q", names)
	}
	// The tar applied to a copy of the parent gives the child.
	result := copyTree(t, parent)
	apply(t, result, buf.Bytes(), archive.ApplyOptions{Flatten: true})
	if left, err := archive.ChangesTrees(child, result); err != nil || len(left) != 0 {
		t.Errorf("child vs parent+DiffTrees: %v, %v", changeLines(left), err)
	}
	// A full tree holding a .wh. name cannot become a layer.
	testutil.WriteFile(t, j(child, ".wh.trap"), "")
	if err := archive.DiffTrees(&bytes.Buffer{}, parent, child, archive.DiffOptions{}); err == nil || !strings.Contains(err.Error(), ".wh.trap") {
		t.Errorf("DiffTrees with a .wh. name: %v", err)
	}
}

// TestApplyDiffTreesFlattenMatchesOverlay: the same tar applied in overlay
// form and flat gives the same merged view (the union of the overlay form
// read through branches).
func TestApplyFlatMatchesUnion(t *testing.T) {
	testutil.NeedRoot(t, "overlay whiteouts")
	base := newLayer(t)
	for p, body := range map[string]string{"a/x": "x", "a/y": "y", "b/z": "z", "c": "c"} {
		testutil.WriteFile(t, filepath.Join(base, p), body)
	}
	tb := mkTar(t, dir("a/"), file("a/.wh.x", ""), file("a/new", "n"), file(".wh.c", ""),
		dir("b/"), file("b/.wh..wh..opq", ""), file("b/w", "w"))
	upper := newLayer(t)
	apply(t, upper, tb, archive.ApplyOptions{Format: whiteout.Overlay})
	flat := copyTree(t, base)
	apply(t, flat, tb, archive.ApplyOptions{Flatten: true})
	union := openStack(t, upper, base).FS()
	var unionFiles, flatFiles []string
	fs.WalkDir(union, ".", func(p string, _ fs.DirEntry, err error) error {
		unionFiles = append(unionFiles, p)
		return err
	})
	fs.WalkDir(os.DirFS(flat), ".", func(p string, _ fs.DirEntry, err error) error {
		flatFiles = append(flatFiles, p)
		return err
	})
	if !slices.Equal(unionFiles, flatFiles) {
		t.Errorf("overlay-form union %q\n        flat tree %q", unionFiles, flatFiles)
	}
}
