package branches_test

// A model-based test of the write path: random sequences of writes on
// random three-layer stacks (markers of every read dialect, both written
// dialects), each checked against an in-memory model of the tree after
// every step: the union view, the inode numbers (stable per object,
// unique), the lower branches (untouched) and the workdir (empty).

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// mobj is one object of the model.
type mobj struct {
	typ  string // "file", "dir", "symlink"
	perm uint32
	data string // file content, symlink target
	ino  uint64 // union inode number, 0 until first seen
}

func (o mobj) String() string {
	s := fmt.Sprintf("%s %04o 0:0", o.typ, o.perm)
	switch o.typ {
	case "file":
		s += fmt.Sprintf(" %q", o.data)
	case "symlink":
		s += " -> " + o.data
	}
	return s
}

// randomLayer writes mk spec lines for one random layer: files, dirs,
// whiteouts and opaque dirs (not in the bottom layer) over the names
// a, b, c down to depth 3.
func randomLayer(r *rand.Rand, d dialect, label string, bottom bool) []string {
	var out []string
	var walk func(dir string, depth int, opaque bool)
	walk = func(dir string, depth int, opaque bool) {
		for _, n := range []string{"a", "b", "c"} {
			p := path.Join(dir, n)
			switch k := r.IntN(10); {
			case k < 3:
				// nothing
			case k < 6:
				out = append(out, p+"="+label+"-"+strings.ReplaceAll(p, "/", "."))
			case k < 9 && depth < 3:
				if !bottom && r.IntN(4) == 0 {
					out = append(out, "OPQ:"+p)
					walk(p, depth+1, true)
				} else {
					out = append(out, p+"/")
					walk(p, depth+1, false)
				}
			case !bottom && !opaque:
				out = append(out, "WH:"+p)
			}
		}
	}
	walk(".", 0, false)
	return d.expand(out)
}

// modelOf reads the union into a model.
func modelOf(t testing.TB, w *wstack) map[string]mobj {
	t.Helper()
	out := map[string]mobj{}
	var walk func(dir *branches.Entry)
	walk = func(dir *branches.Entry) {
		kids, err := w.s.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir.Path, err)
		}
		for _, k := range kids {
			o := mobj{typ: branches.TypeName(k.St.Mode), perm: k.St.Mode & 0o7777, ino: k.Ino}
			switch k.St.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				b, err := fs.ReadFile(w.s.FS(), k.Path)
				if err != nil {
					t.Fatal(err)
				}
				o.data = string(b)
			case unix.S_IFLNK:
				o.data, err = w.s.Readlink(k)
				if err != nil {
					t.Fatal(err)
				}
			}
			out[k.Path] = o
			if k.IsDir() {
				walk(k)
			}
		}
	}
	walk(w.resolve(t, "."))
	return out
}

func renderModel(m map[string]mobj) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v.String()
	}
	return out
}

// compareModel checks the union against the model: the tree, and the
// inode number of every object the model knows one for; it learns the
// numbers of new objects, and checks that no two objects share one.
func compareModel(t testing.TB, w *wstack, model map[string]mobj, when string) {
	t.Helper()
	got := modelOf(t, w)
	diffMaps(t, "union "+when, renderModel(model), renderModel(got))
	checkDirNlinks(t, w, got, when)
	byIno := map[uint64]string{}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		g := got[p]
		if other, dup := byIno[g.ino]; dup {
			t.Errorf("%s: %s and %s share Ino %d", when, p, other, g.ino)
		}
		byIno[g.ino] = p
		m, ok := model[p]
		if !ok {
			continue
		}
		if m.ino == 0 {
			m.ino = g.ino
			model[p] = m
		} else if m.ino != g.ino {
			t.Errorf("%s: %s has Ino %d, was %d", when, p, g.ino, m.ino)
		}
	}
}

