package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// inspectFormat runs strata inspect --json on dir and returns the format
// and the problem codes it reports.
func inspectFormat(t *testing.T, dir string) (string, []string) {
	t.Helper()
	res := runStrata(t, "inspect", "--json", dir)
	var invs []branches.BranchInventory
	require.NoError(t, json.Unmarshal([]byte(res.Stdout), &invs), "strata inspect %s: %s", dir, res.Stderr)
	require.Len(t, invs, 1)
	var codes []string
	for _, p := range invs[0].Problems {
		codes = append(codes, p.Code+" "+p.Path)
	}
	return invs[0].Format, codes
}

// TestConvertRoundTripKernel writes an upper with kernel overlay itself
// (whiteouts, an opaque directory, a redirect) plus an xattr whiteout,
// converts it overlay -> aufs -> overlay with strata convert, and checks the
// merged tree at each step: kernel overlay over the original, strata over
// the aufs form, and kernel overlay over the result must all show the same
// tree.
func TestConvertRoundTripKernel(t *testing.T) {
	requireKernelOverlay(t)
	tmp := t.TempDir()
	lower := filepath.Join(tmp, "lower")
	buildLayer(t, lower, Layer{
		File("del.txt", "deleted"), File("keep.txt", "kept"),
		File("dir/a", "a"), File("dir/b", "b"),
		File("old/f", "moved with its dir"), File("old/sub/g", "deep"),
		File("xd/w", "xattr-whited"), File("xd/keep", "k"),
		Symlink("link", "keep.txt"),
	})
	dirs := testutil.Mkdirs(t, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "rw"), filepath.Join(tmp, "view"))
	upper, work, rw, view := dirs[0], dirs[1], dirs[2], dirs[3]

	// The kernel writes the upper.
	mountKernelOverlayRW(t, rw, []string{lower}, upper, work, "redirect_dir=on")
	require.NoError(t, os.Remove(filepath.Join(rw, "del.txt")))
	require.NoError(t, os.RemoveAll(filepath.Join(rw, "dir")))
	require.NoError(t, os.Mkdir(filepath.Join(rw, "dir"), 0o755))
	testutil.WriteFile(t, filepath.Join(rw, "dir/new"), "new")
	require.NoError(t, os.Rename(filepath.Join(rw, "old"), filepath.Join(rw, "new")))
	testutil.WriteFile(t, filepath.Join(rw, "added.txt"), "added")
	unmountAndWait(t, rw, false)
	// And an xattr whiteout (kernel 6.7+ form), in a directory of its own.
	buildLayer(t, upper, Layer{File("xd/w", "", Xattr("trusted.overlay.whiteout", "y")), Dir("xd", Xattr("trusted.overlay.opaque", "x"))})

	format, problems := inspectFormat(t, upper)
	require.Equal(t, "overlay", format)
	require.Empty(t, problems)

	mountKernelOverlay(t, view, upper, lower)
	want := walkTree(t, view)
	unmountAndWait(t, view, false)
	for _, p := range []string{"del.txt", "dir/a", "old", "xd/w"} {
		require.NotContains(t, want.Nodes, p, "fixture: kernel overlay shows %s", p)
	}
	for _, p := range []string{"new/f", "new/sub/g", "dir/new", "xd/keep", "added.txt"} {
		require.Contains(t, want.Nodes, p, "fixture: kernel overlay does not show %s", p)
	}

	res := runStrata(t, "convert", "--to", "aufs", upper)
	require.Equal(t, 0, res.ExitCode, res.Stderr)
	format, problems = inspectFormat(t, upper)
	assert.Equal(t, "aufs", format)
	assert.Empty(t, problems)
	mountStrata(t, view, "lowerdir="+escapeLowerdir(upper)+":"+escapeLowerdir(lower))
	assertSameTree(t, want, walkTree(t, view), "kernel overlay over the original vs strata over the aufs form")
	unmountAndWait(t, view, true)

	res = runStrata(t, "convert", "--to", "overlay", upper)
	require.Equal(t, 0, res.ExitCode, res.Stderr)
	format, problems = inspectFormat(t, upper)
	assert.Equal(t, "overlay", format)
	assert.Empty(t, problems)
	mountKernelOverlay(t, view, upper, lower)
	assertSameTree(t, want, walkTree(t, view), "kernel overlay over the original vs over the round-tripped upper")
	unmountAndWait(t, view, false)
}

// TestConvertRefusesMountedBranch: convert leaves alone a branch that a
// strata daemon or a kernel overlay mount uses, or a directory holding
// one, and says which mount.
func TestConvertRefusesMountedBranch(t *testing.T) {
	requireKernelOverlay(t)
	tmp := t.TempDir()
	lower := filepath.Join(tmp, "layers", "lower")
	buildLayer(t, lower, Layer{File("f", "x")})
	dirs := testutil.Mkdirs(t, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "mnt"))
	upper := dirs[0]
	buildLayer(t, upper, Layer{File(".wh.f", "")})
	before := snapshotBranches(t, []string{upper, lower})

	mountStrata(t, dirs[2], writableOpt([]string{lower}, upper, dirs[1]))
	for _, d := range []string{upper, lower, filepath.Join(tmp, "layers")} {
		res := runStrata(t, "convert", "--to", "overlay", d)
		assert.NotEqual(t, 0, res.ExitCode, "convert of %s under a strata mount", d)
		assert.Contains(t, res.Stderr, "is in use: process")
	}
	unmountAndWait(t, dirs[2], true)

	mountKernelOverlay(t, dirs[2], upper, lower)
	res := runStrata(t, "convert", "--to", "overlay", upper)
	assert.NotEqual(t, 0, res.ExitCode)
	assert.Contains(t, res.Stderr, "is in use: kernel overlay mounted at "+canonicalPath(dirs[2]))
	unmountAndWait(t, dirs[2], false)
	assertBranchesUnchanged(t, before)

	res = runStrata(t, "convert", "--to", "overlay", upper)
	assert.Equal(t, 0, res.ExitCode, "unmounted, it converts: %s", res.Stderr)
	assert.Contains(t, res.Stdout, "1 marker(s) rewritten to overlay format")
}
