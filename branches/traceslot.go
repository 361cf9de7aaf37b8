//go:build !strata_notrace

package branches

import "sync/atomic"

// traceSlot holds the trace being written, nil when tracing is off.
type traceSlot = atomic.Pointer[tracer]

// TraceBuiltIn says whether this binary can write a decision trace. Only
// a build with the strata_notrace tag cannot (traceslot_notrace.go).
const TraceBuiltIn = true
