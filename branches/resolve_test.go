package branches_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// expect is what the union must show at one path.
type expect struct {
	path    string
	gone    bool   // the union does not show it (ErrNotExist)
	notDir  bool   // a component is not a directory (ENOTDIR)
	typ     uint32 // S_IFMT of the object
	branch  int    // index of the serving branch
	content string // regular files
	layers  []int  // directories: branch index of every merged copy
}

func gone(p string) expect { return expect{path: p, gone: true} }

func notDir(p string) expect { return expect{path: p, notDir: true} }

func file(p string, branch int, content string) expect {
	return expect{path: p, typ: unix.S_IFREG, branch: branch, content: content}
}

func dir(p string, layers ...int) expect {
	return expect{path: p, typ: unix.S_IFDIR, branch: layers[0], layers: layers}
}

func symlink(p string, branch int) expect {
	return expect{path: p, typ: unix.S_IFLNK, branch: branch}
}

func (w expect) check(t *testing.T, s *branches.Stack) {
	t.Helper()
	e, err := s.Resolve(w.path)
	switch {
	case w.gone:
		if !errors.Is(err, branches.ErrNotExist) {
			t.Errorf("Resolve(%q) = %v, %v; want ErrNotExist", w.path, describe(e), err)
		}
		return
	case w.notDir:
		if !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("Resolve(%q) = %v, %v; want ENOTDIR", w.path, describe(e), err)
		}
		return
	case err != nil:
		t.Errorf("Resolve(%q): %v", w.path, err)
		return
	}
	if typ := e.St.Mode & unix.S_IFMT; typ != w.typ {
		t.Errorf("%s: type %s, want %s", w.path, branches.TypeName(typ), branches.TypeName(w.typ))
	}
	if b := e.Top().Branch.Index; b != w.branch {
		t.Errorf("%s: served by branch %d, want %d", w.path, b, w.branch)
	}
	if w.typ == unix.S_IFREG {
		if got := content(t, s, e); got != w.content {
			t.Errorf("%s: content %q, want %q", w.path, got, w.content)
		}
	}
	if w.typ == unix.S_IFDIR {
		if got := layerIndexes(e); !slices.Equal(got, w.layers) {
			t.Errorf("%s: merged layers %v, want %v", w.path, got, w.layers)
		}
	} else if len(e.Layers) != 1 {
		t.Errorf("%s: a non-directory has %d layers", w.path, len(e.Layers))
	}
	if e.Path != strings.Trim(w.path, "/") && !(w.path == "." && e.Path == ".") {
		t.Errorf("%s: Entry.Path = %q", w.path, e.Path)
	}
}

func describe(e *branches.Entry) string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s (%s in branch %d)", e.Path, branches.TypeName(e.St.Mode), e.Top().Branch.Index)
}

// unionCase is one row of the union matrix: three layers (0 is the top),
// written with the dialect-neutral WH:/OPQ: markers, and what must show.
type unionCase struct {
	name   string
	layers [3][]string
	want   []expect
}

