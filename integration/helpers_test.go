package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/internal/testutil"
)

const (
	// commandTimeout bounds every strata invocation: a mount that never
	// returns is a failure, not a hung test run.
	commandTimeout = 30 * time.Second
	// settleTimeout bounds the wait for a mount or a daemon to go away.
	settleTimeout = 5 * time.Second
)

// strataResult is what one run of the strata binary did.
type strataResult struct {
	Args           []string
	Stdout, Stderr string
	ExitCode       int // -1 when it did not exit by itself (timeout, signal)
}

// runStrata runs the strata binary with args and returns what it did. It
// fails the test only when the binary cannot be started at all.
func runStrata(t testing.TB, args ...string) strataResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A daemon that kept our pipes open would make Wait hang.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	res := strataResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("running strata %q: %v (stderr: %s)", args, err, res.Stderr)
	}
	if ctx.Err() != nil {
		t.Errorf("strata %q did not finish within %v", args, commandTimeout)
	}
	return res
}

// mountArgs is the command line of "strata mount" with one -o per option.
func mountArgs(mnt string, opts ...string) []string {
	args := []string{"mount"}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	return append(args, mnt)
}

// mountStrata mounts a strata union at mnt; each opt is one -o value
// ("lowerdir=/a:/b", "br=/a=ro:/b=ro"). It fails the test with strata's
// stderr when the mount is refused, and unmounts in t.Cleanup (even when the
// test fails), waiting until the mount and its daemon are gone.
func mountStrata(t testing.TB, mnt string, opts ...string) {
	t.Helper()
	testutil.NeedFUSE(t)
	t.Cleanup(func() { unmountAndWait(t, mnt, true) })
	res := runStrata(t, mountArgs(mnt, opts...)...)
	if res.ExitCode != 0 {
		t.Fatalf("strata %q: exit %d\nstderr: %s", res.Args, res.ExitCode, res.Stderr)
	}
	m := mountsAt(t, mnt)
	require.Len(t, m, 1, "strata mount exited 0, so the mount must be live at %s", mnt)
	require.Equal(t, "fuse.strata", m[0].FSType, "filesystem type at %s", mnt)
}

// mountKernelOverlay mounts kernel overlayfs read-only over lowers (top
// first) at mnt, and unmounts it in t.Cleanup.
func mountKernelOverlay(t testing.TB, mnt string, lowers ...string) {
	t.Helper()
	requireKernelOverlay(t)
	for _, l := range lowers {
		// The kernel reads "\:" in lowerdir; a comma would end the option.
		require.False(t, strings.ContainsAny(l, ",\\"), "lower %q: keep test paths free of commas and backslashes", l)
	}
	t.Cleanup(func() { unmountAndWait(t, mnt, false) })
	data := lowerdirOpt(lowers)
	err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, data)
	require.NoError(t, err, "mount -t overlay overlay -o %s %s", data, mnt)
}

// unmountAndWait removes every mount at mnt (strata umount for strata
// mounts, umount2 for the kernel's, a lazy unmount as the fallback) and
// waits until /proc/self/mountinfo no longer shows one; for strata mounts
// it also waits for the serving daemon to exit. Problems are test errors:
// a mount or daemon left behind is a bug worth seeing.
func unmountAndWait(t testing.TB, mnt string, strata bool) {
	t.Helper()
	for i := 0; i < 8 && len(mountsAt(t, mnt)) > 0; i++ {
		var err error
		if strata {
			if res := runStrata(t, "umount", mnt); res.ExitCode != 0 {
				err = errors.New(strings.TrimSpace(res.Stderr))
			}
		} else {
			err = unix.Unmount(mnt, 0)
		}
		if err != nil {
			t.Logf("unmount %s: %v; falling back to a lazy unmount", mnt, err)
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Errorf("umount -l %s: %v", mnt, err)
				break
			}
		}
		waitFor(func() bool { return len(mountsAt(t, mnt)) == 0 })
	}
	if m := mountsAt(t, mnt); len(m) > 0 {
		t.Errorf("still mounted at %s after unmounting: %+v", mnt, m)
	}
	if strata {
		if !waitFor(func() bool { return len(processesFor(t, mnt)) == 0 }) {
			t.Errorf("strata daemon for %s still running after unmount: pids %v", mnt, processesFor(t, mnt))
		}
	}
}

// waitFor polls cond every 20 ms for up to settleTimeout.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(settleTimeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	MountPoint string
	Options    []string // per-mount options (ro, nosuid, ...)
	FSType     string
	Source     string
	SuperOpts  string
}

// mountsAt lists the mounts whose mount point is mnt, oldest first.
func mountsAt(t testing.TB, mnt string) []mountEntry {
	t.Helper()
	want := canonicalPath(mnt)
	all, err := sys.Mounts()
	require.NoError(t, err)
	var out []mountEntry
	for _, m := range all {
		if m.MountPoint == want {
			out = append(out, mountEntry{MountPoint: want, Options: strings.Split(m.Options, ","), FSType: m.FSType, Source: m.Source, SuperOpts: m.SuperOptions})
		}
	}
	return out
}

// canonicalPath is p made absolute with symlinks resolved as far as it
// exists, the way the kernel reports mount points.
func canonicalPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// processesFor lists the processes (other than this one) with mnt, exactly,
// as one of their arguments: the strata daemon serving it keeps the user's
// command line. It only reads /proc; it never signals anything.
func processesFor(t testing.TB, mnt string) []int {
	t.Helper()
	names := map[string]bool{mnt: true, canonicalPath(mnt): true}
	dirs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue // exited meanwhile
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if names[arg] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
