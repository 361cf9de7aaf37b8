// Package drivertest is the conformance suite every graphdriver backend
// passes, modelled on Docker's graphtest and containerd's snapshotter
// testsuite: each backend's test calls Run once with a constructor, and
// every case gets a fresh store root (a t.TempDir), a Cleanup of the
// driver afterwards, and a check that no mount is left below the root.
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, func(t *testing.T, root string) drivers.Driver {
//			d, err := drivers.New(drivers.Options{Root: root, Backend: "vfs"})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return d
//		})
//	}
//
// The constructor takes the root so that the restart case can open a
// second driver on the same store. It should t.Skip (or t.Fatal) itself
// when the backend cannot run here.
package drivertest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers"
	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/sys"
)

// Factory opens a driver on the store at root.
type Factory func(t *testing.T, root string) drivers.Driver

// suite is one case's environment.
type suite struct {
	t    *testing.T
	root string
	open Factory
	d    drivers.Driver
}

// cases is every conformance case by name, in the order Run runs them.
var cases = []struct {
	name string
	fn   func(s *suite)
}{
	{"CreateEmpty", testCreateEmpty},
	{"CreateBase", testCreateBase},
	{"DeepChain128", testDeepChain},
	{"InitLayer", testInitLayer},
	{"GetPutRefcount", testRefcount},
	{"PutWithoutGet", testPutWithoutGet},
	{"ConcurrentGetPut", testConcurrentGetPut},
	{"RemoveMounted", testRemoveMounted},
	{"BadInput", testBadInput},
	{"ApplyImage", testApplyImage},
	{"DiffApplyRoundTrip", testDiffApplyRoundTrip},
	{"RenameLowerDirectory", testRenameLowerDirectory},
	{"Changes", testChanges},
	{"DiffSize", testDiffSize},
	{"ApplyRefusedLeavesLayer", testApplyRefused},
	{"Restart", testRestart},
}

// Run runs every case against drivers made by open.
func Run(t *testing.T, open Factory) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s := &suite{t: t, root: root, open: open}
			s.d = open(t, root)
			t.Cleanup(func() {
				if err := s.d.Cleanup(); err != nil {
					t.Errorf("Cleanup: %v", err)
				}
				RequireNoMounts(t, root)
			})
			c.fn(s)
		})
	}
}

// RequireNoMounts fails the test if anything is mounted at or below dir.
func RequireNoMounts(t testing.TB, dir string) {
	t.Helper()
	dir, _ = filepath.EvalSymlinks(dir)
	mounts, err := sys.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if sys.PathWithin(m.MountPoint, dir) {
			t.Errorf("left mounted: %s (%s from %s)", m.MountPoint, m.FSType, m.Source)
		}
	}
}

func (s *suite) must(err error, what string, args ...any) {
	s.t.Helper()
	if err != nil {
		s.t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

func (s *suite) get(id string) string {
	s.t.Helper()
	dir, err := s.d.Get(id, "")
	s.must(err, "Get %s", id)
	return dir
}

func (s *suite) put(id string) {
	s.t.Helper()
	s.must(s.d.Put(id), "Put %s", id)
}

// with runs fn on the mounted layer and puts it afterwards.
func (s *suite) with(id string, fn func(dir string)) {
	s.t.Helper()
	dir := s.get(id)
	defer s.put(id)
	fn(dir)
}

func (s *suite) write(p, content string, mode os.FileMode) {
	s.t.Helper()
	s.must(os.MkdirAll(filepath.Dir(p), 0o755), "mkdir for %s", p)
	s.must(os.WriteFile(p, []byte(content), mode), "write %s", p)
}

func (s *suite) read(p string) string {
	s.t.Helper()
	b, err := os.ReadFile(p)
	s.must(err, "read %s", p)
	return string(b)
}

func (s *suite) absent(p string) {
	s.t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		s.t.Fatalf("%s: want it gone, lstat says %v", p, err)
	}
}

func (s *suite) apply(id, parent string, tarball []byte) int64 {
	s.t.Helper()
	n, err := s.d.ApplyDiff(id, parent, bytes.NewReader(tarball))
	s.must(err, "ApplyDiff %s", id)
	return n
}

func (s *suite) diff(id string) []byte {
	s.t.Helper()
	rc, err := s.d.Diff(id, "")
	s.must(err, "Diff %s", id)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	s.must(err, "reading Diff %s", id)
	return b
}

// IsMountPoint reports whether dir is a mount point now.
func IsMountPoint(t testing.TB, dir string) bool {
	mounts, err := sys.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.MountPoint == dir {
			return true
		}
	}
	return false
}

