package whiteout_test

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// denyOverlay refuses overlay whiteouts as mknod does for some
// unprivileged users, and counts the tries.
func denyOverlay(tries *int, mu *sync.Mutex) func(w whiteout.Writer, dirFD int, name string) error {
	return func(w whiteout.Writer, dirFD int, name string) error {
		if w.Format != whiteout.Overlay {
			return w.Whiteout(dirFD, name)
		}
		mu.Lock()
		*tries++
		mu.Unlock()
		return fmt.Errorf("whiteout %s: %w: %v", name, whiteout.ErrWhiteoutDenied, unix.EPERM)
	}
}

// captureLog is a logger writing into the buffer returned.
func captureLog() (*log.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return log.New(&buf, "", 0), &buf
}

// TestFallbackWriter: a refused overlay whiteout is written in aufs form,
// and so is every marker after it, logged once, even with concurrent
// writers.
func TestFallbackWriter(t *testing.T) {
	logger, logged := captureLog()
	dir := t.TempDir()
	fd := testutil.OpenDir(t, dir)
	var tries int
	var mu sync.Mutex
	f := whiteout.NewFallbackWriter(whiteout.Writer{Format: whiteout.Overlay, XattrNamespace: "user."}, "for the test", logger)
	f.Mknod = denyOverlay(&tries, &mu)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			format, err := f.Whiteout(fd, fmt.Sprintf("f%d", i))
			if err != nil || format != whiteout.Aufs {
				t.Errorf("Whiteout f%d = %v, %v; want aufs", i, format, err)
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		if _, err := os.Lstat(filepath.Join(dir, fmt.Sprintf(".wh.f%d", i))); err != nil {
			t.Errorf("aufs whiteout of f%d: %v", i, err)
		}
	}
	if w := f.Writer(); w.Format != whiteout.Aufs || w.XattrNamespace != "user." {
		t.Errorf("Writer after the fallback = %+v, want aufs in user.", w)
	}
	if tries < 1 || tries > 8 {
		t.Errorf("%d overlay tries", tries)
	}
	want := "overlay whiteouts are not permitted here (whiteout "
	if n := strings.Count(logged.String(), want); n != 1 || !strings.Contains(logged.String(), "(.wh.<name>) for the test\n") {
		t.Errorf("log, want the fallback said once:\n%s", logged.String())
	}
	// After the fallback, overlay is not tried again.
	before := tries
	if _, err := f.Whiteout(fd, "later"); err != nil || tries != before {
		t.Errorf("Whiteout(later) = %v, %d more overlay tries", err, tries-before)
	}
}

// TestFallbackWriterOtherErrors: only ErrWhiteoutDenied falls back.
func TestFallbackWriterOtherErrors(t *testing.T) {
	logger, logged := captureLog()
	fd := testutil.OpenDir(t, t.TempDir())
	f := whiteout.NewFallbackWriter(whiteout.Writer{Format: whiteout.Overlay}, "", logger)
	f.Mknod = func(whiteout.Writer, int, string) error { return fmt.Errorf("whiteout x: %w", unix.EIO) }
	format, err := f.Whiteout(fd, "x")
	if !errors.Is(err, unix.EIO) || format != whiteout.Overlay || f.Writer().Format != whiteout.Overlay {
		t.Errorf("Whiteout = %v, %v; writer %v; want EIO and still overlay", format, err, f.Writer().Format)
	}
	if logged.Len() != 0 {
		t.Errorf("logged %q", logged.String())
	}
}
