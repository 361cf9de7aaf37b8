package archive_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// newLayer makes an empty layer dir (with a sibling, to check nothing is
// written beside it).
func newLayer(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	d := filepath.Join(root, "layer")
	testutil.Mkdirs(t, d)
	return d
}

func apply(t *testing.T, dir string, b []byte, opts archive.ApplyOptions) int64 {
	t.Helper()
	n, err := archive.Apply(dir, bytes.NewReader(b), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if names := siblings(t, dir); len(names) != 1 {
		t.Fatalf("Apply left %v beside the layer dir", names)
	}
	return n
}

func TestApplyEveryType(t *testing.T) {
	testutil.NeedRoot(t, "chown, mknod of a device, trusted. xattrs")
	d := newLayer(t)
	owned := file("etc/owned", "secret")
	owned.hdr.Uid, owned.hdr.Gid, owned.hdr.Mode = 1234, 5678, 0o4750
	tb := mkTar(t,
		dir("etc/"),
		withXattr(withXattr(file("etc/motd", "hello"), "user.note", "n"), "trusted.sec", "t"),
		owned,
		hardlink("etc/motd.link", "etc/motd"),
		symlink("etc/rel", "../etc/motd"),
		symlink("etc/abs", "/nowhere/at/all"),
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, ModTime: testTime}},
		device("dev/null", tar.TypeChar, 1, 3),
		device("dev/loop0", tar.TypeBlock, 7, 0),
		dir("empty/"),
	)
	n := apply(t, d, tb, archive.ApplyOptions{AllowDevices: true})
	if n != int64(len("hello")+len("secret")) {
		t.Errorf("size = %d, want %d (regular bytes, hard link once)", n, len("hello")+len("secret"))
	}
	check := func(rel string, want func(st *unix.Stat_t) bool, what string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(d, rel), &st); err != nil || !want(&st) {
			t.Errorf("%s: want %s; lstat: %+v, %v", rel, what, st, err)
		}
	}
	check("etc/motd", func(st *unix.Stat_t) bool { return st.Nlink == 2 && st.Mode&0o7777 == 0o644 }, "0644 with 2 links")
	check("etc/owned", func(st *unix.Stat_t) bool { return st.Uid == 1234 && st.Gid == 5678 && st.Mode&0o7777 == 0o4750 }, "1234:5678 mode 4750 (setuid kept after chown)")
	check("etc/motd", func(st *unix.Stat_t) bool {
		return st.Mtim.Sec == testTime.Unix() && st.Mtim.Nsec == int64(testTime.Nanosecond())
	}, "mtime to the nanosecond")
	check("etc", func(st *unix.Stat_t) bool { return st.Mtim.Sec == testTime.Unix() && st.Mode&0o777 == 0o755 }, "a dir with its mtime set after its content")
	check("run/fifo", func(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFIFO && st.Mode&0o777 == 0o620 }, "fifo 0620")
	check("dev/null", func(st *unix.Stat_t) bool {
		return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
	}, "char 1:3")
	check("dev/loop0", func(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFBLK && unix.Minor(st.Rdev) == 0 }, "block 7:0")
	if target, _ := os.Readlink(filepath.Join(d, "etc/abs")); target != "/nowhere/at/all" {
		t.Errorf("symlink target = %q", target)
	}
	if v, _ := testutil.Getxattr(filepath.Join(d, "etc/motd"), "user.note"); v != "n" {
		t.Errorf("user.note = %q", v)
	}
	if v, _ := testutil.Getxattr(filepath.Join(d, "etc/motd"), "trusted.sec"); v != "t" {
		t.Errorf("trusted.sec = %q", v)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "etc/motd.link")); string(b) != "hello" {
		t.Errorf("hard link reads %q", b)
	}
}

