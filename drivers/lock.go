package drivers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A lock is held both inside this process (a sync.Mutex, which the race
// detector understands and which keeps goroutines from each parking an OS
// thread in flock) and across processes (flock on a lock file), because the
// CLI's "graph mount" and "graph umount" are different processes working on
// one store.
type lockTable struct {
	mu    sync.Mutex
	locks map[string]*namedLock
}

type namedLock struct {
	mu    sync.Mutex
	users int // goroutines holding or waiting; the entry goes when 0
}

func newLockTable() *lockTable { return &lockTable{locks: map[string]*namedLock{}} }

// heldLock is one acquired lock; unlock releases it.
type heldLock struct {
	t    *lockTable
	name string
	l    *namedLock
	f    *os.File
}

// lock takes the lock called name (a path relative to root, whose file is
// created when missing) exclusively, waiting for other goroutines and
// processes.
func (t *lockTable) lock(root *os.Root, name string) (*heldLock, error) {
	t.mu.Lock()
	l := t.locks[name]
	if l == nil {
		l = &namedLock{}
		t.locks[name] = l
	}
	l.users++
	t.mu.Unlock()
	l.mu.Lock()
	f, err := flockFile(root, name)
	if err != nil {
		t.release(name, l)
		return nil, err
	}
	return &heldLock{t: t, name: name, l: l, f: f}, nil
}

func (h *heldLock) unlock() {
	h.f.Close() // closing drops the flock
	h.t.release(h.name, h.l)
}

func (t *lockTable) release(name string, l *namedLock) {
	l.mu.Unlock()
	t.mu.Lock()
	l.users--
	if l.users == 0 {
		delete(t.locks, name)
	}
	t.mu.Unlock()
}

// flockFile opens (creating) name under root and takes an exclusive flock
// on it. A lock file can be deleted by whoever holds it (Remove deletes a
// layer's); a waiter that then wins the lock on the deleted file would lock
// nothing, so after locking it checks that name is still the file it
// locked, and starts again if not.
func flockFile(root *os.Root, name string) (*os.File, error) {
	for {
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if err := flock(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		held, err1 := f.Stat()
		now, err2 := root.Lstat(name)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return f, nil
		}
		f.Close()
		if err1 != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err1)
		}
		if err2 != nil && !errors.Is(err2, fs.ErrNotExist) {
			return nil, fmt.Errorf("lock %s: %w", name, err2)
		}
	}
}

func flock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lockErr error
	err = rc.Control(func(fd uintptr) {
		for {
			lockErr = unix.Flock(int(fd), unix.LOCK_EX)
			if lockErr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return lockErr
}
