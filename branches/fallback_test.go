package branches

// The overlay-whiteout fallback (docs/UNION-SEMANTICS.md,
// "Whiteout formats"): when mknod of a char 0/0 is refused, the stack
// switches to aufs whiteouts, says so once, and leaves nothing behind. Root
// may always mknod, so the refusal is injected through the
// FallbackWriter's Mknod.

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// fallbackStack is an overlay-syntax stack writing overlay whiteouts over
// one lower branch, whose mknod of whiteouts fails with EPERM. It counts
// the overlay attempts.
type fallbackStack struct {
	s                  *Stack
	upper, lower, work string
	overlayTries       atomic.Int32
	log                *syncBuffer
	denyWith           error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func writeTree(t *testing.T, root string, spec ...string) {
	t.Helper()
	for _, line := range spec {
		p := filepath.Join(root, strings.TrimSuffix(line, "/"))
		if strings.HasSuffix(line, "/") {
			testutil.Mkdirs(t, p)
			continue
		}
		testutil.WriteFile(t, p, line)
	}
}

// newFallbackStack builds the stack; denyWith is what the overlay form of
// a whiteout fails with (nil: EPERM, as mknod answers).
func newFallbackStack(t *testing.T, denyWith error, upper, lower []string) *fallbackStack {
	t.Helper()
	base := t.TempDir()
	f := &fallbackStack{
		upper: filepath.Join(base, "upper"), lower: filepath.Join(base, "lower"), work: filepath.Join(base, "work"),
		log: &syncBuffer{}, denyWith: denyWith,
	}
	for _, d := range []string{f.upper, f.lower, f.work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeTree(t, f.upper, upper...)
	writeTree(t, f.lower, lower...)
	o, err := ParseOptions([]string{fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", f.lower, f.upper, f.work)})
	if err != nil {
		t.Fatal(err)
	}
	o.Whiteout = whiteout.Overlay
	o.Logger = log.New(f.log, "", 0) // the stack says what it does here, not on the standard logger
	if f.s, err = Open(o, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.s.Close() })
	f.s.w.wo.Mknod = func(w whiteout.Writer, dirFD int, name string) error {
		if w.Format != whiteout.Overlay {
			return w.Whiteout(dirFD, name)
		}
		f.overlayTries.Add(1)
		if f.denyWith != nil {
			return f.denyWith
		}
		return fmt.Errorf("whiteout %s: %w: %v", name, whiteout.ErrWhiteoutDenied, unix.EPERM)
	}
	return f
}

func (f *fallbackStack) resolve(t *testing.T, p string) *Entry {
	t.Helper()
	e, err := f.s.Resolve(p)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", p, err)
	}
	return e
}

// upperObjects lists the upper branch: relative path -> "char 0/0",
// "file", "dir", with " opaque" for an overlay.opaque=y directory.
func (f *fallbackStack) upperObjects(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(f.upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(f.upper, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		switch {
		case whiteout.IsCharWhiteout(&st):
			out[rel] = "char 0/0"
		case fi.IsDir():
			out[rel] = "dir"
			for _, ns := range whiteout.OverlayNamespaces {
				if v, err := unix.Lgetxattr(p, ns+"overlay.opaque", make([]byte, 8)); err == nil && v > 0 {
					out[rel] += " opaque"
				}
			}
		default:
			out[rel] = "file"
		}
		return nil
	})
	return out
}

func (f *fallbackStack) checkUpper(t *testing.T, want map[string]string) {
	t.Helper()
	got := f.upperObjects(t)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("upper %s: %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("upper holds an unexpected %s (%s)", k, v)
		}
	}
}

func (f *fallbackStack) checkWorkdirEmpty(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.work, "strata"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("workdir holds a leftover %q", e.Name())
	}
}

func (f *fallbackStack) checkLoggedOnce(t *testing.T) {
	t.Helper()
	if n := strings.Count(f.log.String(), "overlay whiteouts are not permitted"); n != 1 {
		t.Errorf("the fallback was logged %d times, want once; log:\n%s", n, f.log.String())
	}
	if n := f.overlayTries.Load(); n != 1 {
		t.Errorf("the overlay form was tried %d times, want once", n)
	}
}

func (f *fallbackStack) gone(t *testing.T, p string) {
	t.Helper()
	if _, err := f.s.Resolve(p); !errors.Is(err, ErrNotExist) {
		t.Errorf("Resolve(%s) = %v, want ErrNotExist", p, err)
	}
}

