package integration

// Tests of the fuse-overlayfs-compatible invocation, the way
// containers/storage drives its overlay.mount_program (issue 7): a store
// laid out as containers/storage lays it out, lowers given as l/ symlinks,
// layers in aufs form, exit 0 only once the mount is live, each of the
// unmount commands storage tries, one-line refusals that leave nothing
// mounted, and uid/gid mapping done at run time.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// storeLayer is one layer of a fake containers/storage overlay store.
type storeLayer struct {
	id, link string // <store>/<id>/diff, and its l/<link> symlink
	content  Layer
}

// buildStore lays layers out as containers/storage does under
// <root>/overlay: <id>/diff holds the layer, l/<link> -> ../<id>/diff.
// It returns the overlay directory and the l/ paths, top first.
func buildStore(t *testing.T, root string, layers []storeLayer) (string, []string) {
	t.Helper()
	overlay := filepath.Join(root, "overlay")
	require.NoError(t, os.MkdirAll(filepath.Join(overlay, "l"), 0o700))
	var links []string
	for _, l := range layers {
		buildLayer(t, filepath.Join(overlay, l.id, "diff"), l.content)
		link := filepath.Join(overlay, "l", l.link)
		require.NoError(t, os.Symlink(filepath.Join("..", l.id, "diff"), link))
		links = append(links, link)
	}
	return overlay, links
}

// containerDirs makes <overlay>/<id>/{diff,work,merged} for a container
// layer and returns them.
func containerDirs(t *testing.T, overlay, id string) (diff, work, merged string) {
	t.Helper()
	d := testutil.Mkdirs(t, filepath.Join(overlay, id, "diff"), filepath.Join(overlay, id, "work"), filepath.Join(overlay, id, "merged"))
	return d[0], d[1], d[2]
}

// podmanStyleStore is a two-layer image in aufs form (as storage unpacks
// it for a mount program): the top layer deletes base's /bin/gone and
// replaces /opq with an opaque directory.
func podmanStyleStore(t *testing.T) (overlay string, lowers []string) {
	return buildStore(t, t.TempDir(), []storeLayer{
		{"2b2b", "BBBBBBBBBBBBBBBBBBBBBBBBBB", Layer{
			File("bin/.wh.gone", "", Mode(0o444)),
			File("opq/.wh..wh..opq", "", Mode(0o444)),
			File("opq/new", "new\n"),
			File("etc/motd", "top\n"),
		}},
		{"1a1a", "AAAAAAAAAAAAAAAAAAAAAAAAAA", Layer{
			File("bin/sh", "#!\n", Mode(0o755)),
			File("bin/gone", "gone\n"),
			File("opq/old", "old\n"),
			File("etc/motd", "base\n"),
		}},
	})
}

func TestMountProgramForm(t *testing.T) {
	testutil.NeedFUSE(t)
	overlay, lowers := podmanStyleStore(t)
	diff, work, merged := containerDirs(t, overlay, "c0c0")
	t.Cleanup(func() { unmountAndWait(t, merged, true) })

	// The argv containers/storage builds: empty items, volatile last.
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + diff + ",workdir=" + work + ",,volatile"
	res := runStrata(t, "-o", opts, merged)
	require.Equal(t, 0, res.ExitCode, "strata -o ... %s: %s", merged, res.Stderr)
	assert.Empty(t, res.Stderr, "a successful mount with only honoured options prints nothing")
	// Exit 0 means live: no waiting.
	m := mountsAt(t, merged)
	require.Len(t, m, 1)
	assert.Equal(t, "fuse.strata", m[0].FSType)

	// The merged view honours the aufs markers of the l/ lowers.
	assertContent(t, filepath.Join(merged, "etc/motd"), "top\n")
	assert.NoFileExists(t, filepath.Join(merged, "bin/gone"), "whited out by .wh.gone")
	names, err := os.ReadDir(filepath.Join(merged, "opq"))
	require.NoError(t, err)
	require.Len(t, names, 1, "opq is opaque: only the top layer's entries")
	assert.Equal(t, "new", names[0].Name())
	entries, err := os.ReadDir(filepath.Join(merged, "bin"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), ".wh."), "marker %s visible", e.Name())
	}

	// Writes land in the upper; the lowers stay as they were.
	testutil.WriteFile(t, filepath.Join(merged, "a/b/c/new.txt"), "x\n")
	require.NoError(t, os.Remove(filepath.Join(merged, "bin/sh")))
	assertContent(t, filepath.Join(diff, "a/b/c/new.txt"), "x\n")
	assert.FileExists(t, filepath.Join(overlay, "1a1a/diff/bin/sh"), "the lower keeps bin/sh")
}

