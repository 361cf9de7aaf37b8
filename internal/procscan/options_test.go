package procscan

import (
	"slices"
	"testing"
)

// TestOptionPaths: the directories of every -o form, in both option
// syntaxes; other options and other arguments are not directories.
func TestOptionPaths(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want []string
	}{
		{[]string{"fuse-overlayfs", "-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,allow_other", "/mnt"}, []string{"/l1", "/l2", "/u", "/w"}},
		{[]string{"strata", "mount", "--options=br=/a=rw:/b=ro", "/mnt"}, []string{"/a", "/b"}},
		{[]string{"unionfs", "-olowerdir=/x", "-o", "dirs=/c"}, []string{"/x", "/c"}},
		{[]string{"strata", "mount", "-o", `lowerdir=/with\,comma`, "/mnt"}, []string{"/with,comma"}},
		{[]string{"strata", "mount", "/mnt"}, nil},
	} {
		if got := optionPaths(tc.argv); !slices.Equal(got, tc.want) {
			t.Errorf("optionPaths(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}
