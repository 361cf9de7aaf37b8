package drivers_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers"
	"github.com/strata-fs/strata/drivers/drivertest"
	"github.com/strata-fs/strata/internal/testutil"
)

// fakeAufsStore writes a Docker aufs store the way Docker's aufs driver
// left it: layers/<id> with the ancestors nearest first, diff/<id> with
// .wh. whiteouts, an opaque directory, aufs's own .wh..wh.aufs,
// .wh..wh.plnk (holding a pseudo-link) and .wh..wh.orph, and mnt/<id>.
// The chain is base, mid, top (an image), ctr-init and ctr (a container).
func fakeAufsStore(t *testing.T) string {
	dir := t.TempDir()
	chain := []string{"base", "mid", "top", "ctr-init", "ctr"}
	for i, id := range chain {
		var anc []string
		for j := i - 1; j >= 0; j-- {
			anc = append(anc, chain[j]+"\n")
		}
		testutil.WriteFileMode(t, filepath.Join(dir, "layers/"+id), strings.Join(anc, ""), 0o644)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "diff", id), 0o755))
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "mnt", id), 0o755))
	}
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/etc/hostname"), "base\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/etc/passwd"), "root:x:0:0::/root:/bin/sh\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/bin/sh"), "#!shell\n", 0o755)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/lib/libc.so"), drivertest.Random(5000, 11), 0o644)
	require.NoError(t, os.Link(filepath.Join(dir, "diff/base/lib/libc.so"), filepath.Join(dir, "diff/base/lib/libc.so.6")))
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/usr/share/doc/readme"), "old docs\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/usr/share/doc/license"), "old license\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/base/var/log/old.log"), "log\n", 0o644)
	for _, id := range []string{"base", "mid"} {
		testutil.WriteFileMode(t, filepath.Join(dir, "diff/"+id+"/.wh..wh.aufs"), "", 0o444)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "diff", id, ".wh..wh.orph"), 0o700))
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "diff", id, ".wh..wh.plnk"), 0o700))
	}
	// aufs keeps a pseudo-link of a copied-up hard link in .wh..wh.plnk.
	require.NoError(t, os.Link(filepath.Join(dir, "diff/base/lib/libc.so"), filepath.Join(dir, "diff/base/.wh..wh.plnk/1234.5678")))
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/mid/etc/hostname"), "mid\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/mid/etc/.wh.passwd"), "", 0o444)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/mid/usr/share/doc/.wh..wh..opq"), "", 0o444)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/mid/usr/share/doc/new"), "new docs\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/mid/var/.wh.log"), "", 0o444)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/top/opt/app/run"), "#!app\n", 0o755)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/ctr-init/etc/hosts"), "127.0.0.1 localhost\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/ctr-init/.dockerenv"), "", 0o755)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/ctr/tmp/work"), "container data\n", 0o644)
	testutil.WriteFileMode(t, filepath.Join(dir, "diff/ctr/.wh.opt"), "", 0o444)
	return dir
}

// stamps are every object's mtime and ctime: reading a tree changes
// neither, any write changes a ctime.
const stamps = testutil.WithMtime | testutil.WithRootMtime | testutil.WithCtime