var unionMatrix = []unionCase{
	{
		name:   "lower only",
		layers: [3][]string{{"other=U"}, nil, {"f=L2"}},
		want:   []expect{file("f", 2, "L2"), file("other", 0, "U")},
	},
	{
		name:   "upper only",
		layers: [3][]string{{"f=U"}, {"g=L1"}, nil},
		want:   []expect{file("f", 0, "U"), gone("nothing")},
	},
	{
		name:   "upper and lower: top wins",
		layers: [3][]string{{"f=U"}, nil, {"f=L2"}},
		want:   []expect{file("f", 0, "U")},
	},
	{
		name:   "middle and bottom: middle wins",
		layers: [3][]string{nil, {"f=L1"}, {"f=L2"}},
		want:   []expect{file("f", 1, "L1")},
	},
	{
		name:   "whited out in the upper",
		layers: [3][]string{{"WH:f"}, {"f=L1"}, {"f=L2"}},
		want:   []expect{gone("f")},
	},
	{
		name:   "whited out in the middle",
		layers: [3][]string{nil, {"WH:f"}, {"f=L2"}},
		want:   []expect{gone("f")},
	},
	{
		name:   "whiteout with nothing below",
		layers: [3][]string{{"WH:f"}, nil, nil},
		want:   []expect{gone("f")},
	},
	{
		name:   "a whiteout below the serving copy does not matter",
		layers: [3][]string{{"f=U"}, {"WH:f"}, {"f=L2"}},
		want:   []expect{file("f", 0, "U")},
	},
	{
		name:   "whiteout in a subdirectory",
		layers: [3][]string{{"WH:d/f", "d/keep=U"}, {"d/f=L1", "d/g=L1"}, nil},
		want:   []expect{dir("d", 0, 1), gone("d/f"), file("d/g", 1, "L1"), file("d/keep", 0, "U")},
	},
	{
		name:   "a whited-out directory hides its whole tree",
		layers: [3][]string{{"WH:d"}, {"d/a=L1", "d/sub/b=L1"}, {"d/c=L2"}},
		want:   []expect{gone("d"), gone("d/a"), gone("d/sub/b"), gone("d/c")},
	},
	{
		name:   "opaque upper directory",
		layers: [3][]string{{"OPQ:d", "d/u=U"}, {"d/a=L1"}, {"d/b=L2"}},
		want:   []expect{dir("d", 0), file("d/u", 0, "U"), gone("d/a"), gone("d/b")},
	},
	{
		name:   "opaque middle directory",
		layers: [3][]string{{"d/u=U"}, {"OPQ:d", "d/m=L1"}, {"d/b=L2", "d/m=L2"}},
		want:   []expect{dir("d", 0, 1), file("d/u", 0, "U"), file("d/m", 1, "L1"), gone("d/b")},
	},
	{
		name:   "opaque parent hides a lower subtree",
		layers: [3][]string{{"OPQ:d", "d/sub/"}, {"d/sub/x=L1", "d/other/y=L1"}, nil},
		want:   []expect{dir("d/sub", 0), gone("d/sub/x"), gone("d/other"), gone("d/other/y")},
	},
	{
		name:   "file over dir",
		layers: [3][]string{{"x=U"}, {"x/in=L1"}, {"x/deep=L2"}},
		want:   []expect{file("x", 0, "U"), notDir("x/in"), notDir("x/deep")},
	},
	{
		name:   "symlink over dir",
		layers: [3][]string{{"x -> elsewhere"}, {"x/in=L1"}, nil},
		want:   []expect{symlink("x", 0), notDir("x/in")},
	},
	{
		name:   "dir over file ends the merge",
		layers: [3][]string{{"x/a=U"}, {"x=L1"}, {"x/b=L2"}},
		want:   []expect{dir("x", 0), file("x/a", 0, "U"), gone("x/b")},
	},
	{
		name:   "dir merged over three layers",
		layers: [3][]string{{"d/u=U", "d/all=U"}, {"d/m=L1", "d/all=L1", "d/sub/m=L1"}, {"d/b=L2", "d/all=L2", "d/sub/b=L2"}},
		want: []expect{
			dir("d", 0, 1, 2), dir("d/sub", 1, 2),
			file("d/u", 0, "U"), file("d/m", 1, "L1"), file("d/b", 2, "L2"), file("d/all", 0, "U"),
			file("d/sub/m", 1, "L1"), file("d/sub/b", 2, "L2"),
		},
	},
	{
		name:   "a directory only in the middle",
		layers: [3][]string{{"top=U"}, {"d/m=L1"}, nil},
		want:   []expect{dir("d", 1), file("d/m", 1, "L1")},
	},
	{
		name:   "whiteout in the upper, recreated below it is still gone",
		layers: [3][]string{{"WH:d"}, {"d/"}, {"d/x=L2"}},
		want:   []expect{gone("d"), gone("d/x")},
	},
	{
		name:   "symlinks are objects, not followed",
		layers: [3][]string{{"l -> target"}, {"target=L1"}, {"l=L2"}},
		want:   []expect{symlink("l", 0), file("target", 1, "L1")},
	},
	{
		name:   "a symlink to a directory does not lead into it",
		layers: [3][]string{{"dl -> d"}, {"d/x=L1"}, nil},
		want:   []expect{symlink("dl", 0), notDir("dl/x"), file("d/x", 1, "L1")},
	},
	{
		name:   "reserved names never resolve",
		layers: [3][]string{{"WH:f"}, {".wh..wh.plnk/", ".wh..wh.aufs", "d/.wh..wh..opq"}, {"f", ".wh.x=real?"}},
		want: []expect{
			gone(".wh.f"), gone(".wh..wh.plnk"), gone(".wh..wh.aufs"), gone("d/.wh..wh..opq"),
			gone(".wh.x"), gone(".wh..wh..opq"), gone("f"), dir("d", 1),
		},
	},
}

