package branches_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// Stack.Generation must change after every operation that can make an
// entry resolved before it stale, and only then (the FUSE nodes resolve
// again when it changes; a change too many costs a walk from the root, a
// change missed serves a stale copy).
func TestGeneration(t *testing.T) {
	file := branches.NewObject{Mode: unix.S_IFREG | 0o644}
	cases := []struct {
		name    string
		op      func(t *testing.T, w *wstack) error
		changes bool
	}{
		{"create in an upper dir", func(t *testing.T, w *wstack) error {
			_, fd, err := w.s.Create(w.resolve(t, "up"), "n", file)
			unix.Close(fd)
			return err
		}, false},
		{"create in a lower-only dir (copies the dir up)", func(t *testing.T, w *wstack) error {
			_, fd, err := w.s.Create(w.resolve(t, "low"), "n", file)
			unix.Close(fd)
			return err
		}, true},
		{"setattr of an upper file", func(t *testing.T, w *wstack) error {
			m := uint32(0o600)
			_, err := w.s.Setattr(w.resolve(t, "up/f"), branches.SetAttr{Mode: &m})
			return err
		}, false},
		{"setattr of a lower file (copy-up)", func(t *testing.T, w *wstack) error {
			m := uint32(0o600)
			_, err := w.s.Setattr(w.resolve(t, "low/f"), branches.SetAttr{Mode: &m})
			return err
		}, true},
		{"unlink of an upper file's only name", func(t *testing.T, w *wstack) error {
			return w.s.Remove(w.resolve(t, "up"), "f", false)
		}, false},
		{"unlink of a lower file (whiteout in an upper dir)", func(t *testing.T, w *wstack) error {
			return w.s.Remove(w.resolve(t, "up"), "lf", false)
		}, false},
		{"unlink of one of two names (b's entry stays right)", func(t *testing.T, w *wstack) error {
			return w.s.Remove(w.resolve(t, "up"), "a", false)
		}, false},
		{"rmdir", func(t *testing.T, w *wstack) error {
			return w.s.Remove(w.resolve(t, "up"), "empty", true)
		}, true},
		{"rename of an upper file", func(t *testing.T, w *wstack) error {
			return w.s.Rename(w.resolve(t, "up"), "f", w.resolve(t, "up"), "g", 0)
		}, true},
	}
	for _, wd := range writeDialects {
		for _, c := range cases {
			t.Run(wd.name+"/"+c.name, func(t *testing.T) {
				w := newWStack(t, wd, []string{"up/f=u", "up/a=1", "up/b => up/a", "up/empty/"},
					[]string{"up/lf=l", "low/f=l"})
				before := w.s.Generation()
				if err := c.op(t, w); err != nil {
					t.Fatal(err)
				}
				if got := w.s.Generation() != before; got != c.changes {
					t.Errorf("Generation changed: %v, want %v", got, c.changes)
				}
			})
		}
	}
}

// The stack caches directory descriptors by path; a descriptor follows its
// directory, so after a rename the cache must not answer the old path with
// the moved directory.
func TestDirDescriptorsFollowRenames(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, []string{"a/b/x=1"}, []string{"l/"})
			if _, err := w.s.Lookup(w.resolve(t, "a/b"), "x"); err != nil {
				t.Fatal(err) // a/b's descriptor is cached now
			}
			if err := w.s.Rename(w.resolve(t, "a"), "b", w.resolve(t, "a"), "c", 0); err != nil {
				t.Fatal(err)
			}
			_, _, err := w.s.Create(w.resolve(t, "a"), "b", branches.NewObject{Mode: unix.S_IFDIR | 0o755})
			if err != nil {
				t.Fatal(err)
			}
			if e, err := w.s.Lookup(w.resolve(t, "a/b"), "x"); err == nil {
				t.Errorf("a/b/x after renaming a/b to a/c and making a new a/b: found %s", e.Layers[0].Path)
			}
			if _, err := w.s.Lookup(w.resolve(t, "a/c"), "x"); err != nil {
				t.Errorf("a/c/x: %v", err)
			}
		})
	}
}

// SetattrOpen changes an upper copy through the open descriptor, even when
// the name now leads to another object, and refuses to copy up a lower
// copy whose name is gone (the copy would bring the name back).
func TestSetattrOpen(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, []string{"d/u=upper"}, []string{"d/l=lower"})
			u := w.resolve(t, "d/u")
			_, fd, _, err := w.s.Open(u, unix.O_RDWR)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			testutil.Must(t, w.s.Remove(w.resolve(t, "d"), "u", false))
			_, nfd, err := w.s.Create(w.resolve(t, "d"), "u", branches.NewObject{Mode: unix.S_IFREG | 0o600})
			testutil.Must(t, err)
			unix.Close(nfd)
			mode, size := uint32(0o751), int64(2)
			e, err := w.s.SetattrOpen(u, fd, branches.SetAttr{Mode: &mode, Size: &size})
			testutil.Must(t, err)
			if e.St.Mode&0o7777 != 0o751 || e.St.Size != 2 {
				t.Errorf("open file after SetattrOpen: mode %o size %d, want 751 and 2", e.St.Mode&0o7777, e.St.Size)
			}
			if now := w.resolve(t, "d/u"); now.St.Mode&0o7777 != 0o600 || now.St.Size != 0 {
				t.Errorf("the new d/u changed: mode %o size %d", now.St.Mode&0o7777, now.St.Size)
			}

			l := w.resolve(t, "d/l")
			_, lfd, _, err := w.s.Open(l, unix.O_RDONLY)
			testutil.Must(t, err)
			defer unix.Close(lfd)
			testutil.Must(t, w.s.Remove(w.resolve(t, "d"), "l", false))
			if _, err := w.s.SetattrOpen(l, lfd, branches.SetAttr{Mode: &mode}); !errors.Is(err, unix.ENOENT) {
				t.Errorf("SetattrOpen of an unlinked lower file = %v, want ENOENT", err)
			}
			if e, err := w.s.Resolve("d/l"); err == nil {
				t.Errorf("d/l came back, served by %s", e.Top().Branch.Name())
			}
		})
	}
}

// TestCopyUpOfStaleEntry copies up an entry resolved before its directory
// was renamed and a new directory took the old name: the copy must not
// land in the new directory (a FUSE node's entry is refreshed only after
// the rename's tree update, so a copy-up can meet such an entry).
func TestCopyUpOfStaleEntry(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, nil, []string{"a/x=lower"})
			stale := w.resolve(t, "a/x")
			if err := w.s.Rename(w.resolve(t, "."), "a", w.resolve(t, "."), "b", 0); err != nil {
				t.Fatal(err)
			}
			if _, _, err := w.s.Create(w.resolve(t, "."), "a", branches.NewObject{Mode: unix.S_IFDIR | 0o755}); err != nil {
				t.Fatal(err)
			}
			before := w.union(t)
			if _, err := w.s.CopyUp(stale); !errors.Is(err, unix.ENOENT) {
				t.Errorf("CopyUp of a/x resolved before a was renamed: %v, want ENOENT", err)
			}
			diffMaps(t, "union", before, w.union(t))
		})
	}
}