func testCreateEmpty(s *suite) {
	s.must(s.d.Create("empty", "", nil), "Create")
	if !s.d.Exists("empty") {
		s.t.Fatal("Exists is false right after Create")
	}
	s.with("empty", func(dir string) {
		var st unix.Stat_t
		s.must(unix.Stat(dir, &st), "stat %s", dir)
		if st.Mode&0o7777 != 0o755 || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) {
			s.t.Errorf("layer root: mode %o uid %d, want a 0755 directory owned by %d", st.Mode, st.Uid, os.Geteuid())
		}
		got := Snapshot(s.t, dir)
		if len(got) != 1 {
			s.t.Errorf("new layer not empty: %v", got)
		}
	})
	s.must(s.d.Remove("empty"), "Remove")
	if s.d.Exists("empty") {
		s.t.Fatal("Exists is true after Remove")
	}
}

// createBase writes Docker graphtest's base through a writable mount:
// a sticky 0705 directory owned by 1:2 and a setuid 0222 file.
func (s *suite) createBase(id string) {
	s.must(s.d.CreateReadWrite(id, "", nil), "CreateReadWrite %s", id)
	old := unix.Umask(0)
	defer unix.Umask(old)
	s.with(id, func(dir string) {
		s.must(os.Mkdir(dir+"/a subdir", 0o705|os.ModeSticky), "mkdir")
		s.must(unix.Chmod(dir+"/a subdir", 0o1705), "chmod")
		if os.Geteuid() == 0 {
			s.must(os.Chown(dir+"/a subdir", 1, 2), "chown")
		}
		s.must(os.WriteFile(dir+"/a file", []byte("Some data"), 0o222), "write")
		s.must(unix.Chmod(dir+"/a file", 0o4222), "chmod")
	})
}

func (s *suite) verifyBase(id string) {
	s.t.Helper()
	s.with(id, func(dir string) {
		got := Snapshot(s.t, dir)
		owner := "1:2"
		if os.Geteuid() != 0 {
			owner = fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid())
		}
		want := map[string]string{"a subdir": "dtrwx---r-x " + owner, "a file": "u-w--w--w-"}
		for p, prefix := range want {
			if !strings.HasPrefix(got[p], prefix) {
				s.t.Errorf("%s in %s: %q, want %q...", p, id, got[p], prefix)
			}
		}
		if len(got) != 3 {
			s.t.Errorf("%s: unexpected entries: %v", id, got)
		}
	})
}

func testCreateBase(s *suite) {
	s.createBase("base")
	s.verifyBase("base")
	s.must(s.d.Create("snap", "base", nil), "Create snap on base")
	s.verifyBase("snap")
	s.must(s.d.Remove("snap"), "Remove snap")
	s.must(s.d.Remove("base"), "Remove base")
}

