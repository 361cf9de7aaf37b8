package testutil

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Setxattr sets the attribute name of p (not following a symlink) or
// fails the test.
func Setxattr(t testing.TB, p, name, value string) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", p, name, err)
	}
}

// SetxattrNeedRoot is Setxattr that first calls NeedRoot for a trusted.*
// attribute, which only root may set: a test without root skips (fails
// under CI=true) where Setxattr would fail it.
func SetxattrNeedRoot(t testing.TB, p, name, value string) {
	t.Helper()
	if strings.HasPrefix(name, "trusted.") {
		NeedRoot(t, "trusted.* xattrs")
	}
	Setxattr(t, p, name, value)
}

// Getxattr reads the attribute name of p (not following a symlink).
func Getxattr(p, name string) (string, error) {
	size, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return "", err
	}
	buf := make([]byte, size)
	size, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:size]), nil
}

// XattrNames lists the attribute names of p (not following a symlink),
// sorted; none where the filesystem has no xattrs (ENOTSUP). Any other
// error fails the test.
func XattrNames(t testing.TB, p string) []string {
	t.Helper()
	size, err := unix.Llistxattr(p, nil)
	if err == unix.ENOTSUP || (err == nil && size == 0) {
		return nil
	}
	var buf []byte
	if err == nil {
		buf = make([]byte, size)
		size, err = unix.Llistxattr(p, buf)
	}
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Xattrs lists the attributes of p whose names start with prefix ("" for
// all) as name="value", sorted; see XattrNames.
func Xattrs(t testing.TB, p, prefix string) []string {
	t.Helper()
	var out []string
	for _, name := range XattrNames(t, p) {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		v, err := Getxattr(p, name)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, v))
	}
	sort.Strings(out)
	return out
}

// MknodWhiteout makes an overlay whiteout at p: a char device 0/0 with
// permission bits perm. It needs root; the caller checks (NeedRoot).
func MknodWhiteout(t testing.TB, p string, perm uint32) {
	t.Helper()
	if err := unix.Mknod(p, unix.S_IFCHR|perm, 0); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
}

// IsCharWhiteout reports whether p is an overlay whiteout (a char device
// 0/0), not following a symlink.
func IsCharWhiteout(p string) bool {
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}
