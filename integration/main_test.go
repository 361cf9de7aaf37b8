package integration

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/strata-fs/strata/drivers/drivertest"
)

// strataBin is the path of the strata binary built once by TestMain.
var strataBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// A TestStress worker: this binary run again by the test, with a job.
	if job := os.Getenv(stressJobEnv); job != "" {
		return runStressWorker(job)
	}
	dir, err := os.MkdirTemp("", "strata-integration-bin-")
	if err == nil {
		defer os.RemoveAll(dir)
		strataBin, err = drivertest.BuildStrata(dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	return m.Run()
}

// requireMountable skips the test when FUSE mounts cannot be made here (not
// root, or no /dev/fuse). With CI=true it fails instead: CI must run them.
func requireMountable(t testing.TB) {
	t.Helper()
	if reason := fuseBlocker(); reason != "" {
		skipOrFail(t, reason)
	}
}

// requireKernelOverlay is requireMountable plus the kernel's overlay
// filesystem, for the tests that use it as the oracle.
func requireKernelOverlay(t testing.TB) {
	t.Helper()
	requireMountable(t)
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		skipOrFail(t, "cannot read /proc/filesystems: "+err.Error())
		return
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) > 0 && string(f[len(f)-1]) == "overlay" {
			return
		}
	}
	skipOrFail(t, "kernel overlay filesystem not available (no overlay in /proc/filesystems; try modprobe overlay)")
}

func fuseBlocker() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("mount tests need root (euid is %d)", os.Geteuid())
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "mount tests need /dev/fuse: " + err.Error()
	}
	return ""
}

func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(reason + " (CI=true: these tests must run, not skip)")
	}
	t.Skip(reason)
}