// testDeepChain stacks 128 writable layers. Layer i writes top-id (a
// copy-up of the file every layer below wrote), layer-i/{layer-id,
// parent-id}, gone-i and dir-i/x, and deletes gone-(i-1) and dir-(i-1)
// of the layer below. Every layer must read back exactly its own view.
func testDeepChain(s *suite) {
	const depth = 128
	ids := []string{""}
	for i := 1; i <= depth; i++ {
		id := fmt.Sprintf("layer%03d", i)
		parent := ids[i-1]
		s.must(s.d.CreateReadWrite(id, parent, nil), "CreateReadWrite %s", id)
		s.with(id, func(dir string) {
			s.write(dir+"/top-id", id, 0o644)
			s.write(fmt.Sprintf("%s/layer-%d/layer-id", dir, i), id, 0o644)
			s.write(fmt.Sprintf("%s/layer-%d/parent-id", dir, i), parent, 0o644)
			s.write(fmt.Sprintf("%s/gone-%d", dir, i), "x", 0o644)
			s.write(fmt.Sprintf("%s/dir-%d/x", dir, i), "x", 0o644)
			if i > 1 {
				s.must(os.Remove(fmt.Sprintf("%s/gone-%d", dir, i-1)), "remove gone-%d", i-1)
				s.must(os.RemoveAll(fmt.Sprintf("%s/dir-%d", dir, i-1)), "remove dir-%d", i-1)
			}
		})
		ids = append(ids, id)
	}
	check := func(n int) {
		s.with(ids[n], func(dir string) {
			if got := s.read(dir + "/top-id"); got != ids[n] {
				s.t.Errorf("%s: top-id %q", ids[n], got)
			}
			for i := 1; i <= n; i++ {
				if got := s.read(fmt.Sprintf("%s/layer-%d/layer-id", dir, i)); got != ids[i] {
					s.t.Errorf("%s: layer-%d/layer-id %q, want %q", ids[n], i, got, ids[i])
				}
				if got := s.read(fmt.Sprintf("%s/layer-%d/parent-id", dir, i)); got != ids[i-1] {
					s.t.Errorf("%s: layer-%d/parent-id %q, want %q", ids[n], i, got, ids[i-1])
				}
				if i < n {
					s.absent(fmt.Sprintf("%s/gone-%d", dir, i))
					s.absent(fmt.Sprintf("%s/dir-%d", dir, i))
				}
			}
			s.read(fmt.Sprintf("%s/gone-%d", dir, n))
			s.read(fmt.Sprintf("%s/dir-%d/x", dir, n))
			s.absent(fmt.Sprintf("%s/layer-%d", dir, n+1))
		})
	}
	check(depth)
	check(depth / 2)
	check(1)
}

// testInitLayer is Docker's container setup: an image layer, "<id>-init"
// on it with the files the engine writes, and the container layer on that.
func testInitLayer(s *suite) {
	layers := ImageLayers(s.t)
	s.must(s.d.Create("image", "", nil), "Create image")
	s.apply("image", "", layers[0])
	s.must(s.d.CreateReadWrite("ctr-init", "image", nil), "CreateReadWrite ctr-init")
	s.with("ctr-init", func(dir string) {
		s.write(dir+"/etc/hostname", "ctr\n", 0o644)
		s.write(dir+"/etc/hosts", "127.0.0.1 localhost\n", 0o644)
		s.write(dir+"/.dockerenv", "", 0o755)
		s.must(os.MkdirAll(dir+"/dev/shm", 0o755), "mkdir dev/shm")
	})
	s.must(s.d.CreateReadWrite("ctr", "ctr-init", nil), "CreateReadWrite ctr")
	s.with("ctr", func(dir string) {
		if got := s.read(dir + "/etc/hostname"); got != "ctr\n" {
			s.t.Errorf("etc/hostname %q: the init layer's must win", got)
		}
		s.read(dir + "/.dockerenv")
		s.read(dir + "/usr/bin/tool")
		s.write(dir+"/app.log", "started\n", 0o644)
		s.must(os.Remove(dir+"/etc/hosts"), "remove etc/hosts")
	})
	s.with("ctr-init", func(dir string) {
		s.read(dir + "/etc/hosts") // the container's delete stays in its own layer
		s.absent(dir + "/app.log")
	})
	changes, err := s.d.Changes("ctr", "ctr-init")
	s.must(err, "Changes ctr")
	want := []string{"A /app.log", "C /etc", "D /etc/hosts"}
	if got := changeStrings(changes); !equalStrings(got, want) {
		s.t.Errorf("Changes(ctr) = %v, want %v", got, want)
	}
	for _, id := range []string{"ctr", "ctr-init", "image"} {
		s.must(s.d.Remove(id), "Remove %s", id)
	}
}

