package integration

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/strata-fs/strata/drivers/drivertest"
	"github.com/strata-fs/strata/internal/testutil"
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

// requireKernelOverlay is testutil.NeedFUSE plus the kernel's overlay
// filesystem, for the tests that use it as the oracle.
func requireKernelOverlay(t testing.TB) {
	t.Helper()
	testutil.NeedFUSE(t)
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		testutil.SkipOrFail(t, "cannot read /proc/filesystems: "+err.Error())
		return
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) > 0 && string(f[len(f)-1]) == "overlay" {
			return
		}
	}
	testutil.SkipOrFail(t, "kernel overlay filesystem not available (no overlay in /proc/filesystems; try modprobe overlay)")
}
