package branches

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// traceFixture is a three-branch read-only stack with d/top.txt in the
// top branch, d/bottom.txt in the bottom one, and directory d merged.
func traceFixture(t testing.TB) (*Stack, *Entry) {
	t.Helper()
	root := t.TempDir()
	var dirs []string
	for i, f := range []string{"top.txt", "", "bottom.txt"} {
		dir := filepath.Join(root, string(rune('a'+i)))
		if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if f != "" {
			if err := os.WriteFile(filepath.Join(dir, "d", f), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dirs = append(dirs, dir)
	}
	opts, err := ParseOptions([]string{"lowerdir=" + strings.Join(dirs, ":")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d, err := s.Resolve("d")
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

// TestTraceOffAllocatesNothing: with the trace off, Lookup (the hot path,
// with its trace hook) allocates exactly what the resolution itself does,
// for names found near the top, at the bottom, and not at all.
func TestTraceOffAllocatesNothing(t *testing.T) {
	s, d := traceFixture(t)
	if s.Tracing() {
		t.Fatal("a new stack traces")
	}
	for _, name := range []string{"top.txt", "bottom.txt", "missing"} {
		// The least of a few measurements: under the race detector
		// sync.Pool drops items at random (fmt's among them), which adds
		// stray allocations to either side; an allocation of the hook's
		// own would be in every measurement.
		withHook, core := math.Inf(1), math.Inf(1)
		for range 5 {
			withHook = min(withHook, testing.AllocsPerRun(200, func() { s.Lookup(d, name) }))
			core = min(core, testing.AllocsPerRun(200, func() { s.lookup(d, name, nil, nil) }))
		}
		if withHook > core {
			t.Errorf("Lookup(%s) with the trace off: %.0f allocations, the resolution alone %.0f", name, withHook, core)
		}
	}
	// Every other hook is the same atomic load and nil check.
	if n := testing.AllocsPerRun(200, func() {
		if tr := s.tracer.Load(); tr != nil {
			tr.copyUpStart(d, s.branches[0])
		}
	}); n != 0 {
		t.Errorf("a trace hook with the trace off: %.1f allocations", n)
	}
}

// BenchmarkLookupTrace: a lookup with the trace off (the default) and on
// (written to io.Discard), and the resolution alone, without the hook, for
// what "off" is measured against.
func BenchmarkLookupTrace(b *testing.B) {
	s, d := traceFixture(b)
	b.Run("no-hook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.lookup(d, "bottom.txt", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
			s.SetTrace(io.Discard)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Lookup(d, "bottom.txt"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	s.SetTrace(nil)
}