// TestUnionMatrix runs every row of the matrix in every whiteout dialect.
func TestUnionMatrix(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			for _, tc := range unionMatrix {
				t.Run(tc.name, func(t *testing.T) {
					s := stackOf(t, d, tc.layers[:]...)
					for _, w := range tc.want {
						w.check(t, s)
					}
				})
			}
		})
	}
}

// TestUnionAufsRecreated: the aufs rule "deleted, then created again in the
// same layer": a layer holding both name and .wh.name shows its own name
// and hides the lower ones.
func TestUnionAufsRecreated(t *testing.T) {
	s := stackOf(t, dialects[3],
		[]string{"f=new", ".wh.f", "d/u=U", ".wh.d", "lone=U", ".wh.lone"},
		[]string{"f=old", "d/old=L1", "d/u=L1"},
		[]string{"d/older=L2"},
	)
	for _, w := range []expect{
		file("f", 0, "new"), dir("d", 0), file("d/u", 0, "U"), gone("d/old"), gone("d/older"), file("lone", 0, "U"),
	} {
		w.check(t, s)
	}
	d := resolve(t, s, "d")
	if got := names(t, s, d); got != "u" {
		t.Errorf("Names(d) = %s, want u", got)
	}
	if got := names(t, s, resolve(t, s, ".")); got != "d f lone" {
		t.Errorf("Names(.) = %s", got)
	}
	// The same in a lower layer: the middle one recreates, the bottom is hidden.
	s = stackOf(t, dialects[3],
		[]string{"top=U"},
		[]string{"d/m=L1", ".wh.d"},
		[]string{"d/b=L2"},
	)
	for _, w := range []expect{dir("d", 1), file("d/m", 1, "L1"), gone("d/b")} {
		w.check(t, s)
	}
}

// TestUnionMixedDialects: a stack may mix layers from both worlds, and a
// single layer may hold both forms.
func TestUnionMixedDialects(t *testing.T) {
	testutil.NeedRoot(t, "char 0/0 whiteouts and trusted xattrs")
	s := openStack(t, trees(t, dialects[0],
		[]string{".wh.a", "c:b", "d/.wh..wh..opq", "d/u=U"},
		[]string{"o:e", "e/m=L1", "x:f", "a=L1", "g/.wh.h"},
		[]string{"a=L2", "b=L2", "d/x=L2", "e/x=L2", "f=L2", "g/h=L2", "g/i=L2"},
	)...)
	for _, w := range []expect{
		gone("a"), gone("b"), dir("d", 0), file("d/u", 0, "U"), gone("d/x"),
		dir("e", 1), file("e/m", 1, "L1"), gone("e/x"), gone("f"),
		dir("g", 1, 2), gone("g/h"), file("g/i", 2, "L2"),
	} {
		w.check(t, s)
	}
	if got := names(t, s, resolve(t, s, ".")); got != "d e g" {
		t.Errorf("Names(.) = %s, want d e g", got)
	}
}

// TestUnionOpaqueRoot: an opaque marker on a branch root is ignored, as
// kernel overlay ignores it (integration TestKernelOracleEdges checks the
// kernel agrees): the roots of every branch are merged.
func TestUnionOpaqueRoot(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			dirs := trees(t, d, []string{"u=U"}, []string{"m=L1"}, []string{"b=L2"})
			mk(t, dirs[1], d.expand([]string{"OPQ:."})...)
			s := openStack(t, dirs...)
			for _, w := range []expect{dir(".", 0, 1, 2), file("u", 0, "U"), file("m", 1, "L1"), file("b", 2, "L2")} {
				w.check(t, s)
			}
		})
	}
}

