package branches_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// explainMatrix is the union matrix explain is checked over: one writable
// stack (upper, lower1, lower2) holding every case side by side, in every
// marker format, then changed through the library (a copy-up, a directory
// rename).
var explainMatrix = struct {
	upper, lower1, lower2 []string
}{
	upper: []string{
		"up=U", "both=U",
		"c:wc", ".wh.wa", "x:xd/w", "tx:txd/w", // whiteouts in each format
		"o:od/", "oa/", "oa/.wh..wh..opq", // opaque dirs in each format
		"nd=U", "dn/", // a file over a dir, a dir over a file
		"m/a=U", "c:m/gone", // a merged directory
		"re=U", ".wh.re", // aufs "deleted, then created again"
	},
	lower1: []string{"m/b=L1", "m/.wh.z", "wa=L1"},
	lower2: []string{
		"lo=L2", "both=L2", "wc=L2", "wa=L2", "xd/w=L2", "txd/w=L2",
		"od/f=L2", "oa/f=L2", "nd/f=L2", "dn=L2",
		"m/a=L2", "m/gone=L2", "m/z=L2", "m/c=L2",
		"cu=L2", "old/f=L2", "re=L2",
	},
}

// hold is what a report must say about one branch; empty fields are not
// checked. Branches a case does not list must be "absent".
type hold struct {
	branch, at, holds, whiteout, opaque, redirect, verdict string
	hiddenBy, hiddenAt, what                               string // what: a substring
}

type explainCase struct {
	path     string
	exists   bool
	servedBy string
	typ      string
	why      string // substring of MissingWhy
	redirect string
	copied   string // CopiedUp.From.Name
	holds    []hold
	names    []string // a directory's merged listing
}

var explainCases = []explainCase{
	{path: "lo", exists: true, servedBy: "lower2", typ: "file",
		holds: []hold{{branch: "lower2", holds: "file", verdict: "serves"}}},
	{path: "up", exists: true, servedBy: "upper", typ: "file",
		holds: []hold{{branch: "upper", holds: "file", verdict: "serves"}}},
	{path: "both", exists: true, servedBy: "upper",
		holds: []hold{{branch: "upper", verdict: "serves"}, {branch: "lower2", holds: "file", verdict: "hidden", hiddenBy: "upper", hiddenAt: "both", what: "shadowed by a file"}}},
	{path: "wc", why: "wc is whited out in upper (overlay whiteout (char 0/0))",
		holds: []hold{{branch: "upper", holds: "whiteout", whiteout: "overlay whiteout (char 0/0)", verdict: "whiteout"}, {branch: "lower2", verdict: "hidden", hiddenBy: "upper", what: "char 0/0"}}},
	{path: "wa", why: "wa is whited out in upper (aufs whiteout",
		holds: []hold{{branch: "upper", holds: "whiteout", whiteout: "aufs whiteout (.wh. file)", verdict: "whiteout"},
			{branch: "lower1", verdict: "hidden", hiddenBy: "upper", what: "aufs"}, {branch: "lower2", verdict: "hidden", hiddenBy: "upper", what: "aufs"}}},
	{path: "xd/w", why: "overlay whiteout (xattr)",
		holds: []hold{{branch: "upper", at: "xd/w", holds: "whiteout", whiteout: "overlay whiteout (xattr)", verdict: "whiteout"}, {branch: "lower2", verdict: "hidden", what: "xattr"}}},
	{path: "txd/w", why: "overlay whiteout (xattr)",
		holds: []hold{{branch: "upper", holds: "whiteout", verdict: "whiteout"}, {branch: "lower2", verdict: "hidden", hiddenBy: "upper", what: "xattr"}}},
	{path: "od", exists: true, servedBy: "upper", typ: "dir",
		holds: []hold{{branch: "upper", opaque: "opaque dir (overlay.opaque xattr)", verdict: "serves"}, {branch: "lower2", holds: "dir", verdict: "hidden", hiddenBy: "upper", what: "opaque"}},
		names: []string{}},
	{path: "od/f", why: "every copy of od/f is hidden: lower2's by opaque dir (overlay.opaque xattr) at od in upper",
		holds: []hold{{branch: "lower2", at: "od/f", holds: "file", verdict: "hidden", hiddenBy: "upper", hiddenAt: "od", what: "opaque dir (overlay.opaque xattr)"}}},
	{path: "oa/f", why: "every copy of oa/f is hidden",
		holds: []hold{{branch: "lower2", holds: "file", verdict: "hidden", hiddenBy: "upper", hiddenAt: "oa", what: "opaque dir (.wh..wh..opq)"}}},
	{path: "nd", exists: true, servedBy: "upper", typ: "file",
		holds: []hold{{branch: "upper", holds: "file", verdict: "serves"}, {branch: "lower2", holds: "dir", verdict: "hidden", what: "file over dir"}}},
	{path: "nd/f", why: "nd is a file, not a directory (served by upper)",
		holds: []hold{{branch: "lower2", holds: "file", verdict: "hidden", hiddenAt: "nd", what: "file over dir"}}},
	{path: "dn", exists: true, servedBy: "upper", typ: "dir",
		holds: []hold{{branch: "upper", holds: "dir", verdict: "serves"}, {branch: "lower2", holds: "file", verdict: "hidden", what: "dir over file"}},
		names: []string{}},
	{path: "m", exists: true, servedBy: "upper", typ: "dir",
		holds: []hold{{branch: "upper", verdict: "serves"}, {branch: "lower1", verdict: "merged"}, {branch: "lower2", verdict: "merged"}},
		names: []string{"a", "b", "c"}},
	{path: "m/gone", why: "whited out in upper",
		holds: []hold{{branch: "upper", verdict: "whiteout"}, {branch: "lower2", verdict: "hidden", hiddenBy: "upper"}}},
	{path: "m/z", why: "m/z is whited out in lower1 (aufs",
		holds: []hold{{branch: "lower1", holds: "whiteout", verdict: "whiteout"}, {branch: "lower2", verdict: "hidden", hiddenBy: "lower1", what: "aufs"}}},
	{path: "re", exists: true, servedBy: "upper",
		holds: []hold{{branch: "upper", holds: "file", whiteout: "aufs whiteout (.wh. file)", verdict: "serves"}, {branch: "lower2", verdict: "hidden", hiddenBy: "upper"}}},
	{path: "cu", exists: true, servedBy: "upper", copied: "lower2",
		holds: []hold{{branch: "upper", holds: "file", verdict: "serves"}, {branch: "lower2", holds: "file", verdict: "hidden", what: "shadowed by a file"}}},
	{path: "new", exists: true, servedBy: "upper", typ: "dir", redirect: "/old", copied: "lower2",
		holds: []hold{{branch: "upper", at: "new", redirect: "/old", verdict: "serves"}, {branch: "lower2", at: "old", holds: "dir", verdict: "merged"}},
		names: []string{"f"}},
	{path: "new/f", exists: true, servedBy: "lower2",
		holds: []hold{{branch: "lower2", at: "old/f", holds: "file", verdict: "serves"}}},
	{path: "old", why: "whited out in upper (overlay whiteout (char 0/0))",
		holds: []hold{{branch: "upper", verdict: "whiteout"}, {branch: "lower2", holds: "dir", verdict: "hidden", hiddenBy: "upper"}}},
	{path: "old/f", why: "old is whited out in upper (overlay whiteout (char 0/0))",
		holds: []hold{{branch: "lower2", holds: "file", verdict: "hidden", hiddenAt: "old"}}},
	{path: ".wh.wa", why: ".wh.wa is a marker name",
		holds: []hold{{branch: "upper", verdict: "hidden", what: "reserved"}}},
	{path: "nothere", why: "no branch has nothere"},
	{path: "lo/x", why: "lo is a file, not a directory"},
}