func TestImportAufs(t *testing.T) {
	src := fakeAufsStore(t)
	before := testutil.Snapshot(t, src, stamps)
	trees := map[string][2]drivertest.Tree{}
	for _, backend := range crossBackends {
		t.Run(backend, func(t *testing.T) {
			s := openStore(t, backend)
			ids, err := s.ImportAufs(src)
			require.NoError(t, err)
			require.Equal(t, []string{"base", "mid", "top", "ctr-init", "ctr"}, ids)
			again, err := s.ImportAufs(src)
			require.NoError(t, err, "a second import")
			require.Empty(t, again, "a second import imports nothing")

			for id, rw := range map[string]string{"top": "false", "ctr-init": "true", "ctr": "true"} {
				m, err := s.GetMetadata(id)
				require.NoError(t, err)
				require.Equal(t, rw, m["ReadWrite"], "%s writable", id)
				require.Equal(t, map[string]string{"top": "mid", "ctr-init": "top", "ctr": "ctr-init"}[id], m["Parent"])
			}
			top, ctr := snapshotLayer(t, s, "top"), snapshotLayer(t, s, "ctr")
			trees[backend] = [2]drivertest.Tree{top, ctr}
			require.Contains(t, top["etc/hostname"], "size=4", "mid's hostname")
			require.Contains(t, top["lib/libc.so.6"], "link-of=lib/libc.so", "the hard link is kept")
			require.Contains(t, top, "usr/share/doc/new")
			require.Contains(t, top, "opt/app/run")
			for _, gone := range []string{"etc/passwd", "usr/share/doc/readme", "usr/share/doc/license", "var/log"} {
				require.NotContains(t, top, gone)
			}
			for p := range top {
				require.NotContains(t, p, ".wh.", "aufs markers and bookkeeping are not content")
			}
			require.Contains(t, ctr, "tmp/work")
			require.Contains(t, ctr, ".dockerenv")
			require.NotContains(t, ctr, "opt")

			// The container layer is writable and mounts like any other.
			dir, err := s.Get("ctr", "")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tmp/more"), []byte("x"), 0o644))
			require.NoError(t, s.Put("ctr"))
		})
	}
	require.Equal(t, before, testutil.Snapshot(t, src, stamps), "the aufs store was modified")
	var backends []string
	for b := range trees {
		backends = append(backends, b)
	}
	sort.Strings(backends)
	for _, b := range backends[1:] {
		drivertest.RequireEqual(t, trees[backends[0]][0], trees[b][0], "top: %s vs %s", backends[0], b)
		drivertest.RequireEqual(t, trees[backends[0]][1], trees[b][1], "ctr: %s vs %s", backends[0], b)
	}
}

// TestImportAufsRefuses: an inconsistent or busy aufs store is refused
// with the layer named, and nothing is imported from a store whose layer
// list is bad.
func TestImportAufsRefuses(t *testing.T) {
	cases := map[string]struct {
		breakIt func(t *testing.T, dir string)
		want    string
	}{
		"no diff dir": {func(t *testing.T, dir string) { require.NoError(t, os.RemoveAll(dir+"/diff/mid")) }, "layer mid: diff/mid"},
		"missing parent": {func(t *testing.T, dir string) {
			testutil.WriteFileMode(t, filepath.Join(dir, "layers/orphan"), "gone\n", 0o644)
			testutil.WriteFileMode(t, filepath.Join(dir, "diff/orphan/f"), "", 0o644)
		}, "layer orphan: parent gone is not in layers/"},
		"wrong ancestry": {func(t *testing.T, dir string) {
			testutil.WriteFileMode(t, filepath.Join(dir, "layers/top"), "mid\n", 0o644)
		}, "layers/ctr-init lists ancestors [top mid base], but its parent top has [mid]"},
		"bad id": {func(t *testing.T, dir string) {
			testutil.WriteFileMode(t, filepath.Join(dir, "layers/bad:id"), "", 0o644)
		}, "layers/bad:id"},
		"not an aufs root": {func(t *testing.T, dir string) { require.NoError(t, os.RemoveAll(dir+"/layers")) }, "not a Docker aufs store"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src := fakeAufsStore(t)
			c.breakIt(t, src)
			s, err := drivers.New(drivers.Options{Root: t.TempDir(), Backend: "vfs"})
			require.NoError(t, err)
			defer s.Cleanup()
			ids, err := s.ImportAufs(src)
			require.ErrorContains(t, err, c.want)
			require.Empty(t, ids)
			layers, err := s.List()
			require.NoError(t, err)
			require.Empty(t, layers)
		})
	}
	t.Run("mounted", func(t *testing.T) {
		testutil.SkipUnlessRoot(t, "a bind mount")
		src := fakeAufsStore(t)
		require.NoError(t, unix.Mount(src+"/diff/ctr", src+"/mnt/ctr", "", unix.MS_BIND, ""))
		defer unix.Unmount(src+"/mnt/ctr", unix.MNT_DETACH)
		s, err := drivers.New(drivers.Options{Root: t.TempDir(), Backend: "vfs"})
		require.NoError(t, err)
		defer s.Cleanup()
		ids, err := s.ImportAufs(src)
		require.ErrorContains(t, err, "layer ctr is mounted")
		require.Equal(t, []string{"base", "mid", "top", "ctr-init"}, ids, "the layers below it are imported")
	})
}