// TestLookupRefusesBadNames: Lookup takes one name, never a path, a dot
// name or a marker.
func TestLookupRefusesBadNames(t *testing.T) {
	s := stackOf(t, dialects[3], []string{"d/f=U", ".wh.x", "x"}, []string{".wh..wh.plnk/"}, nil)
	root := resolve(t, s, ".")
	for _, name := range []string{"", ".", "..", "d/f", "/d", ".wh.x", ".wh..wh.plnk", ".wh..wh..opq", ".wh."} {
		if e, err := s.Lookup(root, name); !errors.Is(err, branches.ErrNotExist) {
			t.Errorf("Lookup(%q) = %v, %v; want ErrNotExist", name, describe(e), err)
		}
	}
	if e, err := s.Lookup(root, "x"); err != nil || e.Top().Branch.Index != 0 {
		t.Errorf("Lookup(x) = %v, %v", describe(e), err)
	}
}

func names(t testing.TB, s *branches.Stack, dir *branches.Entry) string {
	t.Helper()
	list, err := s.Names(dir)
	if err != nil {
		t.Fatalf("Names(%s): %v", dir.Path, err)
	}
	var out []string
	for _, n := range list {
		out = append(out, n.Name)
	}
	return strings.Join(out, " ")
}

func TestExplain(t *testing.T) {
	type obs struct {
		verdict  branches.Verdict
		marker   whiteout.Kind // Observation.Marker
		hiddenBy int           // branch index of HiddenBy, -1 when nil
		byMarker whiteout.Kind // HiddenBy.Marker
		byType   uint32        // HiddenBy.Type
		reason   string        // contained in Reason()
	}
	none := func(v branches.Verdict) obs { return obs{verdict: v, hiddenBy: -1} }
	tests := []struct {
		name    string
		d       dialect
		layers  [3][]string
		lookup  string
		present bool
		want    []obs
	}{
		{
			name:   "whiteout hides two lower copies",
			d:      dialects[3],
			layers: [3][]string{{"WH:f"}, {"f=L1"}, {"f=L2"}},
			lookup: "f",
			want: []obs{
				{verdict: branches.Marker, marker: whiteout.AufsFile, hiddenBy: -1},
				{verdict: branches.Hidden, hiddenBy: 0, byMarker: whiteout.AufsFile, reason: "aufs whiteout"},
				{verdict: branches.Hidden, hiddenBy: 0, byMarker: whiteout.AufsFile, reason: "aufs whiteout"},
			},
		},
		{
			name:   "xattr whiteout in the middle",
			d:      dialects[2],
			layers: [3][]string{nil, {"WH:f"}, {"f=L2"}},
			lookup: "f",
			want: []obs{
				none(branches.Absent),
				{verdict: branches.Marker, marker: whiteout.OverlayXattr, hiddenBy: -1},
				{verdict: branches.Hidden, hiddenBy: 1, byMarker: whiteout.OverlayXattr, reason: "xattr"},
			},
		},
		{
			name:    "file shadows files",
			d:       dialects[3],
			layers:  [3][]string{{"f=U"}, nil, {"f=L2"}},
			lookup:  "f",
			present: true,
			want: []obs{
				none(branches.Serves),
				none(branches.Absent),
				{verdict: branches.Hidden, hiddenBy: 0, byType: unix.S_IFREG, reason: "shadowed by a file"},
			},
		},
		{
			name:    "file over dir",
			d:       dialects[3],
			layers:  [3][]string{{"x=U"}, {"x/"}, nil},
			lookup:  "x",
			present: true,
			want: []obs{
				none(branches.Serves),
				{verdict: branches.Hidden, hiddenBy: 0, byType: unix.S_IFREG, reason: "file over dir"},
				none(branches.Absent),
			},
		},
		{
			name:    "dir over file, and the merge ends there",
			d:       dialects[3],
			layers:  [3][]string{{"x/"}, {"x=L1"}, {"x/"}},
			lookup:  "x",
			present: true,
			want: []obs{
				none(branches.Serves),
				{verdict: branches.Hidden, hiddenBy: 0, byType: unix.S_IFDIR, reason: "dir over file"},
				{verdict: branches.Hidden, hiddenBy: 0, byType: unix.S_IFDIR},
			},
		},
		{
			name:    "merged down to an opaque copy",
			d:       dialects[3],
			layers:  [3][]string{{"d/"}, {"OPQ:d"}, {"d/"}},
			lookup:  "d",
			present: true,
			want: []obs{
				none(branches.Serves),
				{verdict: branches.Merged, marker: whiteout.OpaqueAufs, hiddenBy: -1},
				{verdict: branches.Hidden, hiddenBy: 1, byMarker: whiteout.OpaqueAufs, reason: "opaque"},
			},
		},
		{
			name:    "overlay opaque on the serving copy",
			d:       dialects[2],
			layers:  [3][]string{{"OPQ:d"}, {"d/"}, nil},
			lookup:  "d",
			present: true,
			want: []obs{
				{verdict: branches.Serves, marker: whiteout.OpaqueOverlay, hiddenBy: -1},
				{verdict: branches.Hidden, hiddenBy: 0, byMarker: whiteout.OpaqueOverlay},
				none(branches.Absent),
			},
		},
		{
			name:    "aufs recreated",
			d:       dialects[3],
			layers:  [3][]string{nil, {"f=L1", ".wh.f"}, {"f=L2"}},
			lookup:  "f",
			present: true,
			want: []obs{
				none(branches.Absent),
				{verdict: branches.Serves, marker: whiteout.AufsFile, hiddenBy: -1},
				{verdict: branches.Hidden, hiddenBy: 1, byType: unix.S_IFREG},
			},
		},
		{
			name:   "absent everywhere",
			d:      dialects[3],
			layers: [3][]string{{"a"}, {"b"}, {"c"}},
			lookup: "f",
			want:   []obs{none(branches.Absent), none(branches.Absent), none(branches.Absent)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := stackOf(t, tc.d, tc.layers[:]...)
			root := resolve(t, s, ".")
			e, got, err := s.Explain(root, tc.lookup)
			if err != nil {
				t.Fatalf("Explain: %v", err)
			}
			if (e != nil) != tc.present {
				t.Errorf("Explain entry = %v, want present %v", describe(e), tc.present)
			}
			if e != nil {
				if l, err := s.Lookup(root, tc.lookup); err != nil || l.Ino != e.Ino || l.Top().Branch != e.Top().Branch {
					t.Errorf("Explain and Lookup disagree: %v vs %v, %v", describe(e), describe(l), err)
				}
			} else if _, err := s.Lookup(root, tc.lookup); !errors.Is(err, branches.ErrNotExist) {
				t.Errorf("Explain shows nothing but Lookup says %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d observations, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, o := range got {
				w := tc.want[i]
				if o.Branch.Index != i {
					t.Errorf("observation %d is of branch %d", i, o.Branch.Index)
				}
				if o.Verdict != w.verdict || o.Marker != w.marker {
					t.Errorf("branch %d: %v/%v, want %v/%v", i, o.Verdict, o.Marker, w.verdict, w.marker)
				}
				if w.hiddenBy < 0 {
					if o.HiddenBy != nil {
						t.Errorf("branch %d: HiddenBy %+v, want nil", i, *o.HiddenBy)
					}
					if o.Reason() != "" {
						t.Errorf("branch %d: Reason %q for a copy that is not hidden", i, o.Reason())
					}
					continue
				}
				if o.HiddenBy == nil {
					t.Errorf("branch %d: HiddenBy nil, want branch %d", i, w.hiddenBy)
					continue
				}
				if o.HiddenBy.Branch.Index != w.hiddenBy || o.HiddenBy.Marker != w.byMarker || o.HiddenBy.Type != w.byType {
					t.Errorf("branch %d: HiddenBy {branch %d, %v, %s}, want {branch %d, %v, %s}", i,
						o.HiddenBy.Branch.Index, o.HiddenBy.Marker, branches.TypeName(o.HiddenBy.Type),
						w.hiddenBy, w.byMarker, branches.TypeName(w.byType))
				}
				if !strings.Contains(o.Reason(), w.reason) {
					t.Errorf("branch %d: Reason %q, want it to contain %q", i, o.Reason(), w.reason)
				}
			}
		})
	}
}

func TestExplainCharWhiteout(t *testing.T) {
	testutil.NeedRoot(t, "char 0/0 whiteouts")
	s := stackOf(t, dialects[0], []string{"f=U"}, []string{"WH:f"}, []string{"f=L2"})
	_, obs, err := s.Explain(resolve(t, s, "."), "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(obs) != 3 || obs[0].Verdict != branches.Serves || obs[1].Verdict != branches.Hidden || obs[2].Verdict != branches.Hidden {
		t.Fatalf("observations %+v", obs)
	}
	if obs[2].HiddenBy.Branch.Index != 0 || obs[2].HiddenBy.Type != unix.S_IFREG {
		t.Errorf("bottom hidden by %+v, want the upper file", obs[2].HiddenBy)
	}
	_, obs, err = s.Explain(resolve(t, s, "."), ".wh.f")
	if err != nil || len(obs) != 0 {
		t.Errorf("Explain of a reserved name: %+v, %v", obs, err)
	}
}

func TestNames(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			s := stackOf(t, d,
				[]string{"d/zeta=U", "WH:d/beta", "d/sub/", "WH:d/gone", "d/shadow=U", "top=U", "WH:hidden"},
				[]string{"d/beta=L1", "d/alpha=L1", "d/shadow/", "WH:d/delta", "d/.wh..wh.plnk/", "d/gone/", "hidden/"},
				[]string{"d/delta=L2", "d/epsilon=L2", "d/alpha=L2", "d/Upper=L2", "d/gone=L2", "bottom/", "hidden=x"},
			)
			tests := []struct {
				dir  string
				want []branches.Name
			}{
				{".", []branches.Name{{"bottom", unix.DT_DIR}, {"d", unix.DT_DIR}, {"top", unix.DT_REG}}},
				{"d", []branches.Name{
					{"Upper", unix.DT_REG}, {"alpha", unix.DT_REG}, {"epsilon", unix.DT_REG},
					{"shadow", unix.DT_REG}, {"sub", unix.DT_DIR}, {"zeta", unix.DT_REG},
				}},
				{"d/sub", nil},
			}
			for _, tc := range tests {
				e := resolve(t, s, tc.dir)
				got, err := s.Names(e)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("Names(%s) = %v\nwant %v", tc.dir, got, tc.want)
				}
				// Every listed name resolves, and nothing else in the
				// branches does.
				for _, n := range got {
					if _, err := s.Lookup(e, n.Name); err != nil {
						t.Errorf("listed %s/%s does not resolve: %v", tc.dir, n.Name, err)
					}
				}
			}
			for _, p := range []string{"d/beta", "d/delta", "d/gone", "hidden", "d/.wh..wh.plnk"} {
				gone(p).check(t, s)
			}
			if _, err := s.Names(resolve(t, s, "top")); !errors.Is(err, unix.ENOTDIR) {
				t.Errorf("Names of a file: %v, want ENOTDIR", err)
			}
		})
	}
}