// TestApplyWhiteouts: OCI whiteouts and opaque markers become markers in
// the chosen format, or deletions with Flatten; they hide lower layers
// only, never the same tar's objects, whatever the order.
func TestApplyWhiteouts(t *testing.T) {
	testutil.NeedRoot(t, "overlay char 0/0 whiteouts and trusted.overlay.opaque")
	tb := mkTar(t,
		dir("a/"),
		file("a/.wh.gone", ""),
		file(".wh.topgone", ""),
		dir("b/"),
		file("b/.wh..wh..opq", ""),
		file("b/new", "n"),
		file(".wh.again", ""),   // whiteout first,
		dir("again/"),           // then the same layer makes it again:
		file("again/inner", ""), // opaque, with its own content
		file("same", "s"),
		file(".wh.same", ""), // after its object: the object stays
		file(".wh..wh..opq/ignored", ""),
		file(".wh..wh.aufs", ""),
	)
	t.Run("overlay", func(t *testing.T) {
		d := newLayer(t)
		apply(t, d, tb, archive.ApplyOptions{Format: whiteout.Overlay})
		for _, p := range []string{"a/gone", "topgone"} {
			if !testutil.IsCharWhiteout(filepath.Join(d, p)) {
				t.Errorf("%s: want a char 0/0 whiteout", p)
			}
		}
		for _, p := range []string{"b", "again"} {
			if v, _ := testutil.Getxattr(filepath.Join(d, p), "trusted.overlay.opaque"); v != "y" {
				t.Errorf("%s: trusted.overlay.opaque = %q, want y", p, v)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(d, "same")); string(b) != "s" {
			t.Errorf("same: the same layer's file must stay, reads %q", b)
		}
		for _, p := range []string{".wh..wh..opq", ".wh..wh.aufs", "b/.wh..wh..opq", "a/.wh.gone"} {
			if exists(filepath.Join(d, p)) {
				t.Errorf("%s: overlay format must not hold aufs markers", p)
			}
		}
	})
	t.Run("aufs", func(t *testing.T) {
		d := newLayer(t)
		apply(t, d, tb, archive.ApplyOptions{Format: whiteout.Aufs})
		for _, p := range []string{"a/.wh.gone", ".wh.topgone", "b/.wh..wh..opq", "again/.wh..wh..opq"} {
			if fi, err := os.Lstat(filepath.Join(d, p)); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
				t.Errorf("%s: want an empty marker file: %v", p, err)
			}
		}
		for _, p := range []string{".wh.again", ".wh.same", "a/gone"} {
			if exists(filepath.Join(d, p)) {
				t.Errorf("%s: must not exist (the same layer's object took the name)", p)
			}
		}
		if _, err := testutil.Getxattr(filepath.Join(d, "b"), "trusted.overlay.opaque"); err == nil {
			t.Errorf("aufs format wrote an overlay opaque xattr")
		}
	})
	t.Run("flatten", func(t *testing.T) {
		d := newLayer(t)
		// A full copy of the parent.
		testutil.WriteFile(t, filepath.Join(d, "a/gone"), "old")
		testutil.WriteFile(t, filepath.Join(d, "a/kept"), "old")
		testutil.WriteFile(t, filepath.Join(d, "topgone/deep/x"), "old")
		testutil.WriteFile(t, filepath.Join(d, "b/old"), "old")
		testutil.WriteFile(t, filepath.Join(d, "again/old"), "old")
		apply(t, d, tb, archive.ApplyOptions{Flatten: true})
		for _, p := range []string{"a/gone", "topgone", "b/old", "again/old"} {
			if exists(filepath.Join(d, p)) {
				t.Errorf("%s: want it deleted", p)
			}
		}
		for _, p := range []string{"a/kept", "b/new", "again/inner", "same"} {
			if !exists(filepath.Join(d, p)) {
				t.Errorf("%s: want it kept", p)
			}
		}
		if out := fingerprint(t, d); strings.Contains(out, ".wh.") || strings.Contains(out, "overlay") {
			t.Errorf("flatten wrote markers:\n%s", out)
		}
	})
}

