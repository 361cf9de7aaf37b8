//go:build strata_notrace

package branches

// A build without the decision trace, for one purpose: measuring what the
// trace hooks cost when tracing is off. Here every hook's
// "if t := s.tracer.Load(); t != nil" is a constant false the compiler
// removes, so cmd/strata-bench's "strata-notrace" system is strata as if
// the hooks had never been written.

// traceSlot never holds a trace.
type traceSlot struct{}

func (traceSlot) Load() *tracer { return nil }
func (traceSlot) Store(*tracer) {}

// TraceBuiltIn says whether this binary can write a decision trace.
const TraceBuiltIn = false