// TestReadDirMatchesLookup: each ReadDir entry is what Lookup returns for
// its name (inode numbers included), and Attr reports Ino and Nlink.
func TestReadDirMatchesLookup(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			s := stackOf(t, d,
				[]string{"d/a=U", "d/sub1/", "WH:d/c", "d/x/", "l -> d"},
				[]string{"d/b=L1", "d/sub2/", "d/c/", "d/x=L1", "OPQ:d/sub2"},
				[]string{"d/sub2/deep=L2", "d/sub3/", "d/c=L2", "d/hl=L2", "d/hl2 => d/hl"},
			)
			for _, dirPath := range []string{".", "d", "d/sub1", "d/sub2", "d/x"} {
				dir := resolve(t, s, dirPath)
				list, err := s.ReadDir(dir)
				if err != nil {
					t.Fatalf("ReadDir(%s): %v", dirPath, err)
				}
				nameList, err := s.Names(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(list) != len(nameList) {
					t.Errorf("ReadDir(%s) has %d entries, Names %d", dirPath, len(list), len(nameList))
				}
				for i, e := range list {
					if e.Name() != nameList[i].Name {
						t.Errorf("ReadDir(%s)[%d] = %s, Names says %s", dirPath, i, e.Name(), nameList[i].Name)
					}
					if got := whiteout.DirentType(e.St.Mode); got != nameList[i].Type {
						t.Errorf("%s: Names type %d, entry type %d", e.Path, nameList[i].Type, got)
					}
					l, err := s.Lookup(dir, e.Name())
					if err != nil {
						t.Fatalf("Lookup(%s, %s): %v", dirPath, e.Name(), err)
					}
					if l.Ino != e.Ino || !slices.Equal(layerIndexes(l), layerIndexes(e)) {
						t.Errorf("%s: ReadDir ino %d layers %v, Lookup ino %d layers %v",
							e.Path, e.Ino, layerIndexes(e), l.Ino, layerIndexes(l))
					}
					if r := resolve(t, s, e.Path); r.Ino != e.Ino {
						t.Errorf("%s: Resolve ino %d, ReadDir ino %d", e.Path, r.Ino, e.Ino)
					}
					st, err := s.Attr(e)
					if err != nil {
						t.Fatal(err)
					}
					if st.Ino != e.Ino {
						t.Errorf("%s: Attr ino %d, entry ino %d", e.Path, st.Ino, e.Ino)
					}
				}
			}
			if got := names(t, s, resolve(t, s, "d")); got != "a b hl hl2 sub1 sub2 sub3 x" {
				t.Errorf("Names(d) = %s", got)
			}
		})
	}
}

