package branches_test

// Tests of the write path (docs/UNION-SEMANTICS.md, "Copy-up",
// "Removal and rename", "Identity") for both written dialects. Each
// operation runs against every state of its target (lower-only, upper-only,
// in both, whited out in each read dialect, under an opaque parent, copied
// up) and is checked three ways: the union view, the exact markers left in
// the raw upper branch, and the lower branches and the workdir (untouched,
// empty).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

func TestWriteCreateMatrix(t *testing.T) {
	kinds := []struct {
		name string
		obj  branches.NewObject
		want string // union description of the new object
	}{
		{"file", branches.NewObject{Mode: unix.S_IFREG | 0o640, Uid: 1234, Gid: 5678, OpenFlags: unix.O_RDWR},
			`file 0640 1234:5678 "new"`},
		{"mkdir", branches.NewObject{Mode: unix.S_IFDIR | 0o750, Uid: 1234, Gid: 5678}, "dir 0750 1234:5678"},
		{"fifo", branches.NewObject{Mode: unix.S_IFIFO | 0o604, Uid: 1234, Gid: 5678}, "fifo 0604 1234:5678"},
		{"symlink", branches.NewObject{Mode: unix.S_IFLNK | 0o777, Target: "../some/target", Uid: 1234, Gid: 5678},
			"symlink 0777 1234:5678 -> ../some/target"},
	}
	for _, wd := range writeDialects {
		// The lower copy under a whiteout is a directory with an entry, so
		// a directory made over it must be opaque to keep it hidden.
		for _, st := range targetStates("d", "n", fullDirObj, readDialects) {
			for _, k := range kinds {
				t.Run(wd.name+"/"+st.name+"/"+k.name, func(t *testing.T) {
					w := openStates(t, wd, []string{"d/n"}, st)
					before, beforeM, beforeUp := w.union(t), w.markers(t), w.upperSnap(t)
					e, fd, err := w.s.Create(w.resolve(t, "d"), "n", k.obj)
					if fd >= 0 && k.name == "file" {
						if _, werr := unix.Write(fd, []byte("new")); werr != nil {
							t.Errorf("write to the new file: %v", werr)
						}
					}
					if fd >= 0 {
						unix.Close(fd)
					}
					defer w.check(t)
					if st.visible {
						if !errors.Is(err, unix.EEXIST) {
							t.Fatalf("Create over a visible name = %v, want EEXIST", err)
						}
						if got := w.upperSnap(t); got != beforeUp {
							t.Errorf("a refused Create changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
						}
						return
					}
					if err != nil {
						t.Fatalf("Create: %v", err)
					}
					if k.name == "file" && fd < 0 {
						t.Errorf("Create of a file returned no descriptor")
					}
					if k.name != "file" && fd >= 0 {
						t.Errorf("Create of a %s returned descriptor %d", k.name, fd)
					}
					if e.Path != "d/n" || e.Top().Branch != w.s.Upper() {
						t.Errorf("Create returned %s in %s", e.Path, e.Top().Branch.Name())
					}
					if got := w.inUpper(t, "d/n"); got.Ino != e.Ino {
						t.Errorf("Ino %d from Create, %d from Resolve", e.Ino, got.Ino)
					} else if !slices.Equal(layerIndexes(got), layerIndexes(e)) || got.St.Ino != e.St.Ino || got.St.Mode != e.St.Mode || got.Layers[0].Path != e.Layers[0].Path {
						t.Errorf("Create returned layers %v (%s, mode %o), Resolve %v (%s, mode %o)",
							layerIndexes(e), e.Layers[0].Path, e.St.Mode, layerIndexes(got), got.Layers[0].Path, got.St.Mode)
					}
					want := maps.Clone(before)
					want["d/n"] = k.want
					diffMaps(t, "union", want, w.union(t))
					wantM := maps.Clone(beforeM)
					delete(wantM, "WH:d/n")
					if k.name == "mkdir" && st.lowerShows {
						wantM["OPQ:d/n"] = wd.opqForm()
					}
					diffMaps(t, "upper markers", wantM, w.markers(t))
				})
			}
		}
	}
}

func TestWriteRemoveMatrix(t *testing.T) {
	for _, wd := range writeDialects {
		for _, isDir := range []bool{false, true} {
			op, k := "unlink", fileObj
			if isDir {
				op, k = "rmdir", emptyDirObj
			}
			for _, st := range targetStates("d", "n", k, readDialects) {
				t.Run(wd.name+"/"+op+"/"+st.name, func(t *testing.T) {
					w := openStates(t, wd, []string{"d/n"}, st)
					before, beforeM, beforeUp := w.union(t), w.markers(t), w.upperSnap(t)
					err := w.s.Remove(w.resolve(t, "d"), "n", isDir)
					defer w.check(t)
					if !st.visible {
						if !errors.Is(err, fs.ErrNotExist) {
							t.Fatalf("Remove of a name the union does not show = %v, want ENOENT", err)
						}
						if got := w.upperSnap(t); got != beforeUp {
							t.Errorf("a refused Remove changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
						}
						return
					}
					if err != nil {
						t.Fatalf("Remove: %v", err)
					}
					w.gone(t, "d/n")
					want := maps.Clone(before)
					withoutPrefix(want, "d/n")
					diffMaps(t, "union", want, w.union(t))
					wantM := maps.Clone(beforeM)
					withoutPrefix(wantM, "d/n")
					if st.lowerShows {
						wantM["WH:d/n"] = wd.whForm()
					}
					diffMaps(t, "upper markers", wantM, w.markers(t))
				})
			}
		}
	}
}

func TestWriteRemoveWrongType(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, []string{"d/uf=u", "d/ud/"}, []string{"d/lf=l", "d/ld/"})
			beforeUp := w.upperSnap(t)
			d := w.resolve(t, "d")
			for _, name := range []string{"uf", "lf"} {
				if err := w.s.Remove(d, name, true); !errors.Is(err, unix.ENOTDIR) {
					t.Errorf("rmdir of file %s = %v, want ENOTDIR", name, err)
				}
			}
			for _, name := range []string{"ud", "ld"} {
				if err := w.s.Remove(d, name, false); !errors.Is(err, unix.EISDIR) {
					t.Errorf("unlink of dir %s = %v, want EISDIR", name, err)
				}
			}
			if got := w.upperSnap(t); got != beforeUp {
				t.Errorf("refused removals changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
			}
			w.check(t)
		})
	}
}

