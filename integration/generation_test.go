package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// ftruncate of an open file whose name was unlinked and then created again
// must truncate the open file, not the new file at the same name.
// (Not caused by the generation change: before it, a re-resolution of the
// orphaned node failed and the node kept its old entry all the same.)
func TestFtruncateUnlinkedOpenFile(t *testing.T) {
	for _, format := range []string{"overlay", "aufs"} {
		t.Run(format, func(t *testing.T) {
			_, _, mnt := genMount(t, format, nil)
			f := filepath.Join(mnt, "f")
			require.NoError(t, os.WriteFile(f, []byte("old contents"), 0o644))
			fd, err := unix.Open(f, unix.O_RDWR, 0)
			require.NoError(t, err)
			defer unix.Close(fd)
			require.NoError(t, os.Remove(f))
			require.NoError(t, os.WriteFile(f, []byte("precious"), 0o600))
			require.NoError(t, unix.Ftruncate(fd, 0))
			require.NoError(t, unix.Fchmod(fd, 0o755))
			got, err := os.ReadFile(f)
			require.NoError(t, err)
			require.Equal(t, "precious", string(got), "ftruncate of the unlinked open file changed the new f")
			st, err := os.Stat(f)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "fchmod of the unlinked open file changed the new f")
		})
	}
}

// fchmod of an open lower file after its name is unlinked must not bring
// the name back (the whiteout must keep hiding the lower file).
// (Not caused by the generation change either.)
func TestFchmodUnlinkedLowerFile(t *testing.T) {
	for _, format := range []string{"overlay", "aufs"} {
		t.Run(format, func(t *testing.T) {
			_, _, mnt := genMount(t, format, map[string]string{"f": "lower"})
			f := filepath.Join(mnt, "f")
			fd, err := unix.Open(f, unix.O_RDONLY, 0)
			require.NoError(t, err)
			defer unix.Close(fd)
			require.NoError(t, os.Remove(f))
			err = unix.Fchmod(fd, 0o600)
			_, statErr := os.Lstat(f)
			require.True(t, os.IsNotExist(statErr), "f after unlink and fchmod of an open descriptor (fchmod: %v): stat says %v", err, statErr)
			names, rerr := os.ReadDir(mnt)
			require.NoError(t, rerr)
			require.Empty(t, names, "the union root after unlinking its only file")
		})
	}
}