// TestApplyOpaqueOrder: the OCI spec's example; the opaque marker hides
// the lower a/b whether it comes before or after the new a/b.
func TestApplyOpaqueOrder(t *testing.T) {
	for _, last := range []bool{false, true} {
		entries := []ent{dir("a/"), dir("a/b/"), dir("a/b/c/"), file("a/b/c/foo", "f")}
		opq := file("a/.wh..wh..opq", "")
		if last {
			entries = append(entries, opq)
		} else {
			entries = append([]ent{entries[0], opq}, entries[1:]...)
		}
		d := newLayer(t)
		testutil.WriteFile(t, filepath.Join(d, "a/b/c/bar"), "lower")
		testutil.WriteFile(t, filepath.Join(d, "a/other"), "lower")
		apply(t, d, mkTar(t, entries...), archive.ApplyOptions{Flatten: true})
		if exists(filepath.Join(d, "a/b/c/bar")) || exists(filepath.Join(d, "a/other")) {
			t.Errorf("opaque last=%v: lower content survived:\n%s", last, fingerprint(t, d))
		}
		if !exists(filepath.Join(d, "a/b/c/foo")) {
			t.Errorf("opaque last=%v: the layer's own a/b/c/foo is gone", last)
		}
	}
}

// TestApplyReplace: a directory over a directory merges and takes the
// entry's attributes; anything else replaces.
func TestApplyReplace(t *testing.T) {
	d := newLayer(t)
	testutil.WriteFile(t, filepath.Join(d, "dir/keep"), "k")
	testutil.Setxattr(t, filepath.Join(d, "dir"), "user.old", "o")
	testutil.WriteFile(t, filepath.Join(d, "file-to-dir"), "f")
	testutil.WriteFile(t, filepath.Join(d, "dir-to-file/x"), "x")
	if err := os.Symlink("/", filepath.Join(d, "link-to-dir")); err != nil {
		t.Fatal(err)
	}
	d2 := dir("dir/")
	d2.hdr.Mode = 0o711
	apply(t, d, mkTar(t,
		withXattr(d2, "user.new", "n"),
		dir("file-to-dir/"), file("file-to-dir/in", "i"),
		file("dir-to-file", "now a file"),
		dir("link-to-dir/"), file("link-to-dir/in", "i"),
	), archive.ApplyOptions{})
	fi, err := os.Lstat(filepath.Join(d, "dir"))
	if err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("dir mode = %v, %v; want 0711", fi.Mode(), err)
	}
	if !exists(filepath.Join(d, "dir/keep")) {
		t.Errorf("dir over dir must merge")
	}
	if _, err := testutil.Getxattr(filepath.Join(d, "dir"), "user.old"); err == nil {
		t.Errorf("dir over dir must replace xattrs: user.old is still there")
	}
	if v, _ := testutil.Getxattr(filepath.Join(d, "dir"), "user.new"); v != "n" {
		t.Errorf("user.new = %q", v)
	}
	for _, p := range []string{"file-to-dir/in", "link-to-dir/in"} {
		if !exists(filepath.Join(d, p)) {
			t.Errorf("%s missing", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(d, "dir-to-file")); string(b) != "now a file" {
		t.Errorf("dir-to-file reads %q", b)
	}
}

// TestApplyImplicitParents: entries without their directories get them.
func TestApplyImplicitParents(t *testing.T) {
	d := newLayer(t)
	apply(t, d, mkTar(t, file("x/y/z", "z")), archive.ApplyOptions{})
	if b, _ := os.ReadFile(filepath.Join(d, "x/y/z")); string(b) != "z" {
		t.Errorf("x/y/z reads %q", b)
	}
}

// TestApplyAufsPlnk: legacy Docker aufs tars keep hard-link sources in
// /.wh..wh.plnk and link to them; the links become one inode in the layer
// and the plnk directory does not appear.
func TestApplyAufsPlnk(t *testing.T) {
	d := newLayer(t)
	n := apply(t, d, mkTar(t,
		dir(".wh..wh.plnk/"),
		file(".wh..wh.plnk/123.456", "shared"),
		hardlink("a", ".wh..wh.plnk/123.456"),
		hardlink("b", ".wh..wh.plnk/123.456"),
	), archive.ApplyOptions{})
	if exists(filepath.Join(d, ".wh..wh.plnk")) {
		t.Errorf("the plnk dir was written into the layer")
	}
	var a, b unix.Stat_t
	if unix.Lstat(filepath.Join(d, "a"), &a) != nil || unix.Lstat(filepath.Join(d, "b"), &b) != nil || a.Ino != b.Ino || a.Size != 6 {
		t.Errorf("a and b should be one 6-byte inode: %+v %+v", a, b)
	}
	if n != 6 {
		t.Errorf("size = %d, want 6", n)
	}
}

func TestApplyProgress(t *testing.T) {
	tb := mkTar(t, file("a", strings.Repeat("x", 100000)), file("b", "y"))
	var last int64
	calls := 0
	apply(t, newLayer(t), tb, archive.ApplyOptions{Progress: func(n int64) {
		if n < last {
			t.Errorf("progress went back: %d after %d", n, last)
		}
		last = n
		calls++
	}})
	if last != int64(len(tb)) || calls == 0 {
		t.Errorf("progress ended at %d after %d calls, want %d", last, calls, len(tb))
	}
}

func TestApplyNeedsDir(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{filepath.Join(root, "missing"), "/"} {
		if _, err := archive.Apply(d, bytes.NewReader(mkTar(t)), archive.ApplyOptions{}); err == nil {
			t.Errorf("Apply(%s) succeeded", d)
		}
	}
	testutil.WriteFile(t, filepath.Join(root, "file"), "")
	_, err := archive.Apply(filepath.Join(root, "file"), bytes.NewReader(mkTar(t)), archive.ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Apply on a file: %v", err)
	}
}

// TestApplyOverLayerContent: a tar applied to a layer dir that already
// has content is applied on top of it: a whiteout deletes the layer's own
// object and leaves a marker for the lower layers; an opaque marker on the
// root hides everything below, the layer's earlier content included.
func TestApplyOverLayerContent(t *testing.T) {
	for _, format := range []whiteout.Format{whiteout.Overlay, whiteout.Aufs} {
		t.Run(format.String(), func(t *testing.T) {
			if format == whiteout.Overlay {
				testutil.NeedRoot(t, "trusted.overlay.opaque")
			}
			d := newLayer(t)
			testutil.WriteFile(t, filepath.Join(d, "x"), "old")
			testutil.WriteFile(t, filepath.Join(d, "sub/y"), "old")
			apply(t, d, mkTar(t, file(".wh.x", "")), archive.ApplyOptions{Format: format})
			switch format {
			case whiteout.Overlay:
				if !testutil.IsCharWhiteout(filepath.Join(d, "x")) {
					t.Errorf("x: want a char 0/0 whiteout in its place")
				}
			case whiteout.Aufs:
				if exists(filepath.Join(d, "x")) || !exists(filepath.Join(d, ".wh.x")) {
					t.Errorf("want x gone and .wh.x written")
				}
			}
			apply(t, d, mkTar(t, file(".wh..wh..opq", ""), file("z", "z")), archive.ApplyOptions{Format: format})
			if got := tarNames(t, diff(t, d, archive.DiffOptions{})); !slices.Equal(got, []string{".wh..wh..opq", "z"}) {
				t.Errorf("after a root opaque marker the layer reads as %q", got)
			}
		})
	}
}

// TestApplyGlobalHeader: PAX global headers (git archive writes one) carry
// no entry and do not upset the end-of-archive check.
func TestApplyGlobalHeader(t *testing.T) {
	global := ent{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": strings.Repeat("c", 1000)}}}
	d := newLayer(t)
	apply(t, d, mkTar(t, global, file("a", "a")), archive.ApplyOptions{})
	if got := tarNames(t, diff(t, d, archive.DiffOptions{})); !slices.Equal(got, []string{"a"}) {
		t.Errorf("layer holds %q", got)
	}
}
