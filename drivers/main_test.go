package drivers_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/strata-fs/strata/drivers"
	"github.com/strata-fs/strata/drivers/drivertest"
)

// strataBin is the strata binary the fuse backend runs, built once by
// TestMain.
var strataBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "strata-drivers-bin-")
	if err == nil {
		defer os.RemoveAll(dir)
		strataBin, err = drivertest.BuildStrata(dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "drivers: %v\n", err)
		return 1
	}
	return m.Run()
}

// openBackend is the conformance suite's constructor for one backend. A
// backend this host cannot run skips the test with the reason, except
// under CI=true, where fuse, overlay and vfs must run (CI runs as root on
// a machine with FUSE and overlay). devicemapper skips under CI too when
// /dev/mapper/control is absent: CI runs on the same kind of machine as
// development, which has no device-mapper (docs/GRAPHDRIVER.md).
func openBackend(backend string) drivertest.Factory {
	return func(t *testing.T, root string) drivers.Driver {
		t.Helper()
		d, err := drivers.New(drivers.Options{Root: root, Backend: backend, StrataBinary: strataBin})
		if err != nil {
			skipUnsupported(t, backend, err)
			t.Fatalf("New(%s): %v", backend, err)
		}
		return d
	}
}

func skipUnsupported(t *testing.T, backend string, err error) {
	t.Helper()
	if !errors.Is(err, drivers.ErrNotSupported) {
		return
	}
	_, noDM := os.Stat("/dev/mapper/control")
	if os.Getenv("CI") == "true" && !(backend == "devicemapper" && noDM != nil) {
		t.Fatalf("backend %s: %v (CI=true: it must run here)", backend, err)
	}
	t.Skipf("backend %s: %v", backend, err)
}

func TestConformance(t *testing.T) {
	for _, backend := range []string{"fuse", "overlay", "vfs", "devicemapper"} {
		t.Run(backend, func(t *testing.T) {
			// Once here, so an unusable backend skips as a whole.
			probe := openBackend(backend)(t, t.TempDir())
			if err := probe.Cleanup(); err != nil {
				t.Fatal(err)
			}
			drivertest.Run(t, openBackend(backend))
		})
	}
}
