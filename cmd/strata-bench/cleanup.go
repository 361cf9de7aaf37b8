package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// Everything the harness mounts or starts lives under tmpRoot or in
// daemons, so that cleanup can undo it on exit, error, timeout or signal.
// Mounting and starting a daemon happen under cleanMu, and cleanup sets
// stopping first: nothing new starts once cleanup has begun.
var (
	cleanMu  sync.Mutex
	tmpRoot  string
	stopping bool
	daemons  = map[*mounted]bool{} // FUSE daemons we started that have not exited
)

var errStopping = errors.New("cleaning up: no new mounts")

// startMount runs start (a mount(8) or a daemon's start) unless cleanup
// has begun; a started daemon is tracked until it exits.
func startMount(m *mounted, start func() error) error {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	if stopping {
		return errStopping
	}
	if err := start(); err != nil {
		return err
	}
	if m.daemon != nil {
		daemons[m] = true
		go func() {
			m.exitErr = m.daemon.Wait()
			close(m.done)
			cleanMu.Lock()
			delete(daemons, m)
			cleanMu.Unlock()
		}()
	}
	return nil
}

// cleanup unmounts everything under tmpRoot (deepest first), stops the
// daemons we started and removes tmpRoot. It never removes through a mount.
func cleanup() {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	stopping = true
	if tmpRoot == "" {
		return
	}
	unmountAllUnder(tmpRoot)
	for m := range daemons {
		// os.Process.Signal refuses a process that was already reaped, so
		// a recycled PID is never hit.
		_ = m.daemon.Process.Signal(syscall.SIGTERM)
	}
	for m := range daemons {
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = m.daemon.Process.Kill()
			<-m.done
		}
	}
	unmountAllUnder(tmpRoot) // a daemon that was still mounting when stopped
	if left := mountsUnder(tmpRoot); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "strata-bench: could not unmount %v; leaving %s\n", left, tmpRoot)
		return
	}
	// The main goroutine may still be writing (into unmounted dirs) when a
	// signal brought us here: try again until the tree is gone.
	var err error
	for try := 0; try < 5; try++ {
		if err = os.RemoveAll(tmpRoot); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-bench: %v\n", err)
	}
	tmpRoot = ""
}

func unmountAllUnder(dir string) {
	for _, mp := range mountsUnder(dir) {
		if err := unix.Unmount(mp, 0); err != nil {
			abortFuse(mp)
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	var l []string
	for _, m := range mounts() {
		if m.MountPoint != dir && sys.PathWithin(m.MountPoint, dir) {
			l = append(l, m.MountPoint)
		}
	}
	sort.Slice(l, func(i, j int) bool { return len(l[i]) > len(l[j]) })
	return l
}

func mounts() []sys.Mount {
	ms, err := sys.Mounts()
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-bench:", err)
	}
	return ms
}

func isMounted(mp string) bool {
	_, ok := mountAt(mp)
	return ok
}

func mountAt(mp string) (sys.Mount, bool) {
	for _, m := range mounts() {
		if m.MountPoint == mp {
			return m, true
		}
	}
	return sys.Mount{}, false
}

// abortFuse aborts the FUSE connection behind mp, so that a hung daemon
// cannot block the harness.
func abortFuse(mp string) {
	if m, ok := mountAt(mp); ok && strings.HasPrefix(m.FSType, "fuse") {
		_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", m.Minor), []byte("1"), 0)
	}
}