func TestNlink(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			s := stackOf(t, d,
				[]string{"d/u1/", "d/u2/", "d/f=U", "WH:d/gone", "d/over=U", "d/link -> u1", "empty/"},
				[]string{"d/m1/", "d/u1/", "d/gone/", "d/over/", "OPQ:d/opq"},
				[]string{"d/b1/", "d/b2/", "d/m1/", "d/b1/x/", "d/opq/hidden/", "d/opq/shown=x"},
			)
			tests := []struct {
				path string
				want uint64
			}{
				// u1 u2 m1 b1 b2 opq; not gone (whited out), over (a file
				// over a dir), link (a symlink), f.
				{"d", 2 + 6},
				{"d/b1", 2 + 1},
				{"d/u1", 2},
				{"d/opq", 2},
				{"empty", 2},
				{".", 2 + 2},
				{"d/f", 1},
			}
			for _, tc := range tests {
				e := resolve(t, s, tc.path)
				n, err := s.Nlink(e)
				if err != nil {
					t.Fatal(err)
				}
				if n != tc.want {
					t.Errorf("Nlink(%s) = %d, want %d", tc.path, n, tc.want)
				}
				st, err := s.Attr(e)
				if err != nil {
					t.Fatal(err)
				}
				if st.Nlink != tc.want {
					t.Errorf("Attr(%s).Nlink = %d, want %d", tc.path, st.Nlink, tc.want)
				}
			}
		})
	}
}