// TestWhiteoutFallbackFirstRemove: the first whiteout (of a lower-only
// file) falls back; every later marker is in aufs form.
func TestWhiteoutFallbackFirstRemove(t *testing.T) {
	f := newFallbackStack(t, nil, []string{"d/both"}, []string{"d/lf", "d/both", "d/rf", "d/full/x", "d/ld/"})
	d := f.resolve(t, "d")
	if err := f.s.Remove(d, "lf", false); err != nil {
		t.Fatalf("Remove(lf): %v", err)
	}
	f.gone(t, "d/lf")
	f.checkUpper(t, map[string]string{".": "dir", "d": "dir", "d/both": "file", "d/.wh.lf": "file"})
	f.checkWorkdirEmpty(t)

	// Later removals, renames and directories over whiteouts: aufs form.
	steps := []struct {
		name string
		do   func() error
	}{
		{"unlink both", func() error { return f.s.Remove(f.resolve(t, "d"), "both", false) }},
		{"rename rf", func() error { return f.s.Rename(f.resolve(t, "d"), "rf", f.resolve(t, "d"), "moved", 0) }},
		{"unlink full/x", func() error { return f.s.Remove(f.resolve(t, "d/full"), "x", false) }},
		{"rmdir full", func() error { return f.s.Remove(f.resolve(t, "d"), "full", true) }},
		{"mkdir full", func() error {
			_, _, err := f.s.Create(f.resolve(t, "d"), "full", NewObject{Mode: unix.S_IFDIR | 0o755})
			return err
		}},
		{"rmdir ld", func() error { return f.s.Remove(f.resolve(t, "d"), "ld", true) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		f.checkWorkdirEmpty(t)
	}
	for _, p := range []string{"d/lf", "d/both", "d/rf", "d/ld"} {
		f.gone(t, p)
	}
	if names, err := f.s.Names(f.resolve(t, "d/full")); err != nil || len(names) != 0 {
		t.Errorf("the new d/full shows %v, %v; want nothing", names, err)
	}
	f.checkUpper(t, map[string]string{
		".": "dir", "d": "dir", "d/.wh.lf": "file", "d/.wh.both": "file", "d/.wh.rf": "file", "d/moved": "file",
		"d/full": "dir", "d/full/.wh..wh..opq": "file", "d/.wh.ld": "file",
	})
	f.checkLoggedOnce(t)
}

// TestWhiteoutFallbackFirstReplace: the first whiteout replaces an upper
// object (the overlay path builds it in the workdir and exchanges); the
// fallback happens there and leaves nothing in the workdir.
func TestWhiteoutFallbackFirstReplace(t *testing.T) {
	for _, isDir := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", isDir), func(t *testing.T) {
			upper, lower := []string{"d/both"}, []string{"d/both"}
			if isDir {
				upper, lower = []string{"d/both/"}, []string{"d/both/"}
			}
			f := newFallbackStack(t, nil, upper, lower)
			if err := f.s.Remove(f.resolve(t, "d"), "both", isDir); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			f.gone(t, "d/both")
			f.checkUpper(t, map[string]string{".": "dir", "d": "dir", "d/.wh.both": "file"})
			f.checkWorkdirEmpty(t)
			f.checkLoggedOnce(t)
		})
	}
}

// TestWhiteoutFallbackConcurrent: many removals racing for the first
// whiteout fall back once.
func TestWhiteoutFallbackConcurrent(t *testing.T) {
	var lower []string
	for i := range 16 {
		lower = append(lower, fmt.Sprintf("d/f%d", i))
	}
	f := newFallbackStack(t, nil, []string{"d/"}, lower)
	d := f.resolve(t, "d")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range 16 {
		wg.Go(func() { errs[i] = f.s.Remove(d, fmt.Sprintf("f%d", i), false) })
	}
	wg.Wait()
	want := map[string]string{".": "dir", "d": "dir"}
	for i, err := range errs {
		if err != nil {
			t.Errorf("Remove(f%d): %v", i, err)
		}
		want[fmt.Sprintf("d/.wh.f%d", i)] = "file"
	}
	f.checkUpper(t, want)
	f.checkWorkdirEmpty(t)
	if n := strings.Count(f.log.String(), "overlay whiteouts are not permitted"); n != 1 {
		t.Errorf("the fallback was logged %d times, want once; log:\n%s", n, f.log.String())
	}
}

// TestWhiteoutFallbackOtherErrors: an error other than a refused mknod is
// returned, and does not switch the format.
func TestWhiteoutFallbackOtherErrors(t *testing.T) {
	testutil.SkipUnlessRoot(t, "mknod of a char 0/0 after the injected error")
	f := newFallbackStack(t, fmt.Errorf("whiteout: %w", unix.EIO), []string{"d/"}, []string{"d/lf"})
	if err := f.s.Remove(f.resolve(t, "d"), "lf", false); !errors.Is(err, unix.EIO) {
		t.Errorf("Remove = %v, want EIO", err)
	}
	if f.log.String() != "" {
		t.Errorf("logged %q", f.log.String())
	}
	f.denyWith = nil
	f.s.w.wo.Mknod = nil // the real mknod: root may make char 0/0
	if err := f.s.Remove(f.resolve(t, "d"), "lf", false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	f.checkUpper(t, map[string]string{".": "dir", "d": "dir", "d/lf": "char 0/0"})
	f.checkWorkdirEmpty(t)
}