// TestWriteRmdirMerged removes directories whose entries come from several
// branches: ENOTEMPTY while any branch still shows an entry, success when
// every lower entry is whited out or hidden by an opaque copy.
func TestWriteRmdirMerged(t *testing.T) {
	cases := []struct {
		name     string
		upper    []string
		lowers   [][]string
		notEmpty bool
	}{
		{"lower child", nil, [][]string{{"d/c=x"}}, true},
		{"empty upper, lower child", []string{"d/"}, [][]string{{"d/c=x"}}, true},
		{"upper child", []string{"d/c=x"}, [][]string{{"d/"}}, true},
		{"child in second lower", nil, [][]string{{"d/"}, {"d/c=x"}}, true},
		{"lower dir child", []string{"d/"}, [][]string{{"d/sub/"}}, true},
		{"one of two lower children whited out", []string{"d/", "WH:d/c"}, [][]string{{"d/c=x", "d/e=y"}}, true},
		{"whiteout in lower1 only hides lower2", []string{"d/"}, [][]string{{"d/c=x", "WH:d/e"}, {"d/e=y", "d/c=z", "d/g=w"}}, true},
		{"all lower children whited out", []string{"d/", "WH:d/c", "WH:d/e"}, [][]string{{"d/c=x", "d/e/", "d/e/deep=1"}}, false},
		{"whiteouts over two lowers", []string{"d/", "WH:d/c"}, [][]string{{"d/c=x", "WH:d/e"}, {"d/e=y", "d/c=z"}}, false},
		{"lower children whited out in lower1", nil, [][]string{{"d/", "WH:d/c"}, {"d/c=x"}}, false},
		{"opaque upper", []string{"OPQ:d"}, [][]string{{"d/c=x"}}, false},
		{"opaque lower1", nil, [][]string{{"OPQ:d"}, {"d/c=x"}}, false},
		{"opaque lower1, lower1 child", nil, [][]string{{"OPQ:d", "d/c=x"}, {"d/e=y"}}, true},
		{"upper-only dir, lower dir elsewhere", []string{"d/"}, [][]string{{"e/"}}, false},
	}
	for _, wd := range writeDialects {
		for _, rd := range readDialects {
			for _, c := range cases {
				t.Run(wd.name+"/"+rd.name+"/"+c.name, func(t *testing.T) {
					rd.skipUnlessAble(t)
					var lowers [][]string
					for _, l := range c.lowers {
						lowers = append(lowers, rd.expand(l))
					}
					w := newWStack(t, wd, rd.expand(c.upper), lowers...)
					before, beforeM, beforeUp := w.union(t), w.markers(t), w.upperSnap(t)
					err := w.s.Remove(w.resolve(t, "."), "d", true)
					defer w.check(t)
					if c.notEmpty {
						if !errors.Is(err, unix.ENOTEMPTY) {
							t.Fatalf("rmdir = %v, want ENOTEMPTY", err)
						}
						if got := w.upperSnap(t); got != beforeUp {
							t.Errorf("a refused rmdir changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
						}
						return
					}
					if err != nil {
						t.Fatalf("rmdir: %v", err)
					}
					w.gone(t, "d")
					want := maps.Clone(before)
					withoutPrefix(want, "d")
					diffMaps(t, "union", want, w.union(t))
					wantM := maps.Clone(beforeM)
					withoutPrefix(wantM, "d")
					if c.name != "upper-only dir, lower dir elsewhere" {
						wantM["WH:d"] = wd.whForm()
					}
					diffMaps(t, "upper markers", wantM, w.markers(t))
				})
			}
		}
	}
}

// visibleStates keeps the states in which the union shows the target.
func visibleStates(sts []tstate) []tstate {
	var out []tstate
	for _, st := range sts {
		if st.visible {
			out = append(out, st)
		}
	}
	return out
}

func TestWriteSetattrMatrix(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	ts := func(sec, nsec int64) *unix.Timespec { return &unix.Timespec{Sec: sec, Nsec: nsec} }
	changes := []struct {
		name string
		a    branches.SetAttr
	}{
		{"mode", branches.SetAttr{Mode: u32(0o4751)}},
		{"owner", branches.SetAttr{Uid: u32(1234), Gid: u32(5678)}},
		{"uid", branches.SetAttr{Uid: u32(4321)}},
		{"size", branches.SetAttr{Size: i64(2)}},
		{"grow", branches.SetAttr{Size: i64(9)}},
		{"times", branches.SetAttr{Atime: ts(1000, 1), Mtime: ts(2000, 5)}},
		{"mtime", branches.SetAttr{Mtime: ts(3000, 0)}},
	}
	for _, wd := range writeDialects {
		for _, st := range visibleStates(targetStates("d", "n", fileObj, readDialects)) {
			for _, c := range changes {
				t.Run(wd.name+"/"+st.name+"/"+c.name, func(t *testing.T) {
					w := openStates(t, wd, []string{"d/n"}, st)
					before, beforeM := w.union(t), w.markers(t)
					orig := w.resolve(t, "d/n")
					data, err := fs.ReadFile(w.s.FS(), "d/n")
					if err != nil {
						t.Fatal(err)
					}
					got, err := w.s.Setattr(orig, c.a)
					if err != nil {
						t.Fatalf("Setattr: %v", err)
					}
					defer w.check(t)
					now := w.inUpper(t, "d/n")
					for _, e := range []*branches.Entry{got, now} {
						if e.Top().Branch != w.s.Upper() {
							t.Errorf("Setattr left d/n in %s", e.Top().Branch.Name())
						}
						if e.Ino != orig.Ino {
							t.Errorf("Ino %d after Setattr, was %d", e.Ino, orig.Ino)
						}
					}
					wantSt := orig.St
					if c.a.Mode != nil {
						wantSt.Mode = wantSt.Mode&^0o7777 | *c.a.Mode
					}
					if c.a.Uid != nil {
						wantSt.Uid = *c.a.Uid
					}
					if c.a.Gid != nil {
						wantSt.Gid = *c.a.Gid
					}
					if c.a.Size != nil {
						wantSt.Size = *c.a.Size
						data = append(data, make([]byte, max(0, int(*c.a.Size)-len(data)))...)[:*c.a.Size]
					}
					if c.a.Atime != nil {
						wantSt.Atim = *c.a.Atime
					}
					if c.a.Mtime != nil {
						wantSt.Mtim = *c.a.Mtime
					}
					if now.St.Mode != wantSt.Mode || now.St.Uid != wantSt.Uid || now.St.Gid != wantSt.Gid || now.St.Size != wantSt.Size {
						t.Errorf("after Setattr: mode %o uid %d gid %d size %d; want mode %o uid %d gid %d size %d",
							now.St.Mode, now.St.Uid, now.St.Gid, now.St.Size, wantSt.Mode, wantSt.Uid, wantSt.Gid, wantSt.Size)
					}
					if got.St.Mode != now.St.Mode || got.St.Size != now.St.Size || got.St.Uid != now.St.Uid {
						t.Errorf("Setattr returned stale attributes: mode %o size %d uid %d, the union has %o %d %d",
							got.St.Mode, got.St.Size, got.St.Uid, now.St.Mode, now.St.Size, now.St.Uid)
					}
					// Copy-up keeps the times; a size change sets mtime to now.
					if c.a.Size == nil && now.St.Mtim != wantSt.Mtim {
						t.Errorf("mtime %v, want %v", now.St.Mtim, wantSt.Mtim)
					}
					if c.a.Atime != nil && now.St.Atim != wantSt.Atim {
						t.Errorf("atime %v, want %v", now.St.Atim, wantSt.Atim)
					}
					want := maps.Clone(before)
					want["d/n"] = fmt.Sprintf("file %04o %d:%d %q", wantSt.Mode&0o7777, wantSt.Uid, wantSt.Gid, data)
					diffMaps(t, "union", want, w.union(t))
					diffMaps(t, "upper markers", beforeM, w.markers(t))
				})
			}
		}
	}
}

// TestWriteSetattrDir changes a lower directory: only the directory is
// copied up, its entries keep showing from below.
func TestWriteSetattrDir(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, nil, []string{"d/a=1", "d/sub/b=2"})
			before := w.union(t)
			orig := w.resolve(t, "d")
			mode := uint32(0o700)
			if _, err := w.s.Setattr(orig, branches.SetAttr{Mode: &mode}); err != nil {
				t.Fatal(err)
			}
			defer w.check(t)
			d := w.inUpper(t, "d")
			if d.Ino != orig.Ino {
				t.Errorf("dir Ino %d after Setattr, was %d", d.Ino, orig.Ino)
			}
			want := maps.Clone(before)
			want["d"] = "dir 0700 0:0"
			diffMaps(t, "union", want, w.union(t))
			entries, err := os.ReadDir(filepath.Join(w.upper, "d"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("copy-up of a directory copied its entries: %v", entries)
			}
			diffMaps(t, "upper markers", map[string]string{}, w.markers(t))
		})
	}
}