func testRefcount(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	s.apply("base", "", Tar(s.t, Entry{Name: "f", Content: "data"}))
	dir1 := s.get("base")
	mounted := IsMountPoint(s.t, dir1)
	dir2 := s.get("base")
	if dir1 != dir2 {
		s.t.Fatalf("second Get returned %s, first %s", dir2, dir1)
	}
	s.put("base")
	if got := s.read(dir1 + "/f"); got != "data" {
		s.t.Fatalf("after one of two Puts: %q", got)
	}
	if mounted && !IsMountPoint(s.t, dir1) {
		s.t.Fatal("unmounted while one user remains")
	}
	s.put("base")
	if mounted && IsMountPoint(s.t, dir1) {
		s.t.Fatal("still mounted after the last Put")
	}
	if err := s.d.Put("base"); !errors.Is(err, drivers.ErrNotMounted) {
		s.t.Fatalf("a third Put: %v, want ErrNotMounted", err)
	}
	// Mounted again after going to zero.
	s.with("base", func(dir string) {
		if got := s.read(dir + "/f"); got != "data" {
			s.t.Fatalf("remounted: %q", got)
		}
	})
}

func testPutWithoutGet(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	err := s.d.Put("base")
	if !errors.Is(err, drivers.ErrNotMounted) || !strings.Contains(err.Error(), "base") {
		s.t.Fatalf("Put without Get: %v, want ErrNotMounted naming the layer", err)
	}
	if err := s.d.Put("nosuch"); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Fatalf("Put of a missing layer: %v, want ErrNotFound", err)
	}
}

func testConcurrentGetPut(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	s.apply("base", "", Tar(s.t, Entry{Name: "f", Content: "shared"}))
	s.must(s.d.CreateReadWrite("rw", "base", nil), "CreateReadWrite")
	const workers, rounds = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				id := []string{"base", "rw"}[(w+r)%2]
				dir, err := s.d.Get(id, "")
				if err != nil {
					errs <- fmt.Errorf("Get %s: %w", id, err)
					return
				}
				if b, err := os.ReadFile(dir + "/f"); err != nil || string(b) != "shared" {
					errs <- fmt.Errorf("read %s/f while held: %q, %v", id, b, err)
				}
				if err := s.d.Put(id); err != nil {
					errs <- fmt.Errorf("Put %s: %w", id, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Error(err)
	}
	for _, id := range []string{"base", "rw"} {
		if err := s.d.Put(id); !errors.Is(err, drivers.ErrNotMounted) {
			s.t.Errorf("after balanced Gets and Puts, Put %s: %v, want ErrNotMounted", id, err)
		}
	}
}

func testRemoveMounted(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	s.must(s.d.CreateReadWrite("child", "base", nil), "CreateReadWrite")
	s.get("child")
	err := s.d.Remove("child")
	if !errors.Is(err, drivers.ErrMounted) || !strings.Contains(err.Error(), "child") {
		s.t.Fatalf("Remove of a mounted layer: %v, want ErrMounted naming it", err)
	}
	if !s.d.Exists("child") {
		s.t.Fatal("the refused Remove removed it")
	}
	s.put("child")
	if err := s.d.Remove("base"); !errors.Is(err, drivers.ErrHasChildren) {
		s.t.Fatalf("Remove of a parent: %v, want ErrHasChildren", err)
	}
	s.must(s.d.Remove("child"), "Remove child after Put")
	s.must(s.d.Remove("base"), "Remove base")
}

func testBadInput(s *suite) {
	for _, id := range []string{"", ".", "..", "a/b", "../x", ".hidden", strings.Repeat("x", 200), "a:b", "a,b", "a b"} {
		if err := s.d.Create(id, "", nil); !errors.Is(err, drivers.ErrInvalidID) {
			s.t.Errorf("Create(%q): %v, want ErrInvalidID", id, err)
		}
	}
	if err := s.d.Create("child", "nosuch", nil); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Errorf("Create on a missing parent: %v, want ErrNotFound", err)
	}
	if s.d.Exists("child") {
		s.t.Error("a refused Create left the layer")
	}
	s.must(s.d.Create("base", "", nil), "Create")
	if err := s.d.Create("base", "", nil); !errors.Is(err, drivers.ErrExists) {
		s.t.Errorf("second Create: %v, want ErrExists", err)
	}
	s.must(s.d.Create("other", "", nil), "Create other")
	if _, err := s.d.Diff("base", "other"); !errors.Is(err, drivers.ErrWrongParent) {
		s.t.Errorf("Diff against a layer that is not the parent: %v, want ErrWrongParent", err)
	}
	if _, err := s.d.Get("nosuch", ""); !errors.Is(err, drivers.ErrNotFound) {
		s.t.Errorf("Get of a missing layer: %v, want ErrNotFound", err)
	}
	if err := s.d.Create("x", "", &drivers.CreateOpts{StorageOpt: map[string]string{"size": "1G"}}); err == nil {
		s.t.Error("an unsupported storage option was accepted")
	}
}

