package whiteout

import (
	"errors"
	"log"
	"sync"
)

// FallbackWriter hands out a Writer whose format falls back from overlay
// to aufs, once and for every marker after, when an overlay whiteout is
// refused (ErrWhiteoutDenied: mknod of a char 0/0, refused to some
// unprivileged users), and says so once in the log. A mount's write path
// and a layer's unpacking both write through one. It is safe for
// concurrent use.
type FallbackWriter struct {
	// Mknod writes one whiteout; nil means Writer.Whiteout. Tests set it,
	// before the first write, to refuse the overlay form as mknod does for
	// some unprivileged users, which root cannot otherwise see.
	Mknod func(w Writer, dirFD int, name string) error

	// scope ends the log line of the fallback: how long aufs markers are
	// written ("from now on", "for the rest of this layer").
	scope string
	// logger receives that line.
	logger *log.Logger

	mu sync.Mutex
	w  Writer
}

// NewFallbackWriter starts with w; scope ends the line a fallback writes
// to logger (nil: the standard logger).
func NewFallbackWriter(w Writer, scope string, logger *log.Logger) *FallbackWriter {
	if logger == nil {
		logger = log.Default()
	}
	return &FallbackWriter{w: w, scope: scope, logger: logger}
}

// Writer is the writer of the current format.
func (f *FallbackWriter) Writer() Writer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w
}

// Whiteout makes a whiteout for name in the directory dirFD and says which
// format it wrote: the current one, or aufs after an overlay whiteout was
// refused just now (the writer stays with aufs from then on).
func (f *FallbackWriter) Whiteout(dirFD int, name string) (Format, error) {
	mk := Writer.Whiteout
	if f.Mknod != nil {
		mk = f.Mknod
	}
	w := f.Writer()
	err := mk(w, dirFD, name)
	if !errors.Is(err, ErrWhiteoutDenied) {
		return w.Format, err
	}
	f.mu.Lock()
	if f.w.Format == Overlay {
		f.w.Format = Aufs
		f.logger.Printf("overlay whiteouts are not permitted here (%v); writing aufs whiteouts (.wh.<name>) %s", err, f.scope)
	}
	w = f.w
	f.mu.Unlock()
	return w.Format, mk(w, dirFD, name)
}