// setFileXattrs sets user.keep and user.drop on every real copy of p in
// every branch of w (a prep function).
func setFileXattrs(p string) func(w *wstack) {
	return func(w *wstack) {
		for _, root := range append([]string{w.upper}, w.lowers...) {
			var st unix.Stat_t
			full := filepath.Join(root, p)
			if unix.Lstat(full, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
				continue
			}
			for _, a := range []string{"user.keep", "user.drop"} {
				if err := unix.Lsetxattr(full, a, []byte("1"), 0); err != nil {
					panic(err)
				}
			}
		}
	}
}

func TestWriteXattrMatrix(t *testing.T) {
	refused := []string{
		"trusted.overlay.opaque", "user.overlay.opaque", "trusted.overlay.redirect",
		"user.overlay.whiteout", "user.strata.ino", "trusted.strata.ino",
	}
	for _, wd := range writeDialects {
		for _, st := range visibleStates(targetStates("d", "n", fileObj, readDialects)) {
			open := func(t *testing.T) (*wstack, *branches.Entry, map[string]string) {
				w := openStatesPrep(t, wd, setFileXattrs("d/n"), []string{"d/n"}, st)
				return w, w.resolve(t, "d/n"), w.markers(t)
			}
			t.Run(wd.name+"/"+st.name+"/set", func(t *testing.T) {
				w, e, beforeM := open(t)
				before := w.union(t)
				up, err := w.s.Setxattr(e, "user.test", []byte("v"), 0)
				if err != nil {
					t.Fatalf("Setxattr: %v", err)
				}
				defer w.check(t)
				if up.Top().Branch != w.s.Upper() {
					t.Errorf("Setxattr did not copy up")
				}
				now := w.inUpper(t, "d/n")
				if now.Ino != e.Ino {
					t.Errorf("Ino %d after Setxattr, was %d", now.Ino, e.Ino)
				}
				for a, want := range map[string]string{"user.test": "v", "user.keep": "1", "user.drop": "1"} {
					if v, err := w.s.Getxattr(now, a); err != nil || string(v) != want {
						t.Errorf("Getxattr(%s) = %q, %v; want %q", a, v, err, want)
					}
				}
				names, err := w.s.Listxattr(now)
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(names)
				if want := []string{"user.drop", "user.keep", "user.test"}; !slices.Equal(names, want) {
					t.Errorf("Listxattr = %q, want %q (no union attributes)", names, want)
				}
				diffMaps(t, "union", before, w.union(t))
				diffMaps(t, "upper markers", beforeM, w.markers(t))
			})
			t.Run(wd.name+"/"+st.name+"/remove", func(t *testing.T) {
				w, e, beforeM := open(t)
				up, err := w.s.Removexattr(e, "user.drop")
				if err != nil {
					t.Fatalf("Removexattr: %v", err)
				}
				defer w.check(t)
				if up.Top().Branch != w.s.Upper() {
					t.Errorf("Removexattr did not copy up")
				}
				now := w.inUpper(t, "d/n")
				if now.Ino != e.Ino {
					t.Errorf("Ino %d after Removexattr, was %d", now.Ino, e.Ino)
				}
				if v, err := w.s.Getxattr(now, "user.drop"); !errors.Is(err, unix.ENODATA) {
					t.Errorf("Getxattr(user.drop) after removal = %q, %v; want ENODATA", v, err)
				}
				if v, err := w.s.Getxattr(now, "user.keep"); err != nil || string(v) != "1" {
					t.Errorf("Getxattr(user.keep) = %q, %v", v, err)
				}
				diffMaps(t, "upper markers", beforeM, w.markers(t))
			})
			t.Run(wd.name+"/"+st.name+"/refused", func(t *testing.T) {
				w, e, _ := open(t)
				beforeUp := w.upperSnap(t)
				for _, a := range refused {
					if _, err := w.s.Setxattr(e, a, []byte("y"), 0); !errors.Is(err, unix.EOPNOTSUPP) {
						t.Errorf("Setxattr(%s) = %v, want EOPNOTSUPP", a, err)
					}
					if _, err := w.s.Removexattr(e, a); !errors.Is(err, unix.EOPNOTSUPP) {
						t.Errorf("Removexattr(%s) = %v, want EOPNOTSUPP", a, err)
					}
				}
				if _, err := w.s.Removexattr(e, "user.missing"); !errors.Is(err, unix.ENODATA) {
					t.Errorf("Removexattr(user.missing) = %v, want ENODATA", err)
				}
				if got := w.upperSnap(t); got != beforeUp {
					t.Errorf("refused xattr writes changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
				}
				w.check(t)
			})
		}
	}
}

func TestWriteOpenWriteMatrix(t *testing.T) {
	for _, wd := range writeDialects {
		for _, st := range visibleStates(targetStates("d", "n", fileObj, readDialects)) {
			t.Run(wd.name+"/"+st.name+"/rdwr", func(t *testing.T) {
				w := openStates(t, wd, []string{"d/n"}, st)
				before, beforeM := w.union(t), w.markers(t)
				e := w.resolve(t, "d/n")
				old, err := fs.ReadFile(w.s.FS(), "d/n")
				if err != nil {
					t.Fatal(err)
				}
				up, fd, err := w.s.OpenWrite(e, unix.O_RDWR)
				if err != nil {
					t.Fatalf("OpenWrite: %v", err)
				}
				f := os.NewFile(uintptr(fd), "d/n")
				got, err := io.ReadAll(f)
				if err != nil || string(got) != string(old) {
					t.Errorf("the copy reads %q, %v; want %q", got, err, old)
				}
				if _, err := f.Write([]byte("+w")); err != nil {
					t.Error(err)
				}
				f.Close()
				defer w.check(t)
				if up.Top().Branch != w.s.Upper() {
					t.Errorf("OpenWrite did not copy up")
				}
				now := w.inUpper(t, "d/n")
				if now.Ino != e.Ino {
					t.Errorf("Ino %d after OpenWrite, was %d", now.Ino, e.Ino)
				}
				want := maps.Clone(before)
				want["d/n"] = strings.TrimSuffix(before["d/n"], fmt.Sprintf("%q", old)) + fmt.Sprintf("%q", string(old)+"+w")
				diffMaps(t, "union", want, w.union(t))
				diffMaps(t, "upper markers", beforeM, w.markers(t))
			})
			t.Run(wd.name+"/"+st.name+"/trunc", func(t *testing.T) {
				w := openStates(t, wd, []string{"d/n"}, st)
				e := w.resolve(t, "d/n")
				_, fd, err := w.s.OpenWrite(e, unix.O_WRONLY|unix.O_TRUNC)
				if err != nil {
					t.Fatalf("OpenWrite: %v", err)
				}
				unix.Close(fd)
				defer w.check(t)
				if b, err := fs.ReadFile(w.s.FS(), "d/n"); err != nil || len(b) != 0 {
					t.Errorf("after O_TRUNC the union reads %q, %v", b, err)
				}
				w.inUpper(t, "d/n")
			})
			t.Run(wd.name+"/"+st.name+"/readonly", func(t *testing.T) {
				w := openStates(t, wd, []string{"d/n"}, st)
				beforeUp := w.upperSnap(t)
				e := w.resolve(t, "d/n")
				fd, err := w.s.OpenLayer(e.Top(), unix.O_RDONLY|unix.O_NOFOLLOW)
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(fd)
				if _, err := fs.ReadFile(w.s.FS(), "d/n"); err != nil {
					t.Fatal(err)
				}
				if now := w.resolve(t, "d/n"); now.Top().Branch != e.Top().Branch {
					t.Errorf("a read-only open moved d/n from %s to %s", e.Top().Branch.Name(), now.Top().Branch.Name())
				}
				if got := w.upperSnap(t); got != beforeUp {
					t.Errorf("a read-only open changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
				}
				w.check(t)
			})
		}
	}
}

// TestWriteCopyUpParents copies up a file deep in a lower branch: every
// parent is copied with its own metadata, nothing else is.
func TestWriteCopyUpParents(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStackPrep(t, wd, func(w *wstack) {
				p := filepath.Join(w.lowers[0], "a")
				if err := os.Chmod(p, 0o711); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(filepath.Join(p, "b"), 42, 43); err != nil {
					t.Fatal(err)
				}
				if err := unix.Lsetxattr(filepath.Join(p, "b"), "user.dir", []byte("b"), 0); err != nil {
					t.Fatal(err)
				}
			}, nil, []string{"a/b/c/f=deep", "a/b/sibling=s", "a/other/x=1", "a/b/l -> f"})
			before := w.union(t)
			e := w.resolve(t, "a/b/c/f")
			up, err := w.s.CopyUp(e)
			if err != nil {
				t.Fatal(err)
			}
			defer w.check(t)
			if up.Top().Branch != w.s.Upper() || up.Ino != e.Ino {
				t.Errorf("CopyUp returned %s with Ino %d (was %d)", up.Top().Branch.Name(), up.Ino, e.Ino)
			}
			diffMaps(t, "union", before, w.union(t))
			var got []string
			filepath.WalkDir(w.upper, func(p string, d fs.DirEntry, err error) error {
				rel, _ := filepath.Rel(w.upper, p)
				if strings.HasPrefix(rel, whiteout.AufsMetaPrefix) {
					return filepath.SkipDir
				}
				got = append(got, rel)
				return nil
			})
			if want := []string{".", "a", "a/b", "a/b/c", "a/b/c/f"}; !slices.Equal(got, want) {
				t.Errorf("upper holds %q, want %q", got, want)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(w.upper, "a"), &st); err != nil || st.Mode&0o7777 != 0o711 {
				t.Errorf("copied parent a: mode %o, %v; want 0711", st.Mode&0o7777, err)
			}
			if err := unix.Lstat(filepath.Join(w.upper, "a/b"), &st); err != nil || st.Uid != 42 || st.Gid != 43 {
				t.Errorf("copied parent a/b: owner %d:%d, %v; want 42:43", st.Uid, st.Gid, err)
			}
			if v, err := testutil.Getxattr(filepath.Join(w.upper, "a/b"), "user.dir"); err != nil || string(v) != "b" {
				t.Errorf("copied parent a/b: user.dir = %q, %v", v, err)
			}
		})
	}
}

