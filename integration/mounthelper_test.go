package integration

// mount(8) and /etc/fstab (issue 7). For a type fuse.NAME, mount(8) runs
// mount.fuse3 (Debian's fuse3 also installs it as /sbin/mount.fuse),
// which runs "NAME SOURCE TARGET -o OPTIONS" through /bin/sh, with
// mount(8)'s fixed PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:...).
// So `make install` (strata into /usr/local/bin) is all a system needs,
// and NAME may also be an absolute path. The tests install with
// `make install PREFIX=<temp dir>` and mount through the absolute path,
// which touches nothing outside the test; the plain `-t fuse.strata`
// needs /usr/local/bin/strata and runs only under CI as root, removing
// what it installed.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/internal/testutil"
)

// makeInstall runs `make install` from the repository with the given
// variables and returns the installed strata.
func makeInstall(t *testing.T, prefix string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		testutil.SkipOrFail(t, "make is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "make", "-C", "..", "install", "PREFIX="+prefix).CombinedOutput()
	require.NoError(t, err, "make install PREFIX=%s: %s", prefix, out)
	bin := filepath.Join(prefix, "bin", "strata")
	require.FileExists(t, bin)
	return bin
}

// runMount runs mount(8) or umount(8) with args and fails the test on a
// non-zero exit.
func runMount(t *testing.T, prog string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second // a daemon holding our pipes must not hang us
	require.NoError(t, cmd.Run(), "%s %q: %s", prog, args, out.String())
}

// helperStack is a writable union for the helper tests; it returns the
// options and the mountpoint.
func helperStack(t *testing.T) (opts, mnt string) {
	d := t.TempDir()
	buildLayer(t, filepath.Join(d, "lower"), Layer{File("hello", "from the lower\n")})
	testutil.Mkdirs(t, filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "mnt"))
	return "lowerdir=" + filepath.Join(d, "lower") + ",upperdir=" + filepath.Join(d, "upper") + ",workdir=" + filepath.Join(d, "work"),
		filepath.Join(d, "mnt")
}

// checkHelperMount checks a mount made by mount(8), writes through it,
// unmounts it with umount(8) and waits for the daemon to exit.
func checkHelperMount(t *testing.T, mnt string) {
	t.Helper()
	m := mountsAt(t, mnt)
	require.Len(t, m, 1, "mount(8) returned, so the union must be live at %s", mnt)
	assert.Equal(t, "fuse.strata", m[0].FSType)
	assertContent(t, filepath.Join(mnt, "hello"), "from the lower\n")
	testutil.WriteFile(t, filepath.Join(mnt, "new"), "written\n")
	runMount(t, "umount", mnt)
	assert.Empty(t, mountsAt(t, mnt))
	assert.True(t, waitFor(func() bool { return len(processesFor(t, mnt)) == 0 }), "daemon still running after umount")
}

func TestMountHelper(t *testing.T) {
	testutil.NeedFUSE(t)
	if _, err := os.Stat("/sbin/mount.fuse3"); err != nil {
		testutil.SkipOrFail(t, "mount.fuse3 is missing (Debian package fuse3): "+err.Error())
	}
	strata := makeInstall(t, t.TempDir())

	t.Run("mount -t fuse.PATH", func(t *testing.T) {
		opts, mnt := helperStack(t)
		t.Cleanup(func() { unmountAndWait(t, mnt, true) })
		runMount(t, "mount", "-t", "fuse."+strata, "strata", mnt, "-o", opts+",noatime")
		checkHelperMount(t, mnt)
	})

	t.Run("fstab line", func(t *testing.T) {
		opts, mnt := helperStack(t)
		t.Cleanup(func() { unmountAndWait(t, mnt, true) })
		// A private fstab (mount -T) holds the line /etc/fstab would,
		// with the options fstab lines carry for mount(8) and systemd.
		fstab := filepath.Join(t.TempDir(), "fstab")
		line := strings.Join([]string{"strata", mnt, "fuse." + strata, opts + ",noatime,nofail,_netdev,x-systemd.automount", "0", "0"}, " ")
		require.NoError(t, os.WriteFile(fstab, []byte(line+"\n"), 0o644))
		runMount(t, "mount", "-T", fstab, mnt)
		checkHelperMount(t, mnt)
	})

	t.Run("mount -t fuse.strata", func(t *testing.T) {
		const installed = "/usr/local/bin/strata"
		if os.Getenv("CI") != "true" {
			t.Skip("needs strata in /usr/local/bin (mount(8) resets PATH); runs under CI=true, which installs it and removes it again")
		}
		if old, err := os.ReadFile(installed); err == nil {
			out, _ := exec.Command(installed, "version").Output()
			require.True(t, strings.HasPrefix(string(out), "strata "), "%s exists and is not strata; not overwriting it", installed)
			t.Cleanup(func() { os.WriteFile(installed, old, 0o755) })
		} else {
			t.Cleanup(func() { os.Remove(installed) })
		}
		makeInstall(t, "/usr/local")
		opts, mnt := helperStack(t)
		t.Cleanup(func() { unmountAndWait(t, mnt, true) })
		runMount(t, "mount", "-t", "fuse.strata", "strata", mnt, "-o", opts)
		checkHelperMount(t, mnt)
	})
}