func assertContent(t *testing.T, p, want string) {
	t.Helper()
	got, err := os.ReadFile(p)
	if assert.NoError(t, err) {
		assert.Equal(t, want, string(got), p)
	}
}

// TestMountProgramUnmount: containers/storage unmounts with fusermount3
// -u, then fusermount -u, then a detached umount; the daemon must exit
// after each of them.
func TestMountProgramUnmount(t *testing.T) {
	testutil.NeedFUSE(t)
	overlay, lowers := podmanStyleStore(t)
	unmounts := []struct {
		name string
		run  func(mnt string) error
	}{
		{"fusermount3 -u", func(mnt string) error { return exec.Command("fusermount3", "-u", mnt).Run() }},
		{"fusermount -u", func(mnt string) error { return exec.Command("fusermount", "-u", mnt).Run() }},
		{"umount MNT_DETACH", func(mnt string) error { return unix.Unmount(mnt, unix.MNT_DETACH) }},
	}
	for i, u := range unmounts {
		t.Run(u.name, func(t *testing.T) {
			prog := strings.Fields(u.name)[0]
			if prog != "umount" {
				if _, err := exec.LookPath(prog); err != nil {
					testutil.SkipOrFail(t, prog+" is not installed (Debian package fuse3)")
				}
			}
			diff, work, merged := containerDirs(t, overlay, "u"+string(rune('0'+i)))
			t.Cleanup(func() { unmountAndWait(t, merged, true) })
			res := runStrata(t, "-o", "lowerdir="+strings.Join(lowers, ":")+",upperdir="+diff+",workdir="+work, merged)
			require.Equal(t, 0, res.ExitCode, res.Stderr)
			require.Len(t, mountsAt(t, merged), 1)
			require.NotEmpty(t, processesFor(t, merged), "a daemon serves the mount")

			require.NoError(t, u.run(merged), u.name)
			assert.True(t, waitFor(func() bool { return len(mountsAt(t, merged)) == 0 }), "still mounted after %s", u.name)
			assert.True(t, waitFor(func() bool { return len(processesFor(t, merged)) == 0 }),
				"the daemon must exit after %s; pids %v", u.name, processesFor(t, merged))
		})
	}
}

// TestMountProgramRefusals: what podman shows its user when the mount
// program fails is our stderr: one line naming the problem, and nothing
// may be left mounted.
func TestMountProgramRefusals(t *testing.T) {
	testutil.NeedFUSE(t)
	overlay, lowers := podmanStyleStore(t)
	cases := []struct {
		name  string
		opts  func(diff, work string) string
		wants []string
	}{
		{"bad option", func(diff, work string) string {
			return "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + diff + ",workdir=" + work + ",frobnicate"
		}, []string{`"frobnicate"`, "unknown option"}},
		{"option strata cannot honour", func(diff, work string) string {
			return "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + diff + ",workdir=" + work + ",xattr_permissions=2"
		}, []string{"xattr_permissions=2", "force_mask"}},
		{"missing lower", func(diff, work string) string {
			return "lowerdir=" + lowers[0] + ":" + filepath.Join(overlay, "l", "MISSINGMISSINGMISSINGMISSI") + ",upperdir=" + diff + ",workdir=" + work
		}, []string{"MISSINGMISSINGMISSINGMISSI", "does not exist"}},
		{"unwritable upper", func(diff, work string) string {
			// A read-only bind mount of the upper over itself: same
			// filesystem as the workdir, but EROFS for every write.
			require.NoError(t, unix.Mount(diff, diff, "", unix.MS_BIND, ""))
			t.Cleanup(func() { unmountAndWait(t, diff, false) })
			require.NoError(t, unix.Mount("", diff, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""))
			return "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + diff + ",workdir=" + work
		}, []string{"upperdir", "is not writable", "read-only file system"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			diff, work, merged := containerDirs(t, overlay, "r"+string(rune('0'+i)))
			t.Cleanup(func() { unmountAndWait(t, merged, true) })
			opts := tc.opts(diff, work)
			assertRefused(t, runStrata(t, "-o", opts, merged), merged, tc.wants...)
			entries, err := os.ReadDir(diff)
			require.NoError(t, err)
			assert.Empty(t, entries, "a refused mount writes nothing to the upper")
		})
	}
}

