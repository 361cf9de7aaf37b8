package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

type kind int

const (
	throughput kind = iota // bytes per second, higher is better
	duration               // seconds, lower is better
	rate                   // operations per second, higher is better
	memory                 // bytes resident, lower is better
)

// cell is one system's result on one row.
type cell struct {
	value float64   // median
	runs  []float64 // every run's value
	mark  string    // non-empty instead of a value: "skipped", "failed" or "-" (does not apply)
}

// row is one line of the table.
type row struct {
	name     string
	kind     kind
	metadata bool // a metadata workload (the fuse-overlayfs target)
	cells    map[string]*cell
}

func newRow(name string, k kind) *row { return &row{name: name, kind: k, cells: map[string]*cell{}} }

// value is the measured median of sys, if there is one.
func (r *row) value(sys string) (float64, bool) {
	c := r.cells[sys]
	if c == nil || c.mark != "" {
		return 0, false
	}
	return c.value, true
}

// set records the runs of sys and their median.
func (r *row) set(sys string, runs []float64) {
	r.cells[sys] = &cell{value: median(runs), runs: runs}
}

// spread is the lowest and highest run of sys.
func (r *row) spread(sys string) (lo, hi float64, ok bool) {
	c := r.cells[sys]
	if c == nil || len(c.runs) == 0 {
		return 0, 0, false
	}
	lo, hi = c.runs[0], c.runs[0]
	for _, v := range c.runs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi, true
}
func (r *row) mark(sys, mark string) { r.cells[sys] = &cell{mark: mark} }
func (r *row) unset(sys string) bool { return r.cells[sys] == nil }
func (r *row) lowerIsBetter() bool   { return r.kind == duration || r.kind == memory }

// speedup is how much better v is than base: >1 = faster (or smaller).
func (r *row) speedup(v, base float64) float64 {
	if r.lowerIsBetter() {
		return base / v
	}
	return v / base
}

// notes are the report's footnotes: skips, failures and oddities. A run
// abandoned after a timeout may still add one, hence the lock.
var (
	notesMu sync.Mutex
	notes   []string
)

func addNote(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	notesMu.Lock()
	notes = append(notes, n)
	notesMu.Unlock()
	fmt.Fprintln(os.Stderr, "strata-bench:", n)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

var errTimeout = errors.New("timeout")

// timed runs fn under the per-run time limit; on timeout it aborts the
// FUSE connections mounted under base so the stuck call returns. A panic
// in fn becomes an error, so the deferred cleanup still runs.
func timed(base string, fn func() error) (time.Duration, error) {
	type result struct {
		d   time.Duration
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- result{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		t := time.Now()
		err := fn()
		ch <- result{time.Since(t), err}
	}()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-time.After(runTimeout):
		for _, mp := range mountsUnder(base) {
			abortFuse(mp)
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
		return 0, fmt.Errorf("%w after %v", errTimeout, runTimeout)
	}
}

// sample is what one timed run did: bytes or operations, and, when the
// tool timed itself (fio), its own elapsed time instead of the wall clock.
type sample struct {
	amount float64
	took   time.Duration
}

// counted adapts a (work done, error) result to a sample timed by the wall clock.
func counted(amount float64, err error) (sample, error) { return sample{amount: amount}, err }

// measure runs fn flagRuns times, prep (optional, untimed, but under the
// time limit) before each, and records the median on r.
func (s *sysRun) measure(r *row, prep func(run int) error, fn func(run int) (sample, error)) error {
	var vals []float64
	for run := 0; run < *flagRuns; run++ {
		if prep != nil {
			if _, err := timed(s.base, func() error { return prep(run) }); err != nil {
				return fmt.Errorf("preparing run %d: %w", run+1, err)
			}
		}
		var smp sample
		d, err := timed(s.base, func() error {
			var err error
			smp, err = fn(run)
			return err
		})
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		if smp.took > 0 {
			d = smp.took
		}
		if r.kind == duration {
			vals = append(vals, d.Seconds())
		} else {
			vals = append(vals, smp.amount/d.Seconds())
		}
	}
	r.set(s.sys.name, vals)
	return nil
}

func formatValue(k kind, v float64) string {
	switch k {
	case throughput:
		if v >= 1e9 {
			return fmt.Sprintf("%.2f GB/s", v/1e9)
		}
		return fmt.Sprintf("%.0f MB/s", v/1e6)
	case rate:
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM op/s", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1fk op/s", v/1e3)
		default:
			return fmt.Sprintf("%.0f op/s", v)
		}
	case memory:
		return fmt.Sprintf("%.1f MB", v/1e6)
	default:
		switch {
		case v >= 1:
			return fmt.Sprintf("%.2f s", v)
		case v >= 1e-3:
			return fmt.Sprintf("%.1f ms", v*1e3)
		default:
			return fmt.Sprintf("%.0f µs", v*1e6)
		}
	}
}

func formatRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2fx", r)
	default:
		return fmt.Sprintf("%.3fx", r)
	}
}