// checkDirNlinks checks every directory's link count (2 + visible
// subdirectories, remembered across changes by the stack) against the
// listing.
func checkDirNlinks(t testing.TB, w *wstack, got map[string]mobj, when string) {
	t.Helper()
	subdirs := map[string]uint64{".": 0}
	for p, o := range got {
		if o.typ == "dir" {
			subdirs[p] += 0
			subdirs[path.Dir(p)]++
		}
	}
	for p, n := range subdirs {
		st, err := w.s.Attr(w.resolve(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if st.Nlink != 2+n {
			t.Errorf("%s: %s has nlink %d, want %d", when, p, st.Nlink, 2+n)
		}
	}
}

func moveSubtree(m map[string]mobj, from, to string) map[string]mobj {
	moved := map[string]mobj{}
	for k, v := range m {
		if k == from || strings.HasPrefix(k, from+"/") {
			moved[to+k[len(from):]] = v
			delete(m, k)
		}
	}
	return moved
}

func hasChildren(m map[string]mobj, p string) bool {
	for k := range m {
		if strings.HasPrefix(k, p+"/") {
			return true
		}
	}
	return false
}

func TestWriteRandomSequences(t *testing.T) {
	seeds := 24
	steps := 40
	if n, err := strconv.Atoi(os.Getenv("STRATA_MODEL_SEEDS")); err == nil {
		seeds = n // longer runs by hand
	}
	if testing.Short() {
		seeds, steps = 6, 20
	}
	for _, wd := range writeDialects {
		for seed := range seeds {
			name := fmt.Sprintf("%s/seed%d", wd.name, seed)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(uint64(seed), 42))
				pick := func() dialect { return readDialects[r.IntN(len(readDialects))] }
				du, d0, d1 := pick(), pick(), pick()
				for _, d := range []dialect{du, d0, d1} {
					d.skipUnlessAble(t)
				}
				u, l0, l1 := randomLayer(r, du, "u", false), randomLayer(r, d0, "l0", false), randomLayer(r, d1, "l1", true)
				t.Logf("upper %v\nlower0 %v\nlower1 %v", u, l0, l1)
				w := newWStack(t, wd, u, l0, l1)
				model := modelOf(t, w)
				compareModel(t, w, model, "at start")
				runModel(t, r, w, model, steps)
				w.reopen(t)
				compareModel(t, w, model, "after re-Open")
				w.check(t)
			})
		}
	}
}