// buildImage creates image1..3 from ImageLayers and returns the top id.
func (s *suite) buildImage() string {
	parent := ""
	for i, layer := range ImageLayers(s.t) {
		id := fmt.Sprintf("image%d", i+1)
		s.must(s.d.Create(id, parent, nil), "Create %s", id)
		s.apply(id, parent, layer)
		parent = id
	}
	return parent
}

// testApplyImage checks the merged tree of the three fixture layers.
func testApplyImage(s *suite) {
	top := s.buildImage()
	s.with(top, func(dir string) {
		got := Snapshot(s.t, dir)
		checks := map[string]string{
			"etc":                 "drwxr-x---",
			"etc/hostname":        "-rw-r--r-- 0:0 size=7",
			"etc/motd":            "-rw-r--r-- 0:0 size=8",
			"tmp":                 "dtrwxrwxrwx",
			"usr/bin/tool":        "-rwxr-xr-x 0:0 size=23",
			"usr/bin/tool-again":  "urwxr-xr-x 0:0 size=20",
			"usr/lib/libx.so.1.0": "-rw-r--r-- 0:0 size=3000",
			"usr/share/note":      "-rw-r--r--",
			"var/run/ctl":         "prw-------",
			"opt/app/three":       "-rw-r--r--",
			"srv/www/index.html":  "-rw-r--r--",
			"data/big":            "Lrwxrwxrwx 0:0 -> ../usr/lib/libx.so.1.0",
			"data/dir":            "-rw-r--r--",
		}
		if os.Geteuid() == 0 {
			checks["etc/secret"] = "-rw------- 1000:1000"
		}
		for p, prefix := range checks {
			if !strings.HasPrefix(got[p], prefix) {
				s.t.Errorf("%s: %q, want %q...", p, got[p], prefix)
			}
		}
		if !strings.Contains(got["usr/share/note"], `user.note="hello"`) {
			s.t.Errorf("usr/share/note lost its xattr: %q", got["usr/share/note"])
		}
		for _, p := range []string{"etc/passwd", "var/cache", "opt/app/one", "opt/app/two", "usr/lib/libx.so.1", "data/dir/inner"} {
			if _, ok := got[p]; ok {
				s.t.Errorf("%s is visible; a layer above deleted it", p)
			}
		}
		if got := s.read(dir + "/etc/hostname"); got != "middle\n" {
			s.t.Errorf("etc/hostname %q", got)
		}
	})
}

// changeSet prepares base (the image) and a container layer "ctr" with
// writes, deletes, a chmod, an opaque directory and a hard link.
func (s *suite) changeSet() (base string) {
	base = s.buildImage()
	s.must(s.d.CreateReadWrite("ctr", base, nil), "CreateReadWrite ctr")
	s.with("ctr", func(dir string) {
		s.write(dir+"/etc/hostname", "container\n", 0o644)
		s.write(dir+"/new/deep/file", Random(10000, 3), 0o600)
		s.must(os.Link(dir+"/new/deep/file", dir+"/new/link"), "link")
		s.must(os.Remove(dir+"/etc/motd"), "remove etc/motd")
		s.must(os.RemoveAll(dir+"/opt/app"), "remove opt/app")
		s.must(os.Mkdir(dir+"/opt/app", 0o700), "mkdir opt/app again")
		s.write(dir+"/opt/app/fresh", "fresh\n", 0o644)
		s.must(os.Chmod(dir+"/usr/share/note", 0o600), "chmod note")
		s.must(os.Symlink("/etc/hostname", dir+"/hostname-link"), "symlink")
	})
	return base
}