// TestWriteReservedNames: names starting ".wh." cannot be made through the
// union (EINVAL), whatever the operation.
func TestWriteReservedNames(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, []string{"d/u=u"}, []string{"d/f=f"})
			beforeUp := w.upperSnap(t)
			d := w.resolve(t, "d")
			for _, name := range []string{".wh.x", ".wh.f", ".wh..wh..opq", ".wh..wh.strata", ".wh."} {
				for _, mode := range []uint32{unix.S_IFREG | 0o644, unix.S_IFDIR | 0o755, unix.S_IFIFO | 0o644, unix.S_IFLNK | 0o777} {
					_, fd, err := w.s.Create(d, name, branches.NewObject{Mode: mode, Target: "t"})
					if fd >= 0 {
						unix.Close(fd)
					}
					if !errors.Is(err, unix.EINVAL) {
						t.Errorf("Create(%s, %s) = %v, want EINVAL", name, branches.TypeName(mode), err)
					}
				}
				for _, src := range []string{"f", "u"} {
					if err := w.s.Rename(d, src, d, name, 0); !errors.Is(err, unix.EINVAL) {
						t.Errorf("Rename(%s -> %s) = %v, want EINVAL", src, name, err)
					}
					if _, err := w.s.Link(w.resolve(t, "d/"+src), d, name); !errors.Is(err, unix.EINVAL) {
						t.Errorf("Link(%s -> %s) = %v, want EINVAL", src, name, err)
					}
				}
			}
			if got := w.upperSnap(t); got != beforeUp {
				t.Errorf("refused writes changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
			}
			w.check(t)
		})
	}
}

