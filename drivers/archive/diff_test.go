package archive_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// setTimes gives p (not following a symlink) an mtime.
func setTimes(t *testing.T, p string, mtime time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("utimes %s: %v", p, err)
	}
}

// everyTypeLayer builds a layer dir by hand with every object type and
// every marker dialect strata reads, plus bookkeeping Diff must skip.
func everyTypeLayer(t *testing.T) string {
	t.Helper()
	testutil.NeedRoot(t, "char 0/0 whiteouts, a device node, trusted. xattrs, chown")
	d := filepath.Join(t.TempDir(), "layer")
	j := func(p string) string { return filepath.Join(d, p) }
	testutil.WriteFile(t, j("bin/tool"), "#!/bin/true\n")
	testutil.Setxattr(t, j("bin/tool"), "user.x", "1")
	testutil.Setxattr(t, j("bin/tool"), "trusted.t", "2")
	testutil.Setxattr(t, j("bin/tool"), "trusted.overlay.origin", "skip me")
	testutil.Setxattr(t, j("bin/tool"), "user.strata.ino", "skip me too")
	if err := unix.Chmod(j("bin/tool"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(j("bin/tool"), j("bin/tool.hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", j("bin/sh")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, j("home/owned"), "mine")
	if err := os.Lchown(j("home/owned"), 1000, 1001); err != nil {
		t.Fatal(err)
	}
	testutil.Setxattr(t, j("home"), "user.dir", "d")
	testutil.Mkdirs(t, j("dev"))
	if err := unix.Mknod(j("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(j("dev/null"), 0o666); err != nil {
		t.Fatal(err)
	}
	testutil.Mkdirs(t, j("run"))
	if err := unix.Mkfifo(j("run/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(j("run/sock"), unix.S_IFSOCK|0o600, 0); err != nil {
		t.Fatal(err)
	}
	// Whiteouts in three dialects.
	testutil.WriteFile(t, j("etc/keep"), "k")
	testutil.MknodWhiteout(t, j("etc/gone"), 0)
	testutil.WriteFile(t, j("etc/.wh.old"), "")
	testutil.WriteFile(t, j("x/real"), "r")
	testutil.WriteFile(t, j("x/xw"), "")
	testutil.Setxattr(t, j("x/xw"), "trusted.overlay.whiteout", "")
	testutil.Setxattr(t, j("x"), "trusted.overlay.opaque", "x")
	// Opaque dirs in two dialects.
	testutil.WriteFile(t, j("opq1/f"), "f")
	testutil.Setxattr(t, j("opq1"), "trusted.overlay.opaque", "y")
	testutil.WriteFile(t, j("opq2/g"), "g")
	testutil.WriteFile(t, j("opq2/.wh..wh..opq"), "")
	// aufs "deleted, then made again in the same layer".
	testutil.WriteFile(t, j("both"), "b")
	testutil.WriteFile(t, j(".wh.both"), "")
	testutil.WriteFile(t, j("bothdir/in"), "i")
	testutil.WriteFile(t, j(".wh.bothdir"), "")
	// Bookkeeping that is never layer content.
	testutil.WriteFile(t, j(".wh..wh.aufs"), "")
	testutil.WriteFile(t, j(".wh..wh.plnk/1.2"), "plnk")
	testutil.WriteFile(t, j(".wh..wh.strata/tmp.1.1"), "scratch")
	// Times last, directories after their content.
	stamp := time.Unix(1650000000, 987654321)
	var dirs []string
	filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			dirs = append(dirs, p)
		} else {
			setTimes(t, p, stamp)
		}
		return nil
	})
	for _, p := range slices.Backward(dirs) {
		setTimes(t, p, stamp.Add(time.Hour))
	}
	return d
}

func diff(t *testing.T, dir string, opts archive.DiffOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.Diff(&buf, dir, opts); err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return buf.Bytes()
}

func TestDiffEveryType(t *testing.T) {
	d := everyTypeLayer(t)
	tb := diff(t, d, archive.DiffOptions{})
	want := []string{
		"bin/", "bin/sh", "bin/tool", "bin/tool.hard",
		"both",
		"bothdir/", "bothdir/.wh..wh..opq", "bothdir/in",
		"dev/", "dev/null",
		"etc/", "etc/.wh.gone", "etc/.wh.old", "etc/keep",
		"home/", "home/owned",
		"opq1/", "opq1/.wh..wh..opq", "opq1/f",
		"opq2/", "opq2/.wh..wh..opq", "opq2/g",
		"run/", "run/fifo",
		"x/", "x/.wh.xw", "x/real",
	}
	if got := tarNames(t, tb); !slices.Equal(got, want) {
		t.Errorf("entries:\n got %q\nwant %q", got, want)
	}
	list := listTar(t, tb)
	for _, line := range []string{
		`0 bin/tool mode=4755 0:0 "#!/bin/true\n" trusted.t="2" user.x="1"`,
		"1 bin/tool.hard mode=4755 0:0 -> bin/tool",
		"2 bin/sh mode=777 0:0 -> tool",
		"3 dev/null mode=666 0:0 dev=1:3",
		"6 run/fifo mode=640 0:0",
		`0 home/owned mode=644 1000:1001 "mine"`,
		`5 home/ mode=755 0:0 user.dir="d"`,
		"0 etc/.wh.gone mode=600 0:0",
	} {
		if !strings.Contains(list, line+"\n") {
			t.Errorf("missing %q in\n%s", line, list)
		}
	}
	if again := diff(t, d, archive.DiffOptions{}); !bytes.Equal(again, tb) {
		t.Errorf("Diff is not deterministic")
	}
}

// TestRoundTrip: Diff of a layer, applied to a fresh dir in either marker
// format and diffed again, gives the same bytes.
func TestRoundTrip(t *testing.T) {
	t1 := diff(t, everyTypeLayer(t), archive.DiffOptions{})
	for _, format := range []whiteout.Format{whiteout.Overlay, whiteout.Aufs} {
		d := newLayer(t)
		size := apply(t, d, t1, archive.ApplyOptions{Format: format, AllowDevices: true})
		if t2 := diff(t, d, archive.DiffOptions{}); !bytes.Equal(t2, t1) {
			t.Errorf("%v: Diff(Apply(Diff(layer))) differs.\nfirst:\n%s\nsecond:\n%s", format, listTar(t, t1), listTar(t, t2))
		}
		if want, err := archive.Size(d); err != nil || size != want {
			t.Errorf("%v: Apply returned size %d, Size says %d (%v)", format, size, want, err)
		}
	}
	// Overlay markers, then aufs markers applied over the same layer's
	// content in a second dir: still the same tar.
	d := newLayer(t)
	apply(t, d, t1, archive.ApplyOptions{Format: whiteout.Overlay, AllowDevices: true})
	over := diff(t, d, archive.DiffOptions{})
	d2 := newLayer(t)
	apply(t, d2, over, archive.ApplyOptions{Format: whiteout.Aufs, AllowDevices: true})
	if t3 := diff(t, d2, archive.DiffOptions{}); !bytes.Equal(t3, t1) {
		t.Errorf("overlay then aufs: tars differ.\nfirst:\n%s\nlast:\n%s", listTar(t, t1), listTar(t, t3))
	}
}

func TestSize(t *testing.T) {
	d := newLayer(t)
	testutil.WriteFile(t, filepath.Join(d, "a"), "12345")
	if err := os.Link(filepath.Join(d, "a"), filepath.Join(d, "b")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(d, "sub/c"), "123")
	testutil.WriteFile(t, filepath.Join(d, ".wh..wh.strata/tmp"), "scratch, not layer content")
	testutil.WriteFile(t, filepath.Join(d, "sub/.wh.x"), "")
	if err := os.Symlink("a-long-target-that-is-not-counted", filepath.Join(d, "l")); err != nil {
		t.Fatal(err)
	}
	if n, err := archive.Size(d); err != nil || n != 8 {
		t.Errorf("Size = %d, %v; want 8 (hard link once, markers and scratch not counted)", n, err)
	}
}

func TestDiffProgress(t *testing.T) {
	d := newLayer(t)
	testutil.WriteFile(t, filepath.Join(d, "big"), strings.Repeat("x", 200000))
	var last int64
	var buf bytes.Buffer
	if err := archive.Diff(&buf, d, archive.DiffOptions{Progress: func(n int64) { last = n }}); err != nil {
		t.Fatal(err)
	}
	if last != int64(buf.Len()) {
		t.Errorf("progress ended at %d, the tar is %d bytes", last, buf.Len())
	}
}