func testDiffApplyRoundTrip(s *suite) {
	base := s.changeSet()
	first := s.diff("ctr")
	s.must(s.d.Create("copy", base, nil), "Create copy")
	s.apply("copy", base, first)
	if second := s.diff("copy"); !bytes.Equal(first, second) {
		s.t.Errorf("Diff of a layer applied from Diff is not byte-identical (%d vs %d bytes):\n%s", len(first), len(second), TarDiff(s.t, first, second))
	}
	var want, got Tree
	s.with("ctr", func(dir string) { want = Snapshot(s.t, dir) })
	s.with("copy", func(dir string) { got = Snapshot(s.t, dir) })
	RequireEqual(s.t, want, got, "container layer vs. a layer applied from its diff")
}

// testRenameLowerDirectory renames a directory that lives in a lower layer
// (the union records a redirect, or copies it, or the caller gets EXDEV
// and moves it by copying, as mv does); Diff must still carry the content.
func testRenameLowerDirectory(s *suite) {
	base := s.buildImage()
	s.must(s.d.CreateReadWrite("ctr", base, nil), "CreateReadWrite ctr")
	s.with("ctr", func(dir string) { s.must(moveDir(dir+"/usr/lib", dir+"/usr/lib64"), "rename usr/lib") })
	s.must(s.d.Create("copy", base, nil), "Create copy")
	s.apply("copy", base, s.diff("ctr"))
	var want, got Tree
	s.with("ctr", func(dir string) {
		want = Snapshot(s.t, dir)
		s.absent(dir + "/usr/lib")
		s.read(dir + "/usr/lib64/libx.so.1.0")
	})
	s.with("copy", func(dir string) { got = Snapshot(s.t, dir) })
	RequireEqual(s.t, want, got, "renamed-directory layer vs. a layer applied from its diff")
}

// moveDir renames, falling back to copy-and-delete on EXDEV as mv(1) does
// (kernel overlay without redirect_dir refuses to rename a lower directory).
func moveDir(from, to string) error {
	err := os.Rename(from, to)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := copyTree(from, to); err != nil {
		return err
	}
	return os.RemoveAll(from)
}

func copyTree(from, to string) error {
	return filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		dst := to + strings.TrimPrefix(p, from)
		switch {
		case fi.IsDir():
			return os.Mkdir(dst, fi.Mode().Perm())
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err == nil {
				err = os.Symlink(target, dst)
			}
			return err
		default:
			b, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(dst, b, fi.Mode().Perm())
			}
			return err
		}
	})
}

func testChanges(s *suite) {
	base := s.changeSet()
	changes, err := s.d.Changes("ctr", base)
	s.must(err, "Changes")
	want := []string{
		"A /hostname-link",
		"A /new", "A /new/deep", "A /new/deep/file", "A /new/link",
		"C /etc", "C /etc/hostname", "D /etc/motd",
		"C /opt", "C /opt/app", "D /opt/app/three", "A /opt/app/fresh",
		"C /usr", "C /usr/share", "C /usr/share/note",
	}
	if got := changeStrings(changes); !equalStrings(got, want) {
		s.t.Errorf("Changes:\n got %v\nwant %v", got, want)
	}
}

func testDiffSize(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	content := Tar(s.t,
		Entry{Name: "a", Content: Random(1000, 4)},
		Entry{Name: "d/b", Content: Random(2345, 5)},
		Entry{Name: "d/b-link", Type: '1', Linkname: "d/b"},
		Entry{Name: "s", Type: '2', Linkname: "a"},
	)
	applied := s.apply("base", "", content)
	size, err := s.d.DiffSize("base", "")
	s.must(err, "DiffSize base")
	if applied != 3345 || size != 3345 {
		s.t.Errorf("ApplyDiff said %d, DiffSize %d; want 3345 (regular files, the hard link once)", applied, size)
	}
	s.must(s.d.CreateReadWrite("ctr", "base", nil), "CreateReadWrite")
	s.with("ctr", func(dir string) {
		s.write(dir+"/new", Random(500, 6), 0o644)
		s.must(os.Remove(dir+"/a"), "remove a")
	})
	size, err = s.d.DiffSize("ctr", "base")
	s.must(err, "DiffSize ctr")
	if size != 500 {
		s.t.Errorf("DiffSize of a layer adding 500 bytes and deleting a file: %d", size)
	}
}

