package cow

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/internal/testutil"
)

// setup makes a lower dir, an upper dir and a workdir, and an engine.
type setup struct {
	lower, upper string
	lowerFD      int
	upperFD      int
	eng          *Engine
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	root := t.TempDir()
	s := &setup{lower: filepath.Join(root, "lower"), upper: filepath.Join(root, "upper")}
	for _, d := range []string{s.lower, s.upper, filepath.Join(root, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := OpenWorkdir(filepath.Join(root, "work"))
	if err != nil {
		t.Fatal(err)
	}
	s.eng = &Engine{Work: w}
	s.lowerFD = testutil.OpenDir(t, s.lower)
	s.upperFD = testutil.OpenDir(t, s.upper)
	t.Cleanup(func() { w.Close() })
	return s
}

// sameMeta checks what copy-up must keep: type, mode, owner, mtime, size.
func sameMeta(t *testing.T, a, b string) {
	t.Helper()
	x, y := testutil.Lstat(t, a), testutil.Lstat(t, b)
	if x.Mode != y.Mode || x.Uid != y.Uid || x.Gid != y.Gid || x.Mtim != y.Mtim || x.Size != y.Size || x.Rdev != y.Rdev {
		t.Errorf("metadata differs:\n lower %s mode=%o uid=%d gid=%d mtime=%v size=%d rdev=%d\n upper %s mode=%o uid=%d gid=%d mtime=%v size=%d rdev=%d",
			a, x.Mode, x.Uid, x.Gid, x.Mtim, x.Size, x.Rdev, b, y.Mode, y.Uid, y.Gid, y.Mtim, y.Size, y.Rdev)
	}
}

func TestUpRegularFileEveryMethod(t *testing.T) {
	testutil.NeedRoot(t, "chown, setuid bits, trusted xattrs")
	for _, tc := range []struct {
		name             string
		noReflink, noCFR bool
		want             []Method // reflink may or may not work on this filesystem
	}{
		{"best", false, false, []Method{Reflink, CopyFileRange}},
		{"copy_file_range", true, false, []Method{CopyFileRange}},
		{"loop", true, true, []Method{Loop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t)
			s.eng.disable.reflink, s.eng.disable.copyFileRange = tc.noReflink, tc.noCFR
			src := filepath.Join(s.lower, "f")
			data := bytes.Repeat([]byte("strata"), 100_000)
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			testutil.Must(t, os.Chown(src, 1234, 5678))
			testutil.Must(t, os.Chmod(src, 0o4751)) // after chown, which clears setuid
			testutil.Must(t, unix.Setxattr(src, "user.keep", []byte("me"), 0))
			testutil.Must(t, unix.Setxattr(src, "trusted.overlay.origin", []byte("x"), 0))
			testutil.Must(t, unix.Setxattr(src, "user.overlay.redirect", []byte("x"), 0))
			res, err := s.eng.Up(s.lowerFD, s.upperFD, "f", nil)
			testutil.Must(t, err)
			if !contains(tc.want, res.Method) {
				t.Errorf("method %s, want one of %v", res.Method, tc.want)
			}
			if res.Bytes != int64(len(data)) {
				t.Errorf("bytes %d, want %d", res.Bytes, len(data))
			}
			dst := filepath.Join(s.upper, "f")
			got, err := os.ReadFile(dst)
			testutil.Must(t, err)
			if !bytes.Equal(got, data) {
				t.Errorf("content differs after copy-up")
			}
			sameMeta(t, src, dst)
			v, err := sys.Getxattr(s.upperFD, "f", "user.keep")
			if err != nil || string(v) != "me" {
				t.Errorf("user.keep = %q, %v; want me", v, err)
			}
			for _, attr := range []string{"trusted.overlay.origin", "user.overlay.redirect"} {
				if _, err := sys.Getxattr(s.upperFD, "f", attr); !errors.Is(err, unix.ENODATA) {
					t.Errorf("%s copied up (err %v): the union's own markers must not be", attr, err)
				}
			}
			assertWorkdirEmpty(t, s.eng.Work)
		})
	}
}

func TestUpKeepsHoles(t *testing.T) {
	for _, tc := range []struct {
		name             string
		noReflink, noCFR bool
	}{{"copy_file_range", true, false}, {"loop", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t)
			s.eng.disable.reflink, s.eng.disable.copyFileRange = tc.noReflink, tc.noCFR
			src := filepath.Join(s.lower, "sparse")
			f, err := os.Create(src)
			testutil.Must(t, err)
			const size = 16 << 20
			_, err = f.WriteAt([]byte("head"), 0)
			testutil.Must(t, err)
			_, err = f.WriteAt([]byte("middle"), 8<<20)
			testutil.Must(t, err)
			testutil.Must(t, f.Truncate(size)) // a trailing hole
			testutil.Must(t, f.Close())
			_, err = s.eng.Up(s.lowerFD, s.upperFD, "sparse", nil)
			testutil.Must(t, err)
			dst := filepath.Join(s.upper, "sparse")
			st := testutil.Lstat(t, dst)
			if st.Size != size {
				t.Errorf("size %d, want %d", st.Size, size)
			}
			if st.Blocks*512 > 1<<20 {
				t.Errorf("copy uses %d bytes on disk for %d bytes of data: holes were filled", st.Blocks*512, 10)
			}
			got, err := os.ReadFile(dst)
			testutil.Must(t, err)
			if string(got[:4]) != "head" || string(got[8<<20:8<<20+6]) != "middle" || got[size-1] != 0 {
				t.Errorf("content differs after copy-up")
			}
		})
	}
}