// TestWriteReadOnly: every write on a read-only stack fails with EROFS and
// writes nothing anywhere.
func TestWriteReadOnly(t *testing.T) {
	mkTrees := func(t *testing.T) (base, upper, work, l1, l2 string) {
		base = t.TempDir()
		upper, work, l1, l2 = filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "l1"), filepath.Join(base, "l2")
		mk(t, upper, "d/u=u")
		testutil.Must(t, os.Mkdir(work, 0o755))
		mk(t, l1, "d/f=f", "d/sub/", "d/l -> f")
		mk(t, l2, "d/g=g")
		for _, p := range []string{filepath.Join(upper, "d/u"), filepath.Join(l1, "d/f")} {
			if err := unix.Lsetxattr(p, "user.x", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	stacks := []struct {
		name string
		opts func(upper, work, l1, l2 string) string
	}{
		{"overlay lowers only", func(u, w, l1, l2 string) string { return "lowerdir=" + l1 + ":" + l2 }},
		{"overlay ro option", func(u, w, l1, l2 string) string {
			return "lowerdir=" + l1 + ":" + l2 + ",upperdir=" + u + ",workdir=" + w + ",ro"
		}},
		{"aufs all ro", func(u, w, l1, l2 string) string { return "br=" + l1 + "=ro:" + l2 + "=ro" }},
		{"aufs ro option", func(u, w, l1, l2 string) string { return "br=" + u + "=rw:" + l1 + ":" + l2 + ",ro" }},
	}
	for _, sc := range stacks {
		for _, wd := range writeDialects {
			t.Run(sc.name+"/"+wd.name, func(t *testing.T) {
				base, upper, work, l1, l2 := mkTrees(t)
				opts, err := branches.ParseOptions([]string{sc.opts(upper, work, l1, l2)})
				if err != nil {
					t.Fatal(err)
				}
				opts.Whiteout = wd.format
				if !opts.ReadOnly {
					t.Fatalf("options %q are not read-only", sc.opts(upper, work, l1, l2))
				}
				before := snapshot(t, base)
				s, err := branches.Open(opts, "")
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if s.Writable() {
					t.Errorf("Writable() on a read-only stack")
				}
				res := func(p string) *branches.Entry {
					e, err := s.Resolve(p)
					if err != nil {
						t.Fatalf("Resolve(%s): %v", p, err)
					}
					return e
				}
				d, f, sub := res("d"), res("d/f"), res("d/sub")
				file := f
				if _, err := s.Resolve("d/u"); err == nil {
					file = res("d/u") // the upper is a branch: try its files too
				}
				mode, size := uint32(0o600), int64(0)
				ops := map[string]func() error{
					"CopyUp": func() error { _, err := s.CopyUp(f); return err },
					"Create": func() error {
						_, fd, err := s.Create(d, "new", branches.NewObject{Mode: unix.S_IFREG | 0o644})
						if fd >= 0 {
							unix.Close(fd)
						}
						return err
					},
					"Mkdir": func() error {
						_, _, err := s.Create(d, "newdir", branches.NewObject{Mode: unix.S_IFDIR | 0o755})
						return err
					},
					"Unlink":               func() error { return s.Remove(d, "f", false) },
					"Rmdir":                func() error { return s.Remove(d, "sub", true) },
					"Rename":               func() error { return s.Rename(d, "f", d, "moved", 0) },
					"RenameDir":            func() error { return s.Rename(d, "sub", d, "moved", 0) },
					"RenameExchange":       func() error { return s.Rename(d, "f", d, "g", branches.RenameExchange) },
					"Link":                 func() error { _, err := s.Link(f, d, "hard"); return err },
					"Chmod":                func() error { _, err := s.Setattr(f, branches.SetAttr{Mode: &mode}); return err },
					"Truncate":             func() error { _, err := s.Setattr(file, branches.SetAttr{Size: &size}); return err },
					"ChmodDir":             func() error { _, err := s.Setattr(sub, branches.SetAttr{Mode: &mode}); return err },
					"Setxattr":             func() error { _, err := s.Setxattr(f, "user.y", []byte("1"), 0); return err },
					"Removexattr":          func() error { _, err := s.Removexattr(file, "user.x"); return err },
					"RemovexattrMissing":   func() error { _, err := s.Removexattr(f, "user.missing"); return err },
					"SetxattrUnionAttr":    func() error { _, err := s.Setxattr(f, "trusted.overlay.opaque", []byte("y"), 0); return err },
					"RemovexattrUnionAttr": func() error { _, err := s.Removexattr(f, "user.strata.ino"); return err },
					"OpenWrite": func() error {
						_, fd, err := s.OpenWrite(file, unix.O_RDWR)
						if fd >= 0 {
							unix.Close(fd)
						}
						return err
					},
				}
				for _, name := range slices.Sorted(maps.Keys(ops)) {
					if err := ops[name](); !errors.Is(err, unix.EROFS) {
						t.Errorf("%s on a read-only stack = %v, want EROFS", name, err)
					}
				}
				if got := snapshot(t, base); got != before {
					t.Errorf("writes on a read-only stack changed the branches:\nbefore:\n%s\nafter:\n%s", before, got)
				}
			})
		}
	}
}

// TestWriteIdentity: a lower object keeps its union inode number through
// every write that copies it up, and across a close and re-Open.
func TestWriteIdentity(t *testing.T) {
	mode := uint32(0o600)
	ops := []struct {
		name string
		p    string // the path whose Ino must stay
		op   func(t *testing.T, w *wstack, e *branches.Entry) string
	}{
		{"CopyUp", "d/f", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.CopyUp(e)
			testutil.Must(t, err)
			return "d/f"
		}},
		{"Setattr", "d/f", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.Setattr(e, branches.SetAttr{Mode: &mode})
			testutil.Must(t, err)
			return "d/f"
		}},
		{"Setxattr", "d/f", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.Setxattr(e, "user.y", []byte("1"), 0)
			testutil.Must(t, err)
			return "d/f"
		}},
		{"OpenWrite", "d/f", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, fd, err := w.s.OpenWrite(e, unix.O_WRONLY|unix.O_APPEND)
			testutil.Must(t, err)
			unix.Write(fd, []byte("more"))
			unix.Close(fd)
			return "d/f"
		}},
		{"Rename", "d/f", func(t *testing.T, w *wstack, e *branches.Entry) string {
			testutil.Must(t, w.s.Rename(w.resolve(t, "d"), "f", w.resolve(t, "e"), "moved", 0))
			return "e/moved"
		}},
		{"Symlink", "d/l", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.CopyUp(e)
			testutil.Must(t, err)
			return "d/l"
		}},
		{"Fifo", "d/p", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.Setattr(e, branches.SetAttr{Mode: &mode})
			testutil.Must(t, err)
			return "d/p"
		}},
		{"DirChild", "d", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, fd, err := w.s.Create(e, "child", branches.NewObject{Mode: unix.S_IFREG | 0o644})
			testutil.Must(t, err)
			unix.Close(fd)
			return "d"
		}},
		{"DirChmod", "d", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, err := w.s.Setattr(e, branches.SetAttr{Mode: &mode})
			testutil.Must(t, err)
			return "d"
		}},
		{"DeepDirChild", "d/sub", func(t *testing.T, w *wstack, e *branches.Entry) string {
			testutil.Must(t, w.s.Remove(e, "x", false))
			return "d/sub"
		}},
		{"MergedDirChild", "m", func(t *testing.T, w *wstack, e *branches.Entry) string {
			_, _, err := w.s.Create(e, "newdir", branches.NewObject{Mode: unix.S_IFDIR | 0o755})
			testutil.Must(t, err)
			return "m"
		}},
	}
	for _, wd := range writeDialects {
		for _, o := range ops {
			t.Run(wd.name+"/"+o.name, func(t *testing.T) {
				w := newWStackPrep(t, wd, func(w *wstack) {
					testutil.Must(t, unix.Mkfifo(filepath.Join(w.lowers[0], "d/p"), 0o644))
				}, []string{"m/u=u"}, []string{"d/f=f", "d/l -> f", "d/sub/x=x", "e/", "m/lo=l"}, []string{"m/bottom=b"})
				e := w.resolve(t, o.p)
				orig := e.Ino
				attrIno := func(p string) uint64 {
					st, err := w.s.Attr(w.resolve(t, p))
					testutil.Must(t, err)
					return st.Ino
				}
				if a := attrIno(o.p); a != orig {
					t.Fatalf("Attr().Ino %d, Entry.Ino %d", a, orig)
				}
				newPath := o.op(t, w, e)
				w.check(t)
				if got := w.resolve(t, newPath).Ino; got != orig {
					t.Errorf("%s: Ino %d after %s, was %d", newPath, got, o.name, orig)
				}
				if got := attrIno(newPath); got != orig {
					t.Errorf("%s: Attr().Ino %d after %s, was %d", newPath, got, o.name, orig)
				}
				w.reopen(t)
				if got := w.resolve(t, newPath).Ino; got != orig {
					t.Errorf("%s: Ino %d after re-Open, was %d", newPath, got, orig)
				}
				// readdir d_ino equals stat st_ino.
				parent := w.resolve(t, filepath.Dir(newPath))
				kids, err := w.s.ReadDir(parent)
				testutil.Must(t, err)
				for _, k := range kids {
					if k.Path == newPath && k.Ino != orig {
						t.Errorf("%s: ReadDir Ino %d, was %d", newPath, k.Ino, orig)
					}
				}
				w.check(t)
			})
		}
	}
}