// TestMountProgramIDMapping: uidmapping/gidmapping and squash_to_* are
// applied at run time, as fuse-overlayfs does: the mount shows mapped
// owners, chown and create store the ids mapped back, and the lowers are
// never chowned.
func TestMountProgramIDMapping(t *testing.T) {
	testutil.NeedFUSE(t)
	overlay, lowers := buildStore(t, t.TempDir(), []storeLayer{
		{"1a1a", "AAAAAAAAAAAAAAAAAAAAAAAAAA", Layer{
			File("root-owned", "r\n", Owner(0, 0)),
			File("user-owned", "u\n", Owner(5, 6)),
			File("unmapped", "x\n", Owner(70000, 70000)),
			Dir("dir", Owner(0, 0), Mode(0o777)),
		}},
	})
	lowerBefore := walkTree(t, filepath.Join(overlay, "1a1a/diff"))
	owner := func(p string) [2]uint32 {
		t.Helper()
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st), p)
		return [2]uint32{st.Uid, st.Gid}
	}

	t.Run("uidmapping and gidmapping", func(t *testing.T) {
		diff, work, merged := containerDirs(t, overlay, "m1")
		t.Cleanup(func() { unmountAndWait(t, merged, true) })
		res := runStrata(t, "-o", "lowerdir="+lowers[0]+",upperdir="+diff+",workdir="+work+
			",uidmapping=0:1000:1:1:100000:65536,gidmapping=0:2000:1:1:200000:65536", merged)
		require.Equal(t, 0, res.ExitCode, res.Stderr)
		assert.Equal(t, [2]uint32{1000, 2000}, owner(filepath.Join(merged, "root-owned")))
		assert.Equal(t, [2]uint32{100004, 200005}, owner(filepath.Join(merged, "user-owned")))
		assert.Equal(t, [2]uint32{65534, 65534}, owner(filepath.Join(merged, "unmapped")), "no range covers 70000: the overflow id")

		// chown through the mount stores the id mapped back.
		require.NoError(t, os.Lchown(filepath.Join(merged, "root-owned"), 100009, 2000))
		assert.Equal(t, [2]uint32{100009, 2000}, owner(filepath.Join(merged, "root-owned")))
		assert.Equal(t, [2]uint32{10, 0}, owner(filepath.Join(diff, "root-owned")), "stored in the upper as the container's ids")

		// A file created by root (not in the mount's id range) is stored
		// as the overflow id, as fuse-overlayfs stores it.
		testutil.WriteFile(t, filepath.Join(merged, "dir/created"), "c\n")
		assert.Equal(t, [2]uint32{65534, 65534}, owner(filepath.Join(diff, "dir/created")))
	})

	t.Run("squash_to_uid, squash_to_gid", func(t *testing.T) {
		diff, work, merged := containerDirs(t, overlay, "m2")
		t.Cleanup(func() { unmountAndWait(t, merged, true) })
		res := runStrata(t, "-o", "lowerdir="+lowers[0]+",upperdir="+diff+",workdir="+work+",squash_to_uid=1234,squash_to_gid=4321,static_nlink", merged)
		require.Equal(t, 0, res.ExitCode, res.Stderr)
		for _, name := range []string{"root-owned", "user-owned", "unmapped", "dir"} {
			assert.Equal(t, [2]uint32{1234, 4321}, owner(filepath.Join(merged, name)), name)
		}
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(filepath.Join(merged, "dir"), &st))
		assert.EqualValues(t, 1, st.Nlink, "static_nlink: directories report one link")
		// chown of a squashed owner succeeds and changes nothing.
		require.NoError(t, os.Lchown(filepath.Join(merged, "user-owned"), 0, 0))
		assert.Equal(t, [2]uint32{1234, 4321}, owner(filepath.Join(merged, "user-owned")))
		assert.NoFileExists(t, filepath.Join(diff, "user-owned"), "a chown that changes nothing copies nothing up")
	})

	lowerAfter := walkTree(t, filepath.Join(overlay, "1a1a/diff"))
	assertSameTree(t, lowerBefore, lowerAfter, "the lower after the mapped mounts (never chowned)")
}

// TestMountProgramWarning: options that change nothing visible are
// accepted, and named in one warning line; the mount is made.
func TestMountProgramWarning(t *testing.T) {
	testutil.NeedFUSE(t)
	overlay, lowers := podmanStyleStore(t)
	diff, work, merged := containerDirs(t, overlay, "w0")
	t.Cleanup(func() { unmountAndWait(t, merged, true) })
	res := runStrata(t, "-o", "lowerdir="+strings.Join(lowers, ":")+",upperdir="+diff+",workdir="+work+",threaded=1,writeback=0,metacopy=on", merged)
	require.Equal(t, 0, res.ExitCode, res.Stderr)
	require.Len(t, mountsAt(t, merged), 1)
	lines := strings.Split(strings.TrimSuffix(res.Stderr, "\n"), "\n")
	require.Len(t, lines, 1, "one warning line, got %q", res.Stderr)
	for _, opt := range []string{"threaded=1", "writeback=0", "metacopy=on"} {
		assert.Contains(t, lines[0], opt)
	}
	assert.True(t, strings.HasPrefix(lines[0], "strata: warning: "), lines[0])
}