// runModel applies steps random writes to w and to the model.
func runModel(t *testing.T, r *rand.Rand, w *wstack, model map[string]mobj, steps int) {
	names := []string{"a", "b", "c", "d"}
	paths := func(keep func(mobj) bool) []string {
		var out []string
		for _, p := range slices.Sorted(maps.Keys(model)) {
			if keep(model[p]) {
				out = append(out, p)
			}
		}
		return out
	}
	everything := func(mobj) bool { return true }
	isDir := func(o mobj) bool { return o.typ == "dir" }
	randomDir := func() string {
		dirs := append([]string{"."}, paths(isDir)...)
		return dirs[r.IntN(len(dirs))]
	}
	randomPath := func() string {
		all := paths(everything)
		if len(all) == 0 {
			return ""
		}
		return all[r.IntN(len(all))]
	}
	split := func(p string) (*branches.Entry, string) {
		return w.resolve(t, path.Dir(p)), path.Base(p)
	}
	for step := range steps {
		if t.Failed() {
			return
		}
		var desc string
		var err error
		var want error // nil: must succeed
		switch op := r.IntN(100); {
		case op < 15: // create a file, dir or symlink
			p := path.Join(randomDir(), names[r.IntN(len(names))])
			o := mobj{typ: "file", perm: 0o644, data: fmt.Sprintf("step%d", step)}
			mode := unix.S_IFREG | uint32(0o644)
			switch r.IntN(3) {
			case 1:
				o = mobj{typ: "dir", perm: 0o755}
				mode = unix.S_IFDIR | 0o755
			case 2:
				o = mobj{typ: "symlink", perm: 0o777, data: "tgt" + fmt.Sprint(step)}
				mode = unix.S_IFLNK | 0o777
			}
			desc = fmt.Sprintf("create %s %s", o.typ, p)
			if _, exists := model[p]; exists {
				want = unix.EEXIST
			}
			dir, name := split(p)
			var fd int
			_, fd, err = w.s.Create(dir, name, branches.NewObject{Mode: mode, Target: o.data, OpenFlags: unix.O_WRONLY})
			if fd >= 0 {
				unix.Write(fd, []byte(o.data))
				unix.Close(fd)
			}
			if want == nil {
				model[p] = o
			}
		case op < 30: // unlink or rmdir
			p := randomPath()
			if p == "" {
				continue
			}
			o := model[p]
			rmdir := r.IntN(2) == 0
			desc = fmt.Sprintf("remove(dir=%v) %s %s", rmdir, o.typ, p)
			switch {
			case rmdir && o.typ != "dir":
				want = unix.ENOTDIR
			case !rmdir && o.typ == "dir":
				want = unix.EISDIR
			case rmdir && hasChildren(model, p):
				want = unix.ENOTEMPTY
			}
			dir, name := split(p)
			err = w.s.Remove(dir, name, rmdir)
			if want == nil {
				delete(model, p)
			}
		case op < 65: // rename
			src := randomPath()
			if src == "" {
				continue
			}
			dst := path.Join(randomDir(), names[r.IntN(len(names))])
			if src == dst || strings.HasPrefix(dst, src+"/") || strings.HasPrefix(src, dst+"/") {
				continue // rename into itself: TestRenameDirIntoItself
			}
			flags := []uint32{0, 0, branches.RenameNoReplace, branches.RenameExchange}[r.IntN(4)]
			so, dstObj := model[src], model[dst]
			_, dstExists := model[dst]
			desc = fmt.Sprintf("rename(flags=%d) %s %s -> %s (%s)", flags, so.typ, src, dst, dstObj.typ)
			switch {
			case flags == branches.RenameNoReplace && dstExists:
				want = unix.EEXIST
			case flags == branches.RenameExchange && !dstExists:
				want = unix.ENOENT
			case flags == branches.RenameExchange:
			case !dstExists:
			case so.typ == "dir" && dstObj.typ != "dir":
				want = unix.ENOTDIR
			case so.typ != "dir" && dstObj.typ == "dir":
				want = unix.EISDIR
			case dstObj.typ == "dir" && hasChildren(model, dst):
				want = unix.ENOTEMPTY
			}
			od, on := split(src)
			nd, nn := split(dst)
			err = w.s.Rename(od, on, nd, nn, flags)
			if want == nil {
				a := moveSubtree(model, src, dst)
				b := moveSubtree(model, dst, src)
				if flags != branches.RenameExchange {
					b = nil // replaced
				}
				maps.Copy(model, a)
				maps.Copy(model, b)
			}
		case op < 80: // write a file
			files := paths(func(o mobj) bool { return o.typ == "file" })
			if len(files) == 0 {
				continue
			}
			p := files[r.IntN(len(files))]
			data := fmt.Sprintf("written%d", step)
			desc = "write " + p
			var fd int
			_, fd, err = w.s.OpenWrite(w.resolve(t, p), unix.O_WRONLY|unix.O_TRUNC)
			if err == nil {
				unix.Write(fd, []byte(data))
				unix.Close(fd)
				o := model[p]
				o.data = data
				model[p] = o
			}
		case op < 92: // chmod
			ps := paths(func(o mobj) bool { return o.typ != "symlink" })
			if len(ps) == 0 {
				continue
			}
			p := ps[r.IntN(len(ps))]
			perm := []uint32{0o700, 0o640, 0o755, 0o600}[r.IntN(4)]
			desc = fmt.Sprintf("chmod %04o %s", perm, p)
			_, err = w.s.Setattr(w.resolve(t, p), branches.SetAttr{Mode: &perm})
			if err == nil {
				o := model[p]
				o.perm = perm
				model[p] = o
			}
		default:
			desc = "re-open"
			w.reopen(t)
		}
		t.Logf("step %d: %s: %v", step, desc, err)
		switch {
		case want == nil && err != nil:
			t.Errorf("step %d: %s: %v", step, desc, err)
		case want != nil && !errors.Is(err, want):
			t.Errorf("step %d: %s = %v, want %v", step, desc, err, want)
		}
		compareModel(t, w, model, fmt.Sprintf("after step %d (%s)", step, desc))
		w.check(t)
	}
}

// TestRenameDirIntoItself: a directory cannot move below itself (EINVAL),
// and the refused rename leaves the union as it was.
func TestRenameDirIntoItself(t *testing.T) {
	for _, wd := range writeDialects {
		for _, where := range []string{"upper", "lower", "merged"} {
			t.Run(wd.name+"/"+where, func(t *testing.T) {
				var w *wstack
				switch where {
				case "upper":
					w = newWStack(t, wd, []string{"a/sub/f=1"}, []string{"x/"})
				case "lower":
					w = newWStack(t, wd, nil, []string{"a/sub/f=1"})
				default:
					w = newWStack(t, wd, []string{"a/u=1"}, []string{"a/sub/f=1"})
				}
				before := w.union(t)
				err := w.s.Rename(w.resolve(t, "."), "a", w.resolve(t, "a/sub"), "moved", 0)
				if !errors.Is(err, unix.EINVAL) {
					t.Errorf("Rename(a -> a/sub/moved) = %v, want EINVAL", err)
				}
				err = w.s.Rename(w.resolve(t, "."), "a", w.resolve(t, "a"), "moved", 0)
				if !errors.Is(err, unix.EINVAL) {
					t.Errorf("Rename(a -> a/moved) = %v, want EINVAL", err)
				}
				diffMaps(t, "union", before, w.union(t))
				w.check(t)
			})
		}
	}
}