// TestWriteLinkIdentity: Link makes one inode with two names.
func TestWriteLinkIdentity(t *testing.T) {
	for _, wd := range writeDialects {
		for _, where := range []string{"lower", "upper"} {
			t.Run(wd.name+"/"+where, func(t *testing.T) {
				var w *wstack
				if where == "lower" {
					w = newWStack(t, wd, nil, []string{"d/f=f", "e/"})
				} else {
					w = newWStack(t, wd, []string{"d/f=f"}, []string{"d/", "e/"})
				}
				e := w.resolve(t, "d/f")
				h, err := w.s.Link(e, w.resolve(t, "e"), "h")
				if err != nil {
					t.Fatal(err)
				}
				check := func(when string) {
					t.Helper()
					for _, p := range []string{"d/f", "e/h"} {
						st, err := w.s.Attr(w.resolve(t, p))
						testutil.Must(t, err)
						if st.Ino != e.Ino {
							t.Errorf("%s: %s has Ino %d, want %d", when, p, st.Ino, e.Ino)
						}
						if st.Nlink != 2 {
							t.Errorf("%s: %s has Nlink %d, want 2", when, p, st.Nlink)
						}
					}
				}
				if h.Ino != e.Ino {
					t.Errorf("Link returned Ino %d, want %d", h.Ino, e.Ino)
				}
				check("after Link")
				w.check(t)
				// Both names are one object: a write through one shows
				// through the other.
				_, fd, err := w.s.OpenWrite(w.resolve(t, "e/h"), unix.O_WRONLY|unix.O_TRUNC)
				testutil.Must(t, err)
				unix.Write(fd, []byte("via h"))
				unix.Close(fd)
				if b, err := fs.ReadFile(w.s.FS(), "d/f"); err != nil || string(b) != "via h" {
					t.Errorf("d/f reads %q, %v after a write through e/h", b, err)
				}
				w.reopen(t)
				check("after re-Open")
				w.check(t)
			})
		}
	}
}