// Two lower branches on one filesystem may hold hard links of one inode
// (layer stores that share files between layers do this): the union shows
// both names as one inode (one number: same device, same st_ino), so the
// kernel and go-fuse give both names one node. A copy-up of the name in the
// upper lower branch copies up only the names of that branch's link map,
// and gives the copy the shared number; the copy has st_nlink 1. Unlinking
// it then leaves the generation alone, and the node, reached through the
// other name, keeps the unlinked copy's entry: ENOENT for a visible file.
// Before the change the unlink bumped the counter and the node resolved its
// remaining name again.
func TestGenerationCrossBranchHardLink(t *testing.T) {
	for _, format := range []string{"overlay", "aufs"} {
		t.Run(format, func(t *testing.T) {
			testutil.NeedFUSE(t)
			base := t.TempDir()
			l1, l2, upper, work, mnt := filepath.Join(base, "l1"), filepath.Join(base, "l2"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
			testutil.Mkdirs(t, l1, l2, upper, work, mnt)
			require.NoError(t, os.WriteFile(filepath.Join(l1, "a"), []byte("shared"), 0o644))
			require.NoError(t, os.Link(filepath.Join(l1, "a"), filepath.Join(l2, "b")))
			t.Cleanup(func() { unmountAndWait(t, mnt, true) })
			res := runStrata(t, append([]string{"mount", "--whiteout=" + format}, mountArgs(mnt, "lowerdir="+l1+":"+l2+",upperdir="+upper+",workdir="+work)[1:]...)...)
			require.Equal(t, 0, res.ExitCode, "strata %q: %s", res.Args, res.Stderr)

			a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
			var sa, sb unix.Stat_t
			require.NoError(t, unix.Lstat(a, &sa)) // the node, made by a's lookup: a's entry
			require.NoError(t, os.Chmod(a, 0o600)) // copies a (alone) up
			// The next request on the node resolves it again (the copy-up
			// changed the generation), to the upper copy of a.
			_, err := os.ReadFile(a)
			require.NoError(t, err)
			// b's lookup finds the same inode number: go-fuse hands back
			// the same node, which keeps its entry.
			require.NoError(t, unix.Lstat(b, &sb))
			require.Equal(t, sa.Ino, sb.Ino, "a and b: one inode in the union")
			require.NoError(t, os.Remove(a))
			got, err := os.ReadFile(b)
			require.NoError(t, err, "b is still visible (it is listed: %v)", testutil.ReadDirNames(t, mnt))
			require.Equal(t, "shared", string(got))
		})
	}
}

// The same with two rw branches (aufs syntax): a hard-link pair in the lower
// rw branch, one name renamed (moved alone to the top rw branch, keeping the
// pair's number, st_nlink 1) and then unlinked: the other name's node keeps
// the unlinked copy's entry.
func TestGenerationLinksInLowerRWBranch(t *testing.T) {
	testutil.NeedFUSE(t)
	base := t.TempDir()
	top, low, mnt := filepath.Join(base, "top"), filepath.Join(base, "low"), filepath.Join(base, "m")
	testutil.Mkdirs(t, top, low, mnt)
	require.NoError(t, os.WriteFile(filepath.Join(low, "a"), []byte("shared"), 0o644))
	require.NoError(t, os.Link(filepath.Join(low, "a"), filepath.Join(low, "b")))
	mountStrata(t, mnt, "br="+top+"=rw:"+low+"=rw")

	a, a2, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "a2"), filepath.Join(mnt, "b")
	var sa, sb unix.Stat_t
	require.NoError(t, unix.Lstat(a, &sa))
	require.NoError(t, os.Rename(a, a2))
	_, err := os.ReadFile(a2) // the node resolves again: a2 in the top branch
	require.NoError(t, err)
	require.NoError(t, unix.Lstat(b, &sb))
	require.Equal(t, sa.Ino, sb.Ino, "a2 and b: one inode number")
	require.NoError(t, os.Remove(a2))
	got, err := os.ReadFile(b)
	require.NoError(t, err, "b is still visible (it is listed: %v)", testutil.ReadDirNames(t, mnt))
	require.Equal(t, "shared", string(got))
}

// TestFchmodUnlinkedOpenFileRacingRecreate runs fchmod and ftruncate of an
// open file against the unlink and re-creation of its name, many times: in
// every order the new file keeps its own mode and content. A node that
// re-resolved its old path in the window between the branch unlink and
// go-fuse's tree update once kept that path as current, and then acted on
// the file that took the name.
func TestFchmodUnlinkedOpenFileRacingRecreate(t *testing.T) {
	_, _, mnt := genMount(t, "overlay", nil)
	f := filepath.Join(mnt, "f")
	for i := range 200 {
		require.NoError(t, os.WriteFile(f, []byte("old contents"), 0o644))
		fd, err := unix.Open(f, unix.O_RDWR, 0)
		require.NoError(t, err)
		done, statted := make(chan error, 1), make(chan struct{})
		go func() {
			if err := os.Remove(f); err != nil {
				done <- err
				return
			}
			done <- os.WriteFile(f, []byte("precious"), 0o600)
		}()
		go func() {
			// stat(2) by name makes the node resolve its path again,
			// the unlink's window included (the attribute cache is
			// dropped by the fchmod and ftruncate below).
			defer close(statted)
			for range 20 {
				var st unix.Stat_t
				unix.Stat(f, &st)
			}
		}()
		for range 3 {
			unix.Fchmod(fd, 0o755) // on the old file, or on nothing
			unix.Ftruncate(fd, 1)
		}
		require.NoError(t, <-done)
		<-statted
		unix.Close(fd)
		got, err := os.ReadFile(f)
		require.NoError(t, err)
		require.Equal(t, "precious", string(got), "round %d: the new f was truncated through the old descriptor", i)
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "round %d: the new f was changed through the old descriptor", i)
		require.NoError(t, os.Remove(f))
	}
}
