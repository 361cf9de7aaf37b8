package sys

import "testing"

func TestPathWithin(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false}, // a sibling sharing a prefix
		{"/a", "/a/b", false},
		{"/", "/", true},
		{"/a", "/", true},
		{".", ".", true},
		{"a/b", "a", true},
		{"ab", "a", false},
		{"a", ".", false}, // "." is only the root of relative paths
	} {
		if got := PathWithin(c.p, c.dir); got != c.want {
			t.Errorf("PathWithin(%q, %q) = %v, want %v", c.p, c.dir, got, c.want)
		}
	}
}
