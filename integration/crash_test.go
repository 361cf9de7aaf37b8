package integration

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestCrashSafety kills the strata daemon with SIGKILL at a random moment
// while it copies large files up and renames files and directories, 50
// times, each time on a fresh upper. After each kill it mounts again and
// checks the crash-safety claim of docs/WRITE-PATH.md: every file shows its
// old or its new content in full, nothing visible has disappeared (a
// renamed object is at exactly one of its two names, with all its
// entries), and the workdir holds no leftovers.
func TestCrashSafety(t *testing.T) {
	testutil.NeedFUSE(t)
	const (
		iterations = 50
		bigFiles   = 3
		bigSize    = 24 << 20
	)
	base := t.TempDir()
	l1, l2 := filepath.Join(base, "l1"), filepath.Join(base, "l2")
	upper, work, mnt := filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	testutil.Mkdirs(t, l1, l2, upper, work, mnt)
	big := make([][]byte, bigFiles)
	for i := range big {
		big[i] = bytes.Repeat([]byte{byte('a' + i)}, bigSize)
		require.NoError(t, os.WriteFile(filepath.Join(l2, bigName(i)), big[i], 0o644))
	}
	// A directory whose content is spread over both lowers, and a file.
	testutil.WriteFile(t, filepath.Join(l2, "dir", "from-l2"), "l2")
	testutil.WriteFile(t, filepath.Join(l2, "dir", "sub", "deep"), "deep")
	testutil.WriteFile(t, filepath.Join(l1, "dir", "from-l1"), "l1")
	testutil.WriteFile(t, filepath.Join(l1, "note"), "a note")
	lowersBefore := walkTree(t, base+"/l1").dump() + walkTree(t, base+"/l2").dump()
	opts := "lowerdir=" + l1 + ":" + l2 + ",upperdir=" + upper + ",workdir=" + work

	rng := rand.New(rand.NewPCG(1, 2))
	killedMidway := 0
	for i := range iterations {
		resetDir(t, upper)
		resetDir(t, work)
		d := startForeground(t, mnt, opts)

		done := make(chan struct{})
		go func() {
			defer close(done)
			crashWorkload(mnt, i%bigFiles)
		}()
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		select {
		case <-done:
		default:
			killedMidway++
		}
		d.stop(syscall.SIGKILL)
		<-done // requests fail once the daemon is gone
		detach(t, mnt)

		// Mount again: the union must be whole.
		d = startForeground(t, mnt, opts)
		checkAfterCrash(t, i, mnt, big)
		entries, err := os.ReadDir(filepath.Join(work, "strata"))
		require.NoError(t, err)
		if len(entries) != 0 {
			t.Errorf("iteration %d: workdir holds %d leftovers after remount", i, len(entries))
		}
		d.stop(syscall.SIGTERM)
		detach(t, mnt)
		if t.Failed() {
			t.Fatalf("iteration %d failed; upper:\n%s", i, walkTree(t, upper).dump())
		}
	}
	t.Logf("%d of %d kills landed while the workload was still running", killedMidway, iterations)
	if killedMidway < iterations/3 {
		t.Errorf("only %d kills landed mid-workload: the test is not testing much", killedMidway)
	}
	if after := walkTree(t, base+"/l1").dump() + walkTree(t, base+"/l2").dump(); after != lowersBefore {
		t.Errorf("lower branches changed")
	}
}

func bigName(i int) string { return "big" + string(rune('0'+i)) }

// crashWorkload copies a big file up (by appending one byte), renames the
// merged directory and a file, and back; it stops at the first error
// (the daemon died).
func crashWorkload(mnt string, bigIdx int) {
	steps := []func() error{
		func() error { return appendByte(filepath.Join(mnt, bigName(bigIdx))) },
		func() error { return os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "moved")) },
		func() error { return os.Rename(filepath.Join(mnt, "note"), filepath.Join(mnt, "note2")) },
		func() error { return appendByte(filepath.Join(mnt, bigName((bigIdx+1)%3))) },
		func() error { return os.Rename(filepath.Join(mnt, "moved"), filepath.Join(mnt, "dir")) },
	}
	for _, step := range steps {
		if step() != nil {
			return
		}
	}
}