// newExplainMatrix builds the matrix and makes its changes (copy up cu,
// rename old to new) through the stack. It returns the stack and cu's inode
// number before the copy-up.
func newExplainMatrix(t *testing.T) (*wstack, uint64) {
	t.Helper()
	testutil.NeedRoot(t, "char 0/0 whiteouts and trusted.* markers")
	m := explainMatrix
	w := newWStack(t, writeDialects[0], m.upper, m.lower1, m.lower2)
	cu := w.resolve(t, "cu")
	_, fd, err := w.s.OpenWrite(cu, unix.O_WRONLY|unix.O_APPEND)
	if err != nil {
		t.Fatalf("OpenWrite(cu): %v", err)
	}
	unix.Close(fd)
	root := w.resolve(t, ".")
	if err := w.s.Rename(root, "old", root, "new", 0); err != nil {
		t.Fatalf("Rename(old, new): %v", err)
	}
	return w, cu.Ino
}

func TestExplainPathMatrix(t *testing.T) {
	w, cuIno := newExplainMatrix(t)
	for _, tc := range explainCases {
		t.Run(tc.path, func(t *testing.T) {
			r, err := w.s.ExplainPath(tc.path)
			if err != nil {
				t.Fatalf("ExplainPath: %v", err)
			}
			checkReport(t, w.s, tc, r)
			if tc.path == "cu" && r.Ino != cuIno {
				t.Errorf("cu: ino %d after copy-up, %d before", r.Ino, cuIno)
			}
		})
	}
}

