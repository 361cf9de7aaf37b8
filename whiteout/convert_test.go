package whiteout_test

import (
	"io/fs"
	"maps"
	"path/filepath"
	"testing"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// unionView is what the union of upper over lower shows: path -> type and
// content, read through the library.
func unionView(t *testing.T, upper, lower string) map[string]string {
	t.Helper()
	opts, err := branches.ParseOptions([]string{"lowerdir=" + upper + ":" + lower})
	if err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]string{}
	err = fs.WalkDir(s.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		v := d.Type().String()
		if d.Type().IsRegular() {
			b, err := fs.ReadFile(s.FS(), p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatalf("walking the union: %v", err)
	}
	return out
}

func convert(t *testing.T, dir string, to whiteout.Format, dry bool) []whiteout.Change {
	t.Helper()
	changes, err := whiteout.Convert(testutil.OpenDir(t, dir), to, "trusted.", dry)
	if err != nil {
		t.Fatalf("Convert(%s, %s): %v", dir, to, err)
	}
	return changes
}

// convertLower is the lower branch under both fixtures.
func convertLower(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{"gone", "d/gone2", "d/keep", "xd/w", "xd/keep", "opq/old", "orig/f", "x/oldfile", "f", "g", "h"} {
		testutil.WriteFile(t, filepath.Join(d, p), "lower "+p)
	}
	return d
}

// TestConvertRoundTrip converts an overlay-format upper to aufs and back,
// and an aufs-format one to overlay and back: the union is the same at
// every step, the branch is in the target format with no inconsistency,
// a dry run changes nothing, and a second run has nothing to do.
func TestConvertRoundTrip(t *testing.T) {
	testutil.NeedRoot(t, "char 0/0 whiteouts, trusted.* xattrs")
	overlayUpper := func(t *testing.T) string {
		d := t.TempDir()
		charWhiteout(t, filepath.Join(d, "gone"))
		testutil.Mkdirs(t, filepath.Join(d, "d"))
		charWhiteout(t, filepath.Join(d, "d", "gone2"))
		xattrWhiteout(t, filepath.Join(d, "xd"), "w", "trusted.")
		testutil.WriteFile(t, filepath.Join(d, "opq", "new"), "upper new")
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "opq"), "trusted.overlay.opaque", "y")
		testutil.Mkdirs(t, filepath.Join(d, "moved"))
		testutil.SetxattrNeedRoot(t, filepath.Join(d, "moved"), "trusted.overlay.redirect", "/orig")
		charWhiteout(t, filepath.Join(d, "orig"))
		return d
	}
	aufsUpper := func(t *testing.T) string {
		d := t.TempDir()
		for _, p := range []string{".wh.gone", "d/.wh.gone2", ".wh.g", "opq/.wh..wh..opq", ".wh.x", ".wh.f"} {
			testutil.WriteFile(t, filepath.Join(d, p), "")
		}
		testutil.WriteFile(t, filepath.Join(d, "opq", "new"), "upper new")
		testutil.WriteFile(t, filepath.Join(d, "x", "newfile"), "deleted, then created again")
		testutil.WriteFile(t, filepath.Join(d, "f"), "f again")
		return d
	}
	for _, tc := range []struct {
		name          string
		upper         func(t *testing.T) string
		first, back   whiteout.Format
		hidden, shown []string // what the fixture must do to the union
	}{
		{"overlay-aufs-overlay", overlayUpper, whiteout.Aufs, whiteout.Overlay,
			[]string{"gone", "d/gone2", "xd/w", "opq/old", "orig"}, []string{"moved/f", "xd/keep", "opq/new"}},
		{"aufs-overlay-aufs", aufsUpper, whiteout.Overlay, whiteout.Aufs,
			[]string{"gone", "d/gone2", "g", "opq/old", "x/oldfile"}, []string{"x/newfile", "f", "opq/new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lower := convertLower(t)
			upper := tc.upper(t)
			want := unionView(t, upper, lower)
			for _, p := range tc.hidden {
				if _, ok := want[p]; ok {
					t.Fatalf("fixture: the union shows %s", p)
				}
			}
			for _, p := range tc.shown {
				if _, ok := want[p]; !ok {
					t.Fatalf("fixture: the union does not show %s", p)
				}
			}

			before := testutil.Snapshot(t, upper, testutil.WithXattrNames)
			if len(convert(t, upper, tc.first, true)) == 0 {
				t.Fatal("dry run: nothing to convert")
			}
			if testutil.Snapshot(t, upper, testutil.WithXattrNames) != before {
				t.Fatal("a dry run changed the branch")
			}
			for _, to := range []whiteout.Format{tc.first, tc.back} {
				changes := convert(t, upper, to, false)
				inv := inspect(t, upper)
				if inv.Format != to.String() {
					t.Errorf("after converting to %s: format %s (%d changes)", to, inv.Format, len(changes))
				}
				for _, p := range inv.Problems {
					t.Errorf("after converting to %s: %+v", to, p)
				}
				if got := unionView(t, upper, lower); !maps.Equal(got, want) {
					t.Errorf("after converting to %s the union differs:\n got %v\nwant %v", to, got, want)
				}
				if again := convert(t, upper, to, false); len(again) != 0 {
					t.Errorf("converting to %s twice: the second run changed %+v", to, again)
				}
			}
		})
	}
}

// dirSnapshot lists every entry under dir with its mode, size and xattrs.
