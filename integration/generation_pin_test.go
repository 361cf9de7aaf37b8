package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// Tests of the nodes' cached entries (unionfs Node.current, re-resolved
// only when branches.Stack.Generation changes): an operation that does not
// bump the generation must not leave any node serving another object.

// genMount mounts lowerdir=l,upperdir=u,workdir=w at m under a fresh temp
// dir with the whiteout format given, and returns the four paths.
func genMount(t *testing.T, format string, lowerFiles map[string]string) (lower, upper, mnt string) {
	t.Helper()
	testutil.NeedFUSE(t)
	base := t.TempDir()
	lower, upper, work, mnt := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	testutil.Mkdirs(t, lower, upper, work, mnt)
	for name, content := range lowerFiles {
		require.NoError(t, os.WriteFile(filepath.Join(lower, name), []byte(content), 0o644))
	}
	t.Cleanup(func() { unmountAndWait(t, mnt, true) })
	args := append([]string{"mount", "--whiteout=" + format}, mountArgs(mnt, "lowerdir="+lower+",upperdir="+upper+",workdir="+work)[1:]...)
	res := runStrata(t, args...)
	require.Equal(t, 0, res.ExitCode, "strata %q: %s", res.Args, res.Stderr)
	require.Len(t, mountsAt(t, mnt), 1)
	return lower, upper, mnt
}

// An unlinked upper object whose node the kernel still holds (here through
// an O_PATH descriptor; an inotify watch does the same, and so does a
// FORGET not yet processed) keeps its union inode number in go-fuse's
// table. When the upper filesystem gives the freed st_ino to an object made
// next through the mount, the new name has the old number, and neither the
// unlink nor the creation changed the generation, so the old node's entry
// (the unlinked path) still counts as current. The new name is served
// right only because go-fuse registers every node made by CREATE, MKNOD,
// MKDIR and SYMLINK as exclusive (the old node leaves its table). This pins
// that reliance.
func TestGenerationInodeReuseAfterUnlink(t *testing.T) {
	kinds := []struct {
		name string
		make func(p string) error
		read func(p string) (string, error)
	}{
		{"symlink", func(p string) error {
			return os.Symlink("new "+filepath.Base(p), p)
		}, os.Readlink},
	}
	for _, format := range []string{"overlay", "aufs"} {
		for _, k := range kinds {
			t.Run(format+"/"+k.name, func(t *testing.T) {
				_, upper, mnt := genMount(t, format, nil)
				x := filepath.Join(mnt, "x")
				require.NoError(t, k.make(x))
				old := testutil.Lstat(t, filepath.Join(upper, "x")).Ino
				hold, err := unix.Open(x, unix.O_PATH|unix.O_NOFOLLOW, 0)
				require.NoError(t, err)
				defer unix.Close(hold)
				require.NoError(t, os.Remove(x))

				// Make objects until the upper reuses x's inode number
				// (ext4 and xfs do so at once; tmpfs never does).
				reused := ""
				for i := 0; i < 64 && reused == ""; i++ {
					name := "y" + strconv.Itoa(i)
					require.NoError(t, k.make(filepath.Join(mnt, name)))
					if testutil.Lstat(t, filepath.Join(upper, name)).Ino == old {
						reused = name
					}
				}
				if reused == "" {
					t.Skipf("the upper filesystem did not reuse inode %d", old)
				}
				got, err := k.read(filepath.Join(mnt, reused))
				require.NoError(t, err, "%s, new, has the upper inode number %d of the unlinked x", reused, old)
				require.Equal(t, "new "+reused, got)
			})
		}
	}
}