func TestInodeNumbers(t *testing.T) {
	d := dialects[3]
	dirs := trees(t, d,
		[]string{"u=U", "same=U", "dir/u=U", "only-up/"},
		[]string{"m=L1", "same=L1", "dir/m=L1", "hl1=shared", "hl2 => hl1", "sub/hl3 => hl1"},
		[]string{"b=L2", "same=L2", "dir/b=L2"},
	)
	paths := []string{".", "u", "m", "b", "same", "dir", "dir/u", "dir/m", "dir/b", "only-up", "hl1", "hl2", "sub", "sub/hl3"}
	inos := func(s *branches.Stack) map[string]uint64 {
		out := map[string]uint64{}
		for _, p := range paths {
			out[p] = resolve(t, s, p).Ino
		}
		return out
	}
	first := inos(openStack(t, dirs...))

	t.Run("distinct", func(t *testing.T) {
		byIno := map[uint64]string{}
		for _, p := range paths {
			ino := first[p]
			if ino == 0 {
				t.Errorf("%s: inode number 0", p)
			}
			if other, dup := byIno[ino]; dup && !(strings.HasPrefix(p, "hl") || strings.HasPrefix(p, "sub/hl")) {
				t.Errorf("%s and %s share inode %d", p, other, ino)
			}
			byIno[ino] = p
		}
	})
	t.Run("stable across Open", func(t *testing.T) {
		second := inos(openStack(t, dirs...))
		for _, p := range paths {
			if first[p] != second[p] {
				t.Errorf("%s: inode %d, then %d", p, first[p], second[p])
			}
		}
	})
	t.Run("hard links", func(t *testing.T) {
		s := openStack(t, dirs...)
		for _, p := range []string{"hl2", "sub/hl3"} {
			if first[p] != first["hl1"] {
				t.Errorf("%s: inode %d, hl1 %d", p, first[p], first["hl1"])
			}
			st, err := s.Attr(resolve(t, s, p))
			if err != nil {
				t.Fatal(err)
			}
			if st.Nlink != 3 {
				t.Errorf("%s: Nlink %d, want 3", p, st.Nlink)
			}
		}
	})
	t.Run("a directory keeps its number when a higher branch gets a copy", func(t *testing.T) {
		// The number of a merged directory comes from its bottom copy, so
		// creating the directory in the upper (as copy-up does) keeps it.
		mk(t, dirs[0], "sub/")
		s := openStack(t, dirs...)
		e := resolve(t, s, "sub")
		if got := layerIndexes(e); !slices.Equal(got, []int{0, 1}) {
			t.Fatalf("sub layers %v", got)
		}
		if e.Ino != first["sub"] {
			t.Errorf("sub: inode %d after the upper copy, %d before", e.Ino, first["sub"])
		}
		var st unix.Stat_t
		if err := s.StatLayer(e.Layers[1], &st); err != nil {
			t.Fatal(err)
		}
		if e.St.Ino == st.Ino {
			t.Errorf("St should be the upper copy's")
		}
	})
}