// TestWriteLowerHardLinkPair: a hard-link pair in a lower branch is one
// inode; copying one name up must not split it visibly
// (docs/UNION-SEMANTICS.md, "Identity"). The pair may sit in one lower
// branch, or span two lower branches on one filesystem (layer stores that
// share files between layers link them): either way the union shows one
// inode.
func TestWriteLowerHardLinkPair(t *testing.T) {
	setups := []struct {
		name   string
		lowers [][]string
		prep   func(w *wstack)
	}{
		{name: "one lower", lowers: [][]string{{"d/a=pair", "d/b => d/a"}}},
		{name: "two lowers", lowers: [][]string{{"d/a=pair"}, {"d/"}}, prep: func(w *wstack) {
			if err := os.Link(filepath.Join(w.lowers[0], "d/a"), filepath.Join(w.lowers[1], "d/b")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, wd := range writeDialects {
		for _, su := range setups {
			t.Run(wd.name+"/"+su.name, func(t *testing.T) {
				w := newWStackPrep(t, wd, su.prep, nil, su.lowers...)
				a, b := w.resolve(t, "d/a"), w.resolve(t, "d/b")
				if a.Ino != b.Ino {
					t.Fatalf("lower pair: Ino %d and %d", a.Ino, b.Ino)
				}
				check := func(when string) {
					t.Helper()
					for _, p := range []string{"d/a", "d/b"} {
						st, err := w.s.Attr(w.resolve(t, p))
						testutil.Must(t, err)
						c, err := fs.ReadFile(w.s.FS(), p)
						testutil.Must(t, err)
						if st.Ino != a.Ino || st.Nlink != 2 || string(c) != "changed" {
							t.Errorf("%s: %s has ino %d nlink %d content %q; want ino %d nlink 2 %q (the pair split)",
								when, p, st.Ino, st.Nlink, c, a.Ino, "changed")
						}
					}
				}
				st, err := w.s.Attr(a)
				testutil.Must(t, err)
				if st.Nlink != 2 {
					t.Errorf("before copy-up: d/a has Nlink %d, want 2", st.Nlink)
				}
				_, fd, err := w.s.OpenWrite(a, unix.O_WRONLY|unix.O_TRUNC)
				testutil.Must(t, err)
				unix.Write(fd, []byte("changed"))
				unix.Close(fd)
				w.check(t)
				check("after the write through d/a")
				w.reopen(t)
				check("after re-Open")
			})
		}
	}
}

// TestWriteConcurrent: writers racing on one lower file copy it up once;
// racing creators of one name: one wins, the others get EEXIST.
func TestWriteConcurrent(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, nil, []string{"d/sub/f=lower"})
			orig := w.resolve(t, "d/sub/f")
			const n = 8
			errs := make([]error, n)
			created := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					_, fd, err := w.s.OpenWrite(orig, unix.O_RDWR)
					if err == nil {
						unix.Close(fd)
					}
					errs[i] = err
				})
				wg.Go(func() {
					_, fd, err := w.s.Create(w.resolve(t, "d/sub"), "new", branches.NewObject{Mode: unix.S_IFREG | 0o644})
					if err == nil {
						unix.Close(fd)
					}
					created[i] = err
				})
			}
			wg.Wait()
			wins := 0
			for i := range n {
				if errs[i] != nil {
					t.Errorf("OpenWrite %d: %v", i, errs[i])
				}
				switch {
				case created[i] == nil:
					wins++
				case !errors.Is(created[i], unix.EEXIST):
					t.Errorf("Create %d: %v, want nil or EEXIST", i, created[i])
				}
			}
			if wins != 1 {
				t.Errorf("%d racing Creates of one name succeeded, want 1", wins)
			}
			e := w.inUpper(t, "d/sub/f")
			if e.Ino != orig.Ino {
				t.Errorf("Ino %d after racing copy-ups, was %d", e.Ino, orig.Ino)
			}
			if b, err := fs.ReadFile(w.s.FS(), "d/sub/f"); err != nil || string(b) != "lower" {
				t.Errorf("d/sub/f reads %q, %v", b, err)
			}
			w.check(t)
		})
	}
}

// TestWriteSetattrRoot changes the union root, which is the root of
// every branch: the upper root changes, and the union reports it.
func TestWriteSetattrRoot(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, nil, []string{"f=1"})
			mode := uint32(0o711)
			got, err := w.s.Setattr(w.resolve(t, "."), branches.SetAttr{Mode: &mode})
			if err != nil {
				t.Fatal(err)
			}
			defer w.check(t)
			if got.St.Mode&0o7777 != mode {
				t.Errorf("Setattr returned mode %o", got.St.Mode&0o7777)
			}
			var st unix.Stat_t
			testutil.Must(t, unix.Stat(w.upper, &st))
			if st.Mode&0o7777 != mode {
				t.Errorf("upper root mode %o, want %o", st.Mode&0o7777, mode)
			}
			if m := w.resolve(t, ".").St.Mode & 0o7777; m != mode {
				t.Errorf("Resolve(\".\") mode %o after chmod to %o", m, mode)
			}
			if fi, err := fs.Stat(w.s.FS(), "."); err != nil || uint32(fi.Mode().Perm()) != mode&0o777 {
				t.Errorf("fs.Stat(\".\") = %v, %v after chmod to %o", fi.Mode(), err, mode)
			}
		})
	}
}

// TestWriteCreateWhiteoutDevice: a char device 0/0 is a whiteout, so the
// union cannot create one (kernel overlay: EPERM); the attempt must not
// hide anything.
func TestWriteCreateWhiteoutDevice(t *testing.T) {
	for _, wd := range writeDialects {
		for _, name := range []string{"new", "lf"} {
			t.Run(wd.name+"/"+name, func(t *testing.T) {
				w := newWStack(t, wd, []string{"d/"}, []string{"d/lf=lower"})
				before, beforeUp := w.union(t), w.upperSnap(t)
				_, _, err := w.s.Create(w.resolve(t, "d"), name, branches.NewObject{Mode: unix.S_IFCHR | 0o644, Rdev: 0})
				defer w.check(t)
				if name == "lf" && !errors.Is(err, unix.EEXIST) {
					t.Errorf("Create of a char 0/0 over a visible name = %v, want EEXIST", err)
				}
				if name == "new" && !errors.Is(err, unix.EPERM) {
					t.Errorf("Create of a char 0/0 = %v, want EPERM", err)
				}
				diffMaps(t, "union", before, w.union(t))
				if got := w.upperSnap(t); got != beforeUp {
					t.Errorf("a refused Create changed the upper:\nbefore:\n%s\nafter:\n%s", beforeUp, got)
				}
			})
		}
	}
}

