package branches

import (
	"encoding/json"
	"errors"
	"io"
	"path"
	"sync"
	"time"

	"github.com/strata-fs/strata/cow"
	"github.com/strata-fs/strata/whiteout"
)

// The decision trace: one JSON line per union decision (lookup
// resolution, copy-up start and end, whiteout written, opaque directory
// made, rename strategy). It is off by default and costs one atomic load
// per hook when off: every hook is written
//
//	if t := s.tracer.Load(); t != nil { t.something(...) }
//
// so nothing is built, let alone allocated, unless a trace is being
// written (TestTraceOffAllocatesNothing checks the lookup path).

// TraceEvent is one line of the trace. Fields not relevant to an Op are
// left out of the JSON.
type TraceEvent struct {
	// Seq numbers the events of one trace from 1; Time is when the
	// decision was made (RFC 3339, UTC).
	Seq  uint64 `json:"seq"`
	Time string `json:"time"`
	// Op is the decision: "lookup", "copy-up-start", "copy-up-end",
	// "copy-up-link", "create", "remove", "whiteout", "opaque", "rename".
	Op   string `json:"op"`
	Path string `json:"path,omitempty"`
	// To is a rename's new path.
	To string `json:"to,omitempty"`
	// Result of a lookup: "found", "whited out" or "absent".
	Result string `json:"result,omitempty"`
	// Branch is the branch that serves (lookup), receives (copy-up,
	// create, rename) or holds (whiteout, opaque) the object, by its
	// label ("upper", "lower2", "br0").
	Branch string `json:"branch,omitempty"`
	// From is the branch a copy-up copies from.
	From string `json:"from,omitempty"`
	Type string `json:"type,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
	// Merged lists the branches of a directory merged by a lookup.
	Merged []string `json:"merged,omitempty"`
	// Hidden maps each branch whose copy a lookup did not show to why.
	Hidden map[string]string `json:"hidden,omitempty"`
	// Marker is a whiteout's or an opaque marker's on-disk form.
	Marker string `json:"marker,omitempty"`
	// Method and Bytes: how a copy-up moved the data (cow.Method).
	Method string `json:"method,omitempty"`
	Bytes  *int64 `json:"bytes,omitempty"`
	// Strategy is how a rename was done.
	Strategy string `json:"strategy,omitempty"`
	Redirect string `json:"redirect,omitempty"`
	// Why says what made the union decide so.
	Why string `json:"why,omitempty"`
}

// tracer writes events to one writer, a line at a time.
type tracer struct {
	mu  sync.Mutex
	w   io.Writer
	seq uint64
}

// ErrNoTrace is SetTrace's answer in a build without the trace
// (TraceBuiltIn false).
var ErrNoTrace = errors.New("this strata was built without the decision trace (tag strata_notrace)")

// SetTrace starts writing the decision trace to w, one JSON object
// (TraceEvent) per line, or stops it when w is nil. Writes are whole lines
// under a lock, so concurrent operations never interleave within a line;
// write errors are ignored (a trace must not fail the filesystem).
func (s *Stack) SetTrace(w io.Writer) error {
	if w == nil {
		s.tracer.Store(nil)
		return nil
	}
	if !TraceBuiltIn {
		return ErrNoTrace
	}
	s.tracer.Store(&tracer{w: w})
	return nil
}

// Tracing reports whether a trace is being written.
func (s *Stack) Tracing() bool { return s.tracer.Load() != nil }

func (t *tracer) emit(ev TraceEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	ev.Seq = t.seq
	ev.Time = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(ev)
	if err != nil {
		return
	}
	t.w.Write(append(line, '\n'))
}

// tracedLookup is Lookup while tracing: the same resolution, with a record
// of what every branch held, turned into one event.
func (s *Stack) tracedLookup(t *tracer, dir *Entry, name string) (*Entry, error) {
	var obs []Observation
	e, err := s.lookup(dir, name, &obs, nil)
	if err != nil && !errors.Is(err, ErrNotExist) {
		return e, err
	}
	ev := TraceEvent{Op: "lookup", Path: path.Join(dir.Path, name), Result: "absent"}
	if e != nil {
		ev.Result, ev.Branch, ev.Type, ev.Ino = "found", e.Top().Branch.Name(), typeName(e.St.Mode), e.Ino
		if e.IsDir() && len(e.Layers) > 1 {
			for _, l := range e.Layers {
				ev.Merged = append(ev.Merged, l.Branch.Name())
			}
		}
	}
	for _, o := range obs {
		switch {
		case o.Verdict == Marker && e == nil && ev.Result == "absent":
			ev.Result, ev.Branch, ev.Marker = "whited out", o.Branch.Name(), o.Marker.String()
		case o.Verdict == Hidden:
			if ev.Hidden == nil {
				ev.Hidden = map[string]string{}
			}
			ev.Hidden[o.Branch.Name()] = o.Reason() + " in " + o.HiddenBy.Branch.Name()
		}
	}
	t.emit(ev)
	return e, err
}

func (t *tracer) copyUpStart(e *Entry, to *Branch) {
	t.emit(TraceEvent{Op: "copy-up-start", Path: e.Path, Type: typeName(e.St.Mode), From: e.Top().Branch.Name(), Branch: to.Name()})
}

func (t *tracer) copyUpEnd(e *Entry, to *Branch, res cow.Result) {
	ev := TraceEvent{Op: "copy-up-end", Path: e.Path, Type: typeName(e.St.Mode), From: e.Top().Branch.Name(), Branch: to.Name(), Method: string(res.Method)}
	if res.Method == "" {
		ev.Why = "a concurrent copy-up got there first; its copy is used"
	} else {
		ev.Bytes = &res.Bytes
	}
	t.emit(ev)
}

func (t *tracer) copyUpLink(p string, of *Entry, to *Branch) {
	t.emit(TraceEvent{Op: "copy-up-link", Path: p, Branch: to.Name(), Why: "another name of the lower inode of " + of.Path + ": linked, so the set stays whole"})
}

// created records a new object and, for a directory made opaque because
// it replaced a whiteout, that decision.
func (t *tracer) created(e *Entry) {
	top := e.Top()
	t.emit(TraceEvent{Op: "create", Path: e.Path, Type: typeName(e.St.Mode), Branch: top.Branch.Name(), Ino: e.Ino})
	if e.IsDir() && top.Markers.Opaque != whiteout.NoMarker {
		t.emit(TraceEvent{Op: "opaque", Path: e.Path, Branch: top.Branch.Name(), Marker: top.Markers.Opaque.String(),
			Why: "made where a whiteout was: the lower copies it replaces stay hidden"})
	}
}

// removed records a removal: a whiteout when a copy below would show
// again, else a plain deletion of the upper copy.
func (t *tracer) removed(p string, rw *Branch, isDir, wroteWhiteout bool, format whiteout.Format) {
	op := "unlink"
	if isDir {
		op = "rmdir"
	}
	if !wroteWhiteout {
		t.emit(TraceEvent{Op: "remove", Path: p, Branch: rw.Name(), Why: op + ": no copy below would show, so the copy is deleted and no whiteout is needed"})
		return
	}
	t.emit(TraceEvent{Op: "whiteout", Path: p, Branch: rw.Name(), Marker: whiteoutForm(format), Why: op + ": a copy below would show through"})
}

// renamed records how a rename was done, and the markers it left.
func (t *tracer) renamed(s *Stack, src *Entry, to string, redirected, whiteoutOld, madeOpaque bool) {
	upper := s.w.upper.Branch
	ev := TraceEvent{Op: "rename", Path: src.Path, To: to, Type: typeName(src.St.Mode), Branch: upper.Name()}
	switch {
	case !src.IsDir():
		ev.Strategy = "copy up, rename within the upper"
	case redirected:
		ev.Strategy = "redirect"
		if moved, err := s.Resolve(to); err == nil {
			ev.Redirect = "/" + moved.Top().Markers.Redirect
		}
		ev.Why = "the directory has lower content: its upper copy records where that is (overlay.redirect), and moves alone"
	default:
		ev.Strategy = "rename within the upper"
		ev.Why = "the directory has no lower content"
	}
	t.emit(ev)
	if whiteoutOld {
		t.emit(TraceEvent{Op: "whiteout", Path: src.Path, Branch: upper.Name(), Marker: whiteoutForm(s.whiteoutWriter().Format),
			Why: "rename: a lower copy of the source would show at the old name"})
	}
	if madeOpaque {
		t.emit(TraceEvent{Op: "opaque", Path: to, Branch: upper.Name(), Marker: opaqueForm(s.whiteoutWriter().Format),
			Why: "rename: the directory lands where a lower copy shows, which must stay hidden"})
	}
}

func (t *tracer) exchanged(a, b *Entry, upper *Branch) {
	t.emit(TraceEvent{Op: "rename", Path: a.Path, To: b.Path, Branch: upper.Name(), Strategy: "exchange",
		Why: "RENAME_EXCHANGE: both copied up and swapped in one step; both names keep showing, so no whiteout"})
}

// whiteoutForm and opaqueForm name the marker a format writes, in the
// words of whiteout.Kind.
func whiteoutForm(f whiteout.Format) string {
	if f == whiteout.Aufs {
		return whiteout.AufsFile.String()
	}
	return whiteout.OverlayChar.String()
}

func opaqueForm(f whiteout.Format) string {
	if f == whiteout.Aufs {
		return whiteout.OpaqueAufs.String()
	}
	return whiteout.OpaqueOverlay.String()
}
