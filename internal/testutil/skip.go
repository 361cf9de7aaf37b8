package testutil

import (
	"fmt"
	"os"
	"testing"
)

// SkipOrFail skips the test with reason, or fails it when CI=true: CI
// runs as root on a machine with FUSE and overlay, so a test it cannot run
// is a broken setup, not one to pass over.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(reason + " (CI=true: these tests must run, not skip)")
	}
	t.Skip(reason)
}

// NeedRoot skips a test that needs root (mknod, chown, trusted.* xattrs,
// mount), saying why, or fails it under CI=true (see SkipOrFail).
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root: "+why)
	}
}

// SkipUnlessRoot skips a test that needs root, saying why, even under
// CI=true: unlike NeedRoot it never fails. It is for the few tests that
// have always skipped there.
func SkipUnlessRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
}

// NeedFUSE skips a test that mounts with FUSE when it cannot here (not
// root, or no /dev/fuse), or fails it under CI=true (see SkipOrFail).
func NeedFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, fmt.Sprintf("mount tests need root (euid is %d)", os.Geteuid()))
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		SkipOrFail(t, "mount tests need /dev/fuse: "+err.Error())
	}
}