// testApplyRefused: a tar the store must refuse (a truncated stream, an
// entry escaping the layer) leaves the layer as it was; applying to a
// mounted layer, or to one that has a child, is refused too.
func testApplyRefused(s *suite) {
	s.must(s.d.Create("base", "", nil), "Create")
	s.apply("base", "", Tar(s.t, Entry{Name: "keep", Content: "kept"}))
	var before Tree
	s.with("base", func(dir string) { before = Snapshot(s.t, dir) })
	good := Tar(s.t, Entry{Name: "big", Content: Random(64<<10, 7)})
	for name, bad := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"dotdot":    Tar(s.t, Entry{Name: "../escape", Content: "x"}),
		"absolute":  Tar(s.t, Entry{Name: "/abs", Content: "x"}),
	} {
		if _, err := s.d.ApplyDiff("base", "", bytes.NewReader(bad)); err == nil {
			s.t.Errorf("%s tar: applied without error", name)
		}
		s.with("base", func(dir string) { RequireEqual(s.t, before, Snapshot(s.t, dir), "after a refused %s tar", name) })
	}
	s.absent(filepath.Dir(s.root) + "/escape")
	s.get("base")
	if _, err := s.d.ApplyDiff("base", "", bytes.NewReader(good)); !errors.Is(err, drivers.ErrMounted) {
		s.t.Errorf("ApplyDiff to a mounted layer: %v, want ErrMounted", err)
	}
	s.put("base")
	s.must(s.d.Create("child", "base", nil), "Create child")
	if _, err := s.d.ApplyDiff("base", "", bytes.NewReader(good)); !errors.Is(err, drivers.ErrHasChildren) {
		s.t.Errorf("ApplyDiff to a layer with a child: %v, want ErrHasChildren", err)
	}
	s.with("base", func(dir string) { RequireEqual(s.t, before, Snapshot(s.t, dir), "after refused applies") })
}

// testRestart opens a second driver on the same root: the layers are
// there with their content, and the mount made through the first driver
// is counted by the second.
func testRestart(s *suite) {
	top := s.buildImage()
	s.must(s.d.CreateReadWrite("ctr", top, nil), "CreateReadWrite")
	s.with("ctr", func(dir string) { s.write(dir+"/state", "persisted", 0o644) })
	dir := s.get("ctr")
	want := Snapshot(s.t, dir)

	again := s.open(s.t, s.root)
	for _, id := range []string{"image1", "image2", "image3", "ctr"} {
		if !again.Exists(id) {
			s.t.Errorf("after a restart, %s is gone", id)
		}
	}
	dir2, err := again.Get("ctr", "")
	s.must(err, "Get through the reopened driver")
	RequireEqual(s.t, want, Snapshot(s.t, dir2), "the layer through the reopened driver")
	s.must(again.Put("ctr"), "Put through the reopened driver")
	s.must(again.Put("ctr"), "Put of the first driver's Get, through the reopened one")
	if err := again.Put("ctr"); !errors.Is(err, drivers.ErrNotMounted) {
		s.t.Errorf("a Put too many after a restart: %v", err)
	}
	s.must(again.Cleanup(), "Cleanup of the reopened driver")
}

func changeStrings(changes []archive.Change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.String()
	}
	return out
}

func equalStrings(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// TarDiff describes two layer tars side by side (member headers), for a
// failure message.
func TarDiff(t testing.TB, a, b []byte) string {
	la, lb := TarListing(t, a), TarListing(t, b)
	var out []string
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		mark := "  "
		if x != y {
			mark = "! "
		}
		out = append(out, fmt.Sprintf("%s%-60s | %s", mark, x, y))
	}
	return strings.Join(out, "\n")
}

// TarListing is one line per member of a tar: name, type, mode, owner,
// size, link target, PAX records, content hash.
func TarListing(t testing.TB, b []byte) []string {
	t.Helper()
	lines, err := tarListing(b)
	if err != nil {
		t.Fatalf("reading a layer tar: %v", err)
	}
	return lines
}

// BuildStrata builds the strata command into dir and returns its path,
// for tests of the fuse backend (Options.StrataBinary). It runs the go
// command that runs the tests (go test puts its GOROOT/bin first on PATH).
func BuildStrata(dir string) (string, error) {
	bin := filepath.Join(dir, "strata")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/strata-fs/strata/cmd/strata").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building strata: %v\n%s", err, out)
	}
	return bin, nil
}
