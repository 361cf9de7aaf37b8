package testutil

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestXattrs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	WriteFile(t, p, "")
	if got := XattrNames(t, p); got != nil {
		t.Fatalf("a new file has xattrs %q", got)
	}
	for _, name := range []string{"user.b", "user.a.b", "user.a"} {
		Setxattr(t, p, name, name+"!")
	}
	if got, want := XattrNames(t, p), []string{"user.a", "user.a.b", "user.b"}; !slices.Equal(got, want) {
		t.Errorf("XattrNames = %q, want %q", got, want)
	}
	// Sorted as name="value" strings, as the walkers have always shown them.
	if got, want := Xattrs(t, p, "user.a"), []string{`user.a.b="user.a.b!"`, `user.a="user.a!"`}; !slices.Equal(got, want) {
		t.Errorf("Xattrs(user.a) = %q, want %q", got, want)
	}
	if v, err := Getxattr(p, "user.b"); v != "user.b!" || err != nil {
		t.Errorf("Getxattr = %q, %v", v, err)
	}
	if _, err := Getxattr(p, "user.none"); err == nil {
		t.Error("Getxattr of a missing attribute: no error")
	}
}