// TestWriteCreateDevices makes devices and sockets (root only).
func TestWriteCreateDevices(t *testing.T) {
	testutil.NeedRoot(t, "mknod of devices")
	objs := []struct {
		name string
		mode uint32
		rdev uint64
	}{
		{"null", unix.S_IFCHR | 0o666, unix.Mkdev(1, 3)},
		{"loop", unix.S_IFBLK | 0o660, unix.Mkdev(7, 200)},
		{"sock", unix.S_IFSOCK | 0o755, 0},
	}
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStack(t, wd, nil, []string{"d/"})
			for _, o := range objs {
				e, fd, err := w.s.Create(w.resolve(t, "d"), o.name, branches.NewObject{Mode: o.mode, Rdev: o.rdev})
				if err != nil {
					t.Fatalf("Create %s: %v", o.name, err)
				}
				if fd >= 0 {
					t.Errorf("Create %s returned descriptor %d", o.name, fd)
					unix.Close(fd)
				}
				if e.St.Mode != o.mode || e.St.Rdev != o.rdev {
					t.Errorf("%s: mode %o rdev %x, want %o %x", o.name, e.St.Mode, e.St.Rdev, o.mode, o.rdev)
				}
			}
			w.check(t)
		})
	}
}

// TestWriteCreateSetgidDir: in a setgid directory (copied up from below)
// new objects take the directory's group, and new directories the bit.
func TestWriteCreateSetgidDir(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStackPrep(t, wd, func(w *wstack) {
				p := filepath.Join(w.lowers[0], "d")
				testutil.Must(t, os.Chown(p, 0, 77))
				testutil.Must(t, os.Chmod(p, 0o2775|os.ModeSetgid))
				testutil.Must(t, unix.Chmod(p, 0o2775))
			}, nil, []string{"d/"})
			d := w.resolve(t, "d")
			_, fd, err := w.s.Create(d, "f", branches.NewObject{Mode: unix.S_IFREG | 0o644, Uid: 5, Gid: 6})
			testutil.Must(t, err)
			unix.Close(fd)
			_, _, err = w.s.Create(w.resolve(t, "d"), "sub", branches.NewObject{Mode: unix.S_IFDIR | 0o755, Uid: 5, Gid: 6})
			testutil.Must(t, err)
			defer w.check(t)
			if d := w.inUpper(t, "d"); d.St.Mode&0o7777 != 0o2775 || d.St.Gid != 77 {
				t.Errorf("copied-up d: mode %o gid %d", d.St.Mode&0o7777, d.St.Gid)
			}
			if f := w.resolve(t, "d/f"); f.St.Gid != 77 || f.St.Uid != 5 || f.St.Mode&unix.S_ISGID != 0 {
				t.Errorf("d/f: uid %d gid %d mode %o; want uid 5, gid 77, no setgid", f.St.Uid, f.St.Gid, f.St.Mode&0o7777)
			}
			if s := w.resolve(t, "d/sub"); s.St.Gid != 77 || s.St.Mode&0o7777 != 0o2755 {
				t.Errorf("d/sub: gid %d mode %o; want gid 77 mode 2755", s.St.Gid, s.St.Mode&0o7777)
			}
		})
	}
}

// TestWriteCopyUpTypes copies up every type of object (by a chown, which
// every type takes) and checks what the copy keeps: type, device number,
// mode, times, user xattrs, symlink target, data with its holes.
func TestWriteCopyUpTypes(t *testing.T) {
	testutil.NeedRoot(t, "mknod of devices, chown")
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStackPrep(t, wd, func(w *wstack) {
				l := w.lowers[0]
				testutil.Must(t, unix.Mkfifo(filepath.Join(l, "d/fifo"), 0o640))
				testutil.Must(t, unix.Mknod(filepath.Join(l, "d/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
				testutil.Must(t, unix.Mknod(filepath.Join(l, "d/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 9))))
				testutil.Must(t, unix.Mknod(filepath.Join(l, "d/sock"), unix.S_IFSOCK|0o755, 0))
				sparse := filepath.Join(l, "d/sparse")
				f, err := os.Create(sparse)
				testutil.Must(t, err)
				_, err = f.WriteAt([]byte("end"), 8<<20)
				testutil.Must(t, err)
				f.Close()
				testutil.Must(t, unix.Lsetxattr(filepath.Join(l, "d/file"), "user.a", []byte("va"), 0))
				for _, n := range []string{"fifo", "null", "blk", "sock", "sparse", "file", "link"} {
					ts := []unix.Timespec{{Sec: 100, Nsec: 7}, {Sec: 200, Nsec: 9}}
					testutil.Must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(l, "d", n), ts, unix.AT_SYMLINK_NOFOLLOW))
				}
			}, nil, []string{"d/file=data", "d/link -> file"})
			for _, n := range []string{"fifo", "null", "blk", "sock", "sparse", "file", "link"} {
				p := "d/" + n
				orig := w.resolve(t, p)
				uid := uint32(1000)
				if _, err := w.s.Setattr(orig, branches.SetAttr{Uid: &uid}); err != nil {
					t.Errorf("chown %s: %v", p, err)
					continue
				}
				e := w.inUpper(t, p)
				if e.St.Mode != orig.St.Mode || e.St.Rdev != orig.St.Rdev || e.St.Size != orig.St.Size || e.St.Uid != 1000 {
					t.Errorf("%s: copy has mode %o rdev %x size %d uid %d; original %o %x %d", p,
						e.St.Mode, e.St.Rdev, e.St.Size, e.St.Uid, orig.St.Mode, orig.St.Rdev, orig.St.Size)
				}
				if e.St.Mtim != orig.St.Mtim {
					t.Errorf("%s: mtime %v, was %v", p, e.St.Mtim, orig.St.Mtim)
				}
				if e.Ino != orig.Ino {
					t.Errorf("%s: Ino %d, was %d", p, e.Ino, orig.Ino)
				}
			}
			if tgt, err := w.s.Readlink(w.resolve(t, "d/link")); err != nil || tgt != "file" {
				t.Errorf("copied symlink: %q, %v", tgt, err)
			}
			if v, err := w.s.Getxattr(w.resolve(t, "d/file"), "user.a"); err != nil || string(v) != "va" {
				t.Errorf("copied file: user.a = %q, %v", v, err)
			}
			b, err := fs.ReadFile(w.s.FS(), "d/sparse")
			if err != nil || len(b) != 8<<20+3 || string(b[8<<20:]) != "end" {
				t.Errorf("copied sparse file: %d bytes, %v", len(b), err)
			}
			var st unix.Stat_t
			testutil.Must(t, unix.Stat(filepath.Join(w.upper, "d/sparse"), &st))
			if st.Blocks*512 > 1<<20 {
				t.Errorf("copied sparse file uses %d bytes: holes were filled", st.Blocks*512)
			}
			w.check(t)
		})
	}
}
