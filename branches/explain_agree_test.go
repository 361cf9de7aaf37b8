package branches_test

import (
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/whiteout"
)

// TestExplainAgreesWithResolution: for every path of varied stacks (every
// row of the union matrix in every dialect, the explain matrix after its
// copy-up and rename, and a stack of redirects), ExplainPath's verdicts are
// resolution's answers:
//
//   - the copies it says serve and are merged are exactly the layers
//     Resolve returns, in order, at the same places;
//   - it says the path exists exactly when Resolve finds it, with the same
//     inode number, and lists a directory as Names does;
//   - at the last component, each branch's verdict, place and cause are
//     what Explain (the lookup, recording) observed;
//   - a copy it calls hidden by a higher branch is served by its own
//     branch once the branches above are taken away, a whiteout it reports
//     hides the name there, and a branch it calls absent holds nothing a
//     stack of that branch alone would show.
//
// The last point asks Resolve on other stacks, so a verdict explain made
// up by itself (a second reading of the branches) cannot pass.
func TestExplainAgreesWithResolution(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			for _, tc := range unionMatrix {
				t.Run(tc.name, func(t *testing.T) {
					dirs := trees(t, d, tc.layers[:]...)
					checkExplainAgrees(t, openStack(t, dirs...), dirs)
				})
			}
		})
	}
	t.Run("explain matrix", func(t *testing.T) {
		w, _ := newExplainMatrix(t)
		checkExplainAgrees(t, w.s, append([]string{w.upper}, w.lowers...))
	})
	t.Run("redirects", func(t *testing.T) {
		dirs := redirectStack(t)
		checkExplainAgrees(t, openStack(t, dirs...), dirs)
	})
}

// redirectStack builds four branches of renamed directories: a chain of
// redirects, one through a parent renamed in a lower branch, one to its
// own path, a relative one, one to a file, one that leads nowhere, and
// one across an opaque directory; and an xattr whiteout in a directory a
// higher branch whites out. Aufs whiteouts and user.* xattrs: no root
// needed.
func redirectStack(t *testing.T) []string {
	t.Helper()
	dirs := trees(t, dialects[3],
		[]string{
			"new/top=0", ".wh.old", "p/k=0", "same/s0=0", "d/e2/", "fr/", "dang/", "rw/",
			"a2/", ".wh.hid",
		},
		[]string{
			"old/mid=1", "q/r/u=1", "same/s1=1", "d/e1/f=1", "ff=1", "ow/t/a=1",
			"a1/x=1", "x:hid/w",
		},
		[]string{"older/f=2", "old/g=2", "s/v=2", "q/r/w=2", "ow/t/b=2", "a0/y=2", "same/s2=2", "hid/w=2",
			"new/z=2", "rw/c=2"}, // off the lookup's path: new and rw are redirected
		[]string{"older/h=3", "a0/z=3", "nest/n=3", "dang/d=3"},
	)
	redirect := func(layer int, dir, target string) {
		t.Helper()
		if err := unix.Lsetxattr(filepath.Join(dirs[layer], dir), "user.overlay.redirect", []byte(target), 0); err != nil {
			t.Fatal(err)
		}
	}
	redirect(0, "new", "/old")
	redirect(1, "old", "/older")
	redirect(0, "p", "/q")
	redirect(1, "q/r", "/s")
	redirect(0, "same", "/same")
	redirect(0, "d/e2", "e1")
	redirect(0, "fr", "/ff")
	redirect(0, "dang", "/nowhere")
	redirect(0, "rw", "/ow/t")
	redirect(0, "a2", "/a1")
	redirect(1, "a1", "/a0")
	mk(t, dirs[1], "uo:ow")
	return dirs
}