func TestHardLinkPair(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			s := stackOf(t, d, []string{"top=U"}, []string{"a=data", "b => a", "x=other"}, nil)
			a, b, x := resolve(t, s, "a"), resolve(t, s, "b"), resolve(t, s, "x")
			if a.Ino != b.Ino {
				t.Errorf("hard links a, b: inodes %d and %d", a.Ino, b.Ino)
			}
			if a.Ino == x.Ino {
				t.Errorf("a and x share inode %d", a.Ino)
			}
			for _, e := range []*branches.Entry{a, b} {
				st, err := s.Attr(e)
				if err != nil {
					t.Fatal(err)
				}
				if st.Nlink != 2 {
					t.Errorf("%s: Nlink %d, want 2", e.Path, st.Nlink)
				}
				if st.Ino != a.Ino {
					t.Errorf("%s: Attr ino %d", e.Path, st.Ino)
				}
			}
			// ReadDir agrees.
			list, err := s.ReadDir(resolve(t, s, "."))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range list {
				if (e.Name() == "a" || e.Name() == "b") && e.Ino != a.Ino {
					t.Errorf("ReadDir %s: ino %d, want %d", e.Name(), e.Ino, a.Ino)
				}
			}
		})
	}
}

// TestInodeNumbersAcrossFilesystems: branches on different filesystems may
// hold objects with the same st_ino; the union numbers must still differ.
func TestInodeNumbersAcrossFilesystems(t *testing.T) {
	testutil.NeedRoot(t, "mount -t tmpfs")
	a, b := mountTmpfs(t), mountTmpfs(t)
	mk(t, a, "fa=A")
	mk(t, b, "fb=B")
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a+"/fa", &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(b+"/fb", &sb); err != nil {
		t.Fatal(err)
	}
	s := openStack(t, a, b)
	ea, eb := resolve(t, s, "fa"), resolve(t, s, "fb")
	if ea.Ino == eb.Ino {
		t.Errorf("fa (st_ino %d) and fb (st_ino %d) share union inode %d", sa.Ino, sb.Ino, ea.Ino)
	}
	if sa.Ino != sb.Ino {
		t.Logf("note: tmpfs gave different st_ino (%d, %d); the collision is not exercised", sa.Ino, sb.Ino)
	}
	// Stable across Open, and independent of which files were looked up.
	s2 := openStack(t, a, b)
	if eb2 := resolve(t, s2, "fb"); eb2.Ino != eb.Ino {
		t.Errorf("fb: %d, then %d", eb.Ino, eb2.Ino)
	}
}