// checkReport checks r against tc, and against the library's own answer
// (Resolve, Names) for the same path.
func checkReport(t *testing.T, s *branches.Stack, tc explainCase, r *branches.Report) {
	t.Helper()
	if r.Exists != tc.exists {
		t.Fatalf("exists = %v, want %v (%s)", r.Exists, tc.exists, r.Summary)
	}
	e, err := s.Resolve(tc.path)
	switch {
	case tc.exists && err != nil:
		t.Errorf("Resolve: %v, but the report says it exists", err)
	case tc.exists && e.Ino != r.Ino:
		t.Errorf("ino %d, Resolve says %d", r.Ino, e.Ino)
	case !tc.exists && !errors.Is(err, branches.ErrNotExist) && !errors.Is(err, unix.ENOTDIR):
		t.Errorf("Resolve = %v, but the report says it does not exist", err)
	}
	if !tc.exists && !strings.Contains(r.MissingWhy, tc.why) {
		t.Errorf("missing_why = %q, want it to contain %q", r.MissingWhy, tc.why)
	}
	if tc.servedBy != "" && (r.ServedBy == nil || r.ServedBy.Name != tc.servedBy) {
		t.Errorf("served_by = %+v, want %s", r.ServedBy, tc.servedBy)
	}
	if tc.typ != "" && r.Type != tc.typ {
		t.Errorf("type = %q, want %q", r.Type, tc.typ)
	}
	if r.Redirect != tc.redirect {
		t.Errorf("redirect = %q, want %q", r.Redirect, tc.redirect)
	}
	if tc.copied != "" && (r.CopiedUp == nil || r.CopiedUp.From == nil || r.CopiedUp.From.Name != tc.copied) {
		t.Errorf("copied_up = %+v, want from %s", r.CopiedUp, tc.copied)
	}
	if tc.copied == "" && r.CopiedUp != nil {
		t.Errorf("copied_up = %+v, want none", r.CopiedUp)
	}
	if len(r.Branches) != len(s.Branches()) {
		t.Fatalf("%d branches reported, the stack has %d", len(r.Branches), len(s.Branches()))
	}
	for _, got := range r.Branches {
		want := hold{branch: got.Branch.Name, verdict: "absent"}
		for _, h := range tc.holds {
			if h.branch == got.Branch.Name {
				want = h
			}
		}
		checkHolding(t, want, got)
	}
	if tc.names != nil {
		if r.Listing == nil {
			t.Fatalf("no listing for a directory")
		}
		if !slices.Equal(r.Listing.Names, tc.names) {
			t.Errorf("listing %v, want %v", r.Listing.Names, tc.names)
		}
		names, err := s.Names(e)
		if err != nil {
			t.Fatal(err)
		}
		var lib []string
		for _, n := range names {
			lib = append(lib, n.Name)
		}
		if !slices.Equal(r.Listing.Names, lib) && !(len(lib) == 0 && len(r.Listing.Names) == 0) {
			t.Errorf("listing %v, but Names says %v", r.Listing.Names, lib)
		}
	}
	if t.Failed() {
		b, _ := json.MarshalIndent(r, "", "  ")
		t.Logf("report:\n%s", b)
	}
}

func checkHolding(t *testing.T, want hold, got branches.Holding) {
	t.Helper()
	field := func(name, want, got string) {
		t.Helper()
		if want != "" && got != want {
			t.Errorf("%s: %s = %q, want %q", want, name, got, want)
		}
	}
	field("at", want.at, got.At)
	field("holds", want.holds, got.Holds)
	field("whiteout", want.whiteout, got.Whiteout)
	field("opaque", want.opaque, got.Opaque)
	field("redirect", want.redirect, got.Redirect)
	field("verdict", want.verdict, got.Verdict)
	hb := got.HiddenBy
	if want.hiddenBy == "" && want.hiddenAt == "" && want.what == "" {
		return
	}
	if hb == nil {
		t.Errorf("%s: hidden_by missing, want %+v", got.Branch.Name, want)
		return
	}
	field("hidden_by.branch", want.hiddenBy, hb.Branch)
	field("hidden_by.at", want.hiddenAt, hb.At)
	if !strings.Contains(hb.What, want.what) {
		t.Errorf("%s: hidden_by.what = %q, want it to contain %q", got.Branch.Name, hb.What, want.what)
	}
}

// TestExplainPathRoot: the root is every branch merged, and explaining it
// lists the merged root.
func TestExplainPathRoot(t *testing.T) {
	w, _ := newExplainMatrix(t)
	for _, p := range []string{"", ".", "/"} {
		r, err := w.s.ExplainPath(p)
		if err != nil {
			t.Fatalf("ExplainPath(%q): %v", p, err)
		}
		if r.Path != "." || !r.Exists || r.Type != "dir" || r.Listing == nil {
			t.Fatalf("ExplainPath(%q) = %+v", p, r)
		}
		for _, h := range r.Branches {
			if h.Verdict != "serves" && h.Verdict != "merged" {
				t.Errorf("root in %s: verdict %s", h.Branch.Name, h.Verdict)
			}
		}
	}
	if _, err := w.s.ExplainPath("a/../../etc"); err == nil {
		t.Errorf("ExplainPath accepted a path with ..")
	}
}

// TestExplainReadOnlyStack: explaining from a read-only stack over the same
// branches (what `strata explain -o` does) gives the same report as the
// writable stack that made the changes, inode numbers of copied-up files
// included.
func TestExplainReadOnlyStack(t *testing.T) {
	w, _ := newExplainMatrix(t)
	ro := *w.opts
	ro.ReadOnly = true
	s, err := branches.Open(&ro, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range explainCases {
		a, errA := w.s.ExplainPath(tc.path)
		b, errB := s.ExplainPath(tc.path)
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v, %v", tc.path, errA, errB)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("%s: writable and read-only stacks disagree:\n%s\n%s", tc.path, ja, jb)
		}
	}
}