func appendByte(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte{'+'})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkAfterCrash: each big file is whole (old content, or old plus the
// appended byte); the directory is at exactly one of its names with all
// its entries; the note is at exactly one of its names.
func checkAfterCrash(t *testing.T, i int, mnt string, big [][]byte) {
	t.Helper()
	for b, want := range big {
		got, err := os.ReadFile(filepath.Join(mnt, bigName(b)))
		if err != nil {
			t.Errorf("iteration %d: %s: %v", i, bigName(b), err)
			continue
		}
		if !bytes.Equal(got, want) && !bytes.Equal(got, append(append([]byte{}, want...), '+')) {
			t.Errorf("iteration %d: %s is neither old nor new: %d bytes, want %d or %d", i, bigName(b), len(got), len(want), len(want)+1)
		}
	}
	var dirs []string
	for _, name := range []string{"dir", "moved"} {
		if _, err := os.Lstat(filepath.Join(mnt, name)); err == nil {
			dirs = append(dirs, name)
		}
	}
	if len(dirs) != 1 {
		t.Errorf("iteration %d: the directory shows at %v, want exactly one name", i, dirs)
	} else {
		for _, rel := range []string{"from-l1", "from-l2", "sub/deep"} {
			if _, err := os.Lstat(filepath.Join(mnt, dirs[0], rel)); err != nil {
				t.Errorf("iteration %d: %s/%s lost: %v", i, dirs[0], rel, err)
			}
		}
	}
	var notes []string
	for _, name := range []string{"note", "note2"} {
		if b, err := os.ReadFile(filepath.Join(mnt, name)); err == nil {
			notes = append(notes, name)
			if string(b) != "a note" {
				t.Errorf("iteration %d: %s = %q", i, name, b)
			}
		}
	}
	if len(notes) != 1 {
		t.Errorf("iteration %d: the note shows at %v, want exactly one name", i, notes)
	}
}

// daemon is a "strata mount -f" started by this test, so the test owns
// its PID and signals only it.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startForeground starts the daemon and waits until it reports the mount
// ready on STRATA_READY_FD. Waiting for mountinfo alone is not enough: a
// SIGKILL while go-fuse still finishes its own setup (it opens a file on
// the new mount) can leave the dying daemon waiting on its own mount for
// ever, which is not what this test is about.
func startForeground(t *testing.T, mnt, opts string) *daemon {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	d := &daemon{cmd: exec.Command(strataBin, "mount", "-f", "-o", opts, mnt), exited: make(chan struct{})}
	var stderr bytes.Buffer
	d.cmd.Stderr = &stderr
	d.cmd.ExtraFiles = []*os.File{w}
	d.cmd.Env = append(os.Environ(), "STRATA_READY_FD=3")
	require.NoError(t, d.cmd.Start())
	w.Close()
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(syscall.SIGKILL)
		detach(t, mnt)
	})
	require.NoError(t, r.SetReadDeadline(time.Now().Add(settleTimeout)))
	msg, _ := io.ReadAll(r)
	if string(msg) != "ok\n" {
		t.Fatalf("strata mount -f did not report %s ready: %q; stderr: %s", mnt, msg, stderr.String())
	}
	require.NotEmpty(t, mountsAt(t, mnt), "ready, but nothing mounted at %s", mnt)
	return d
}

// stop signals the daemon (once it is gone, nothing) and waits for it.
func (d *daemon) stop(sig syscall.Signal) {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(sig)
	<-d.exited
}

// detach lazily unmounts whatever is left at mnt (a dead FUSE mount after
// a SIGKILL) and waits until it is gone.
func detach(t *testing.T, mnt string) {
	t.Helper()
	for try := 0; len(mountsAt(t, mnt)) > 0; try++ {
		if try == 50 {
			t.Fatalf("%s is still mounted after 50 lazy unmounts", mnt)
		}
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Fatalf("umount -l %s: %v", mnt, err)
		}
	}
}

// resetDir empties a directory.
func resetDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
}
