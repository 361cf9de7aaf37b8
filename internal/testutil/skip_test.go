package testutil

import (
	"fmt"
	"runtime"
	"testing"
)

// recorder is a testing.TB that records a Skip or Fatal and ends its
// goroutine, as the real ones end the test's.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...); runtime.Goexit() }

// run calls f with a recorder in a goroutine of its own.
func run(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestSkipOrFail(t *testing.T) {
	for _, ci := range []string{"", "false", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := run(t, func(tb testing.TB) { SkipOrFail(tb, "no widget") })
			if ci == "true" {
				if r.failed != "no widget (CI=true: these tests must run, not skip)" || r.skipped != "" {
					t.Errorf("CI=true: failed %q, skipped %q; want a failure", r.failed, r.skipped)
				}
				return
			}
			if r.skipped != "no widget" || r.failed != "" {
				t.Errorf("CI=%q: skipped %q, failed %q; want a skip", ci, r.skipped, r.failed)
			}
		})
	}
}

// TestSkipUnlessRootUnderCI: SkipUnlessRoot never fails, CI or not.
func TestSkipUnlessRootUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := run(t, func(tb testing.TB) { SkipUnlessRoot(tb, "a bind mount") })
	if r.failed != "" {
		t.Errorf("failed %q", r.failed)
	}
}
