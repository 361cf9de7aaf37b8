package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[float64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 5 << 20: "5 MiB", 3 << 40: "3 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%v) = %q, want %q", n, got, want)
		}
	}
}

// TestProgress: on a terminal, a stream that runs longer than half a
// second shows bytes and rate on one rewritten line, ended by done; off a
// terminal, or for a short stream, nothing is shown.
func TestProgress(t *testing.T) {
	var term bytes.Buffer
	p := &progress{label: "apply l1", out: &term, started: time.Now().Add(-2 * time.Second)}
	p.Write(make([]byte, 3<<20))
	p.done()
	line := term.String()
	if !strings.HasPrefix(line, "\rapply l1: 3 MiB, ") || !strings.Contains(line, "MiB/s") || !strings.HasSuffix(line, "\n") {
		t.Errorf("progress line %q", line)
	}

	var short bytes.Buffer
	p = &progress{label: "diff l1", out: &short, started: time.Now()}
	p.Write(make([]byte, 100))
	p.done()
	if short.Len() != 0 {
		t.Errorf("a short stream showed %q", short.String())
	}

	p = &progress{label: "diff l1", started: time.Now().Add(-time.Hour)}
	p.Write(make([]byte, 100)) // not a terminal: out is nil, nothing to write to
	p.done()
	if p.n != 100 {
		t.Errorf("counted %d bytes", p.n)
	}
}
