package whiteout_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

func inspect(t *testing.T, dir string) *whiteout.Inventory {
	t.Helper()
	inv, err := whiteout.Inspect(testutil.OpenDir(t, dir))
	if err != nil {
		t.Fatalf("Inspect(%s): %v", dir, err)
	}
	return inv
}

// plantedProblems are the inconsistencies Inspect must find, each planted
// by its build function in a branch that is otherwise clean.
var plantedProblems = []struct {
	code, path string
	build      func(t *testing.T, dir string)
}{
	{whiteout.ProblemWhiteoutBesideObject, "x", func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, "x"), "again")
		testutil.WriteFile(t, filepath.Join(d, ".wh.x"), "")
	}},
	{whiteout.ProblemMixedFormat, "c", func(t *testing.T, d string) {
		for _, n := range []string{".wh.a", ".wh.b", "sub/.wh..wh..opq"} {
			testutil.WriteFile(t, filepath.Join(d, n), "")
		}
		charWhiteout(t, filepath.Join(d, "c"))
	}},
	{whiteout.ProblemBadRedirect, "d", func(t *testing.T, d string) {
		testutil.Mkdirs(t, filepath.Join(d, "d"))
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "d"), "user.overlay.redirect", "/a/../../etc")
	}},
	{whiteout.ProblemInertXattrWhiteout, "f", func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, "f"), "")
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "f"), "user.overlay.whiteout", "y")
	}},
	{whiteout.ProblemMarkerNotEmpty, ".wh.y", func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, ".wh.y"), "not empty")
	}},
	{whiteout.ProblemBadOpaqueValue, "o", func(t *testing.T, d string) {
		testutil.Mkdirs(t, filepath.Join(d, "o"))
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "o"), "user.overlay.opaque", "maybe")
	}},
	{whiteout.ProblemMetacopy, "m", func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, "m"), "")
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "m"), "trusted.overlay.metacopy", "")
	}},
	{whiteout.ProblemScratchLeftovers, whiteout.StrataScratch, func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, whiteout.StrataScratch, "strata", "tmp.1.1"), "half a copy")
	}},
	{whiteout.ProblemRootOpaque, whiteout.AufsOpaque, func(t *testing.T, d string) {
		testutil.WriteFile(t, filepath.Join(d, whiteout.AufsOpaque), "")
	}},
}

// TestInspectFindsEachPlantedProblem plants each inconsistency alone, then
// all of them in one branch: Inspect finds each, and nothing else.
func TestInspectFindsEachPlantedProblem(t *testing.T) {
	all := t.TempDir()
	planted := map[string]bool{} // some need root
	for _, pp := range plantedProblems {
		t.Run(pp.code, func(t *testing.T) {
			dir := t.TempDir()
			pp.build(t, dir)
			inv := inspect(t, dir)
			if len(inv.Problems) != 1 || inv.Problems[0].Code != pp.code || inv.Problems[0].Path != pp.path {
				t.Errorf("problems = %+v, want one %s at %s", inv.Problems, pp.code, pp.path)
			}
			if inv.Problems[0].Detail == "" {
				t.Errorf("%s: no detail", pp.code)
			}
			pp.build(t, filepath.Join(all, pp.code))
			planted[pp.code] = true
		})
	}
	inv := inspect(t, all)
	var got []string
	for _, p := range inv.Problems {
		got = append(got, p.Code+" "+p.Path)
	}
	for _, pp := range plantedProblems {
		want := pp.code + " " + filepath.Join(pp.code, pp.path)
		if pp.code == whiteout.ProblemRootOpaque || !planted[pp.code] {
			continue // only a branch root's opaque marker is one
		}
		if !slices.Contains(got, want) {
			t.Errorf("all planted in one branch: %q not found in %q", want, got)
		}
	}
}

// TestInspectInventory: a clean branch with markers of one format, its
// redirects and strata's bookkeeping, listed as such.
func TestInspectInventory(t *testing.T) {
	testutil.NeedRoot(t, "char 0/0 whiteouts, trusted.* xattrs")
	d := t.TempDir()
	charWhiteout(t, filepath.Join(d, "gone"))
	xattrWhiteout(t, filepath.Join(d, "x"), "w", "trusted.")
	testutil.Mkdirs(t, filepath.Join(d, "opq"))
	testutil.SetxattrNeedRoot(t, filepath.Join(d, "opq"), "trusted.overlay.opaque", "y")
	testutil.Mkdirs(t, filepath.Join(d, "new"))
	testutil.SetxattrNeedRoot(t, filepath.Join(d, "new"), "trusted.overlay.redirect", "/old")
	testutil.WriteFile(t, filepath.Join(d, "copied"), "data")
	testutil.SetxattrNeedRoot(t, filepath.Join(d, "copied"), "trusted.strata.ino", "12345678")
	testutil.WriteFile(t, filepath.Join(d, "plain"), "")
	if err := os.Symlink("plain", filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	inv := inspect(t, d)
	if inv.Format != "overlay" || len(inv.Problems) != 0 {
		t.Errorf("format %s, problems %+v; want overlay and none", inv.Format, inv.Problems)
	}
	want := map[string]string{"gone": "overlay whiteout (char 0/0)", "x/w": "overlay whiteout (xattr)"}
	if len(inv.Whiteouts) != len(want) {
		t.Errorf("whiteouts %+v, want %v", inv.Whiteouts, want)
	}
	for _, w := range inv.Whiteouts {
		if want[w.Path] != w.Kind || w.Format != "overlay" {
			t.Errorf("whiteout %+v, want %s", w, want[w.Path])
		}
	}
	if len(inv.Opaque) != 1 || inv.Opaque[0].Path != "opq" {
		t.Errorf("opaque %+v, want opq", inv.Opaque)
	}
	if len(inv.Redirects) != 1 || inv.Redirects[0].Path != "new" || inv.Redirects[0].Value != "/old" {
		t.Errorf("redirects %+v, want new -> /old", inv.Redirects)
	}
	var meta []string
	for _, m := range inv.Metadata {
		meta = append(meta, m.Path)
	}
	if !slices.Contains(meta, "copied") || !slices.Contains(meta, "x") {
		t.Errorf("metadata %+v: want copied's strata.ino and x's opaque=x", inv.Metadata)
	}

	aufs := t.TempDir()
	testutil.WriteFile(t, filepath.Join(aufs, "etc", ".wh.passwd"), "")
	testutil.WriteFile(t, filepath.Join(aufs, "var", whiteout.AufsOpaque), "")
	inv = inspect(t, aufs)
	if inv.Format != "aufs" || len(inv.Whiteouts) != 1 || inv.Whiteouts[0].Path != "etc/passwd" || inv.Whiteouts[0].Entry != "etc/.wh.passwd" ||
		len(inv.Opaque) != 1 || inv.Opaque[0].Path != "var" || len(inv.Problems) != 0 {
		t.Errorf("aufs branch: %+v", inv)
	}
}