func TestUpOtherTypes(t *testing.T) {
	testutil.NeedRoot(t, "chown, setuid bits, trusted xattrs")
	s := newSetup(t)
	testutil.Must(t, os.Mkdir(filepath.Join(s.lower, "dir"), 0o1750))
	testutil.Must(t, os.WriteFile(filepath.Join(s.lower, "dir", "child"), []byte("x"), 0o644))
	testutil.Must(t, os.Symlink("some/target", filepath.Join(s.lower, "link")))
	testutil.Must(t, unix.Mkfifo(filepath.Join(s.lower, "fifo"), 0o640))
	testutil.Must(t, unix.Mknod(filepath.Join(s.lower, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	testutil.Must(t, unix.Lchown(filepath.Join(s.lower, "link"), 42, 43))
	for _, name := range []string{"dir", "link", "fifo", "null"} {
		res, err := s.eng.Up(s.lowerFD, s.upperFD, name, map[string][]byte{"trusted.strata.test": []byte(name)})
		testutil.Must(t, err)
		if res.Method != NoData {
			t.Errorf("%s: method %s, want %s", name, res.Method, NoData)
		}
		sameMeta(t, filepath.Join(s.lower, name), filepath.Join(s.upper, name))
		if v, err := sys.Getxattr(s.upperFD, name, "trusted.strata.test"); err != nil || string(v) != name {
			t.Errorf("%s: extra xattr = %q, %v; want %q", name, v, err, name)
		}
	}
	if target, err := os.Readlink(filepath.Join(s.upper, "link")); err != nil || target != "some/target" {
		t.Errorf("link target %q, %v", target, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.upper, "dir")); len(entries) != 0 {
		t.Errorf("directory copy-up copied %d entries; it copies the directory alone", len(entries))
	}
	assertWorkdirEmpty(t, s.eng.Work)
}

func TestUpNeverReplaces(t *testing.T) {
	s := newSetup(t)
	testutil.Must(t, os.WriteFile(filepath.Join(s.lower, "f"), []byte("lower"), 0o644))
	testutil.Must(t, os.WriteFile(filepath.Join(s.upper, "f"), []byte("upper"), 0o644))
	if _, err := s.eng.Up(s.lowerFD, s.upperFD, "f", nil); !errors.Is(err, unix.EEXIST) {
		t.Errorf("copy-up over an existing name: err %v, want EEXIST", err)
	}
	if got, _ := os.ReadFile(filepath.Join(s.upper, "f")); string(got) != "upper" {
		t.Errorf("upper content %q: copy-up replaced it", got)
	}
	assertWorkdirEmpty(t, s.eng.Work)
}

func TestUpMissingSource(t *testing.T) {
	s := newSetup(t)
	if _, err := s.eng.Up(s.lowerFD, s.upperFD, "nope", nil); !errors.Is(err, unix.ENOENT) {
		t.Errorf("err %v, want ENOENT", err)
	}
	assertWorkdirEmpty(t, s.eng.Work)
}

// TestOpenWorkdirCleansLeftovers: a crash mid copy-up leaves a temp file
// or directory in the workdir; the next mount removes it.
func TestOpenWorkdirCleansLeftovers(t *testing.T) {
	parent := t.TempDir()
	w, err := OpenWorkdir(parent)
	testutil.Must(t, err)
	testutil.Must(t, w.Close())
	p := filepath.Join(parent, WorkdirName)
	testutil.Must(t, os.WriteFile(filepath.Join(p, "tmp.1.1"), []byte("half a copy"), 0o600))
	testutil.Must(t, os.MkdirAll(filepath.Join(p, "tmp.1.2", "deep"), 0o700))
	w, err = OpenWorkdir(parent)
	testutil.Must(t, err)
	defer w.Close()
	assertWorkdirEmpty(t, w)
}

func assertWorkdirEmpty(t *testing.T, w *Workdir) {
	t.Helper()
	entries, err := os.ReadDir(w.Path())
	testutil.Must(t, err)
	for _, e := range entries {
		t.Errorf("workdir holds %s", e.Name())
	}
}

func contains(ms []Method, m Method) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}
