package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestMountLifecycle follows one mount from start to end: live and
// read-only while mounted, gone with its daemon after strata umount.
func TestMountLifecycle(t *testing.T) {
	testutil.NeedFUSE(t)
	tmp := t.TempDir()
	dirs := buildLayers(t, tmp, []Layer{
		{File("hello.txt", "hello\n")},
		{File("base.txt", "base\n"), Dir("dir")},
	})
	mnt := testutil.Mkdirs(t, filepath.Join(tmp, "mnt"))[0]
	testutil.WriteFile(t, filepath.Join(mnt, "under-the-mount"), "hidden while mounted\n")
	before := []Tree{walkTree(t, dirs[0], walkOptions{times: true}), walkTree(t, dirs[1], walkOptions{times: true})}

	mountStrata(t, mnt, "lowerdir="+strings.Join(dirs, ":"))

	m := mountsAt(t, mnt)
	require.Len(t, m, 1, "one mount at %s", mnt)
	assert.Equal(t, "fuse.strata", m[0].FSType)
	assert.Contains(t, m[0].Options, "ro", "per-mount options %v", m[0].Options)
	got, err := os.ReadFile(filepath.Join(mnt, "base.txt"))
	require.NoError(t, err)
	assert.Equal(t, "base\n", string(got))
	assert.NoFileExists(t, filepath.Join(mnt, "under-the-mount"))

	// Every kind of write fails with EROFS.
	writes := map[string]func() error{
		"open O_WRONLY": func() error { return openClose(filepath.Join(mnt, "hello.txt"), os.O_WRONLY) },
		"open O_RDWR":   func() error { return openClose(filepath.Join(mnt, "base.txt"), os.O_RDWR) },
		"open O_TRUNC":  func() error { return openClose(filepath.Join(mnt, "hello.txt"), os.O_RDONLY|os.O_TRUNC) },
		"create":        func() error { return openClose(filepath.Join(mnt, "new.txt"), os.O_WRONLY|os.O_CREATE) },
		"mkdir":         func() error { return os.Mkdir(filepath.Join(mnt, "newdir"), 0o755) },
		"unlink":        func() error { return os.Remove(filepath.Join(mnt, "hello.txt")) },
		"chmod":         func() error { return os.Chmod(filepath.Join(mnt, "hello.txt"), 0o600) },
	}
	for name, op := range writes {
		assert.ErrorIs(t, op(), syscall.EROFS, "%s on the read-only union", name)
	}

	daemons := processesFor(t, mnt)
	assert.Len(t, daemons, 1, "one strata daemon serves %s", mnt)

	res := runStrata(t, "umount", mnt)
	require.Equal(t, 0, res.ExitCode, "strata umount: %s", res.Stderr)
	assert.True(t, waitFor(func() bool { return len(mountsAt(t, mnt)) == 0 }), "mount still listed after strata umount")
	assert.True(t, waitFor(func() bool {
		for _, pid := range processesFor(t, mnt) {
			if slices.Contains(daemons, pid) {
				return false
			}
		}
		return true
	}), "daemon %v still running after strata umount", daemons)
	assert.Empty(t, processesFor(t, mnt), "no strata process left for %s", mnt)
	assert.FileExists(t, filepath.Join(mnt, "under-the-mount"), "the mountpoint's own content shows again")

	// A second umount has nothing to do: it fails, naming the path.
	res = runStrata(t, "umount", mnt)
	assert.NotEqual(t, 0, res.ExitCode, "strata umount of a directory that is not mounted")
	assert.Contains(t, res.Stderr, mnt)
	assert.Equal(t, 1, strings.Count(res.Stderr, "\n"), "one line on stderr: %q", res.Stderr)

	for i, d := range dirs {
		after := walkTree(t, d, walkOptions{times: true})
		assertSameTree(t, before[i], after, "branch before and after the mount's life")
	}
}

func openClose(p string, flag int) error {
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
