package integration

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestPosix runs go-fuse's POSIX conformance suite (posixtest.All) against
// a writable strata mount, each case on a fresh mount, twice: in the root
// of a union whose lower branch is empty, and in a directory that exists
// only in a lower branch (so the first change copies it up).
func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, variant := range []struct {
		name  string
		build func(t *testing.T, lower string) string // returns the test dir inside the mount
	}{
		{"empty-lower", func(t *testing.T, lower string) string { return "" }},
		{"lower-dir", func(t *testing.T, lower string) string {
			dir := filepath.Join(lower, "populated")
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(lower, "beside"), []byte("lower data"), 0o644); err != nil {
				t.Fatal(err)
			}
			return "populated"
		}},
	} {
		t.Run(variant.name, func(t *testing.T) {
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					testutil.NeedFUSE(t)
					base := t.TempDir()
					lower, upper, work, mnt := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
					for _, d := range []string{lower, upper, work, mnt} {
						if err := os.Mkdir(d, 0o755); err != nil {
							t.Fatal(err)
						}
					}
					sub := variant.build(t, lower)
					mountStrata(t, mnt, "lowerdir="+lower+",upperdir="+upper+",workdir="+work)
					posixtest.All[name](t, filepath.Join(mnt, sub))
				})
			}
		})
	}
}