// checkExplainAgrees checks ExplainPath against resolution for every path
// any branch of s (built from dirs, top first) holds, and a name below
// each.
func checkExplainAgrees(t *testing.T, s *branches.Stack, dirs []string) {
	t.Helper()
	// Stacks of the branches from k down, and of branch k alone.
	below := make([]*branches.Stack, len(dirs))
	alone := make([]*branches.Stack, len(dirs))
	for k := range dirs {
		below[k] = openStack(t, dirs[k:]...)
		alone[k] = openStack(t, dirs[k])
	}
	paths := []string{"."}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil || p == dir {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			paths = append(paths, rel, rel+"/zz")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(paths)
	for _, p := range slices.Compact(paths) {
		r, err := s.ExplainPath(p)
		if err != nil {
			t.Errorf("ExplainPath(%s): %v", p, err)
			continue
		}
		checkAgainstResolve(t, s, p, r)
		checkAgainstExplain(t, s, p, r)
		for k, h := range r.Branches {
			checkVerdictBelow(t, p, h, below[k], alone[k])
		}
	}
}

// place is one copy: a branch and the path in it.
type place struct {
	branch int
	at     string
}

func checkAgainstResolve(t *testing.T, s *branches.Stack, p string, r *branches.Report) {
	t.Helper()
	var shown []place
	for _, h := range r.Branches {
		switch h.Verdict {
		case "serves":
			shown = append([]place{{h.Branch.Index, h.At}}, shown...)
		case "merged":
			shown = append(shown, place{h.Branch.Index, h.At})
		case "hidden":
			if h.HiddenBy == nil {
				t.Errorf("%s: %s's copy is hidden by nothing", p, h.Branch.Name)
			}
		}
	}
	e, err := s.Resolve(p)
	if err != nil {
		if !errors.Is(err, branches.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("Resolve(%s): %v", p, err)
		}
		if r.Exists || len(shown) > 0 {
			t.Errorf("%s: Resolve says %v; explain says exists=%v, shown by %v", p, err, r.Exists, shown)
		}
		return
	}
	var layers []place
	for _, l := range e.Layers {
		layers = append(layers, place{l.Branch.Index, l.Path})
		if got := r.Branches[l.Branch.Index].Holds; got != branches.TypeName(e.St.Mode) {
			t.Errorf("%s: explain says %s holds a %s, Resolve a %s", p, l.Branch.Name(), got, branches.TypeName(e.St.Mode))
		}
	}
	if !r.Exists || !slices.Equal(shown, layers) {
		t.Errorf("%s: Resolve serves it from %v; explain says exists=%v, serves and merges %v", p, layers, r.Exists, shown)
	}
	if r.Ino != e.Ino || r.Type != branches.TypeName(e.St.Mode) {
		t.Errorf("%s: explain says %s ino %d, Resolve %s ino %d", p, r.Type, r.Ino, branches.TypeName(e.St.Mode), e.Ino)
	}
	if !e.IsDir() {
		return
	}
	ns, err := s.Names(e)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range ns {
		want = append(want, n.Name)
	}
	if r.Listing == nil || !slices.Equal(r.Listing.Names, want) {
		t.Errorf("%s: explain lists %+v, Names %v", p, r.Listing, want)
	}
}

// checkAgainstExplain compares the last component's verdicts with the
// lookup's own observations.
func checkAgainstExplain(t *testing.T, s *branches.Stack, p string, r *branches.Report) {
	t.Helper()
	if p == "." {
		return
	}
	parent, err := s.Resolve(path.Dir(p))
	if err != nil || !parent.IsDir() {
		return
	}
	_, obs, err := s.Explain(parent, path.Base(p))
	if err != nil {
		t.Fatalf("Explain(%s): %v", p, err)
	}
	for _, o := range obs {
		h := r.Branches[o.Branch.Index]
		want := o.Verdict.String()
		if o.Verdict == branches.Absent {
			want = "absent"
		}
		if h.Verdict != want || h.At != o.Path {
			t.Errorf("%s in %s: explain says %s at %s, the lookup %s at %s", p, h.Branch.Name, h.Verdict, h.At, want, o.Path)
		}
		if o.Verdict == branches.Hidden && (h.HiddenBy == nil || h.HiddenBy.Index != o.HiddenBy.Branch.Index || h.HiddenBy.What != o.Reason()) {
			t.Errorf("%s in %s: explain says hidden by %+v, the lookup by %s (%s)", p, h.Branch.Name, h.HiddenBy, o.HiddenBy.Branch.Name(), o.Reason())
		}
	}
}

// checkVerdictBelow asks resolution, on the stack of h's branch and those
// below it (below) and on that branch alone (alone), what h's copy is
// without the branches above.
func checkVerdictBelow(t *testing.T, p string, h branches.Holding, below, alone *branches.Stack) {
	t.Helper()
	switch h.Verdict {
	case "absent":
		if e, err := alone.Resolve(h.At); err == nil {
			t.Errorf("%s: explain says %s holds nothing at %s; alone it shows %s", p, h.Branch.Name, h.At, describe(e))
		}
	case "whiteout":
		if e, err := below.Resolve(h.At); !errors.Is(err, branches.ErrNotExist) {
			t.Errorf("%s: explain says %s whites out %s; from there down it resolves to %s, %v", p, h.Branch.Name, h.At, describe(e), err)
		}
	case "hidden":
		if h.HiddenBy == nil || h.HiddenBy.Index == h.Branch.Index {
			return // hidden by its own branch: a reserved name, or off the lookup's path
		}
		e, err := below.Resolve(h.At)
		switch {
		case h.Holds == "whiteout" || whiteout.IsReserved(path.Base(h.At)):
			if !errors.Is(err, branches.ErrNotExist) {
				t.Errorf("%s: %s's hidden %s at %s resolves to %s, %v from there down", p, h.Branch.Name, h.Holds, h.At, describe(e), err)
			}
		case err != nil || e.Top().Path != h.At || branches.TypeName(e.St.Mode) != h.Holds:
			t.Errorf("%s: explain says a higher branch hides %s's %s at %s; from there down Resolve gives %s, %v", p, h.Branch.Name, h.Holds, h.At, describe(e), err)
		}
	}
}
