package drivers_test

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/drivers"
	"github.com/strata-fs/strata/drivers/drivertest"
)

// crossBackends are the backends the cross-backend tests compare.
var crossBackends = []string{"fuse", "overlay", "vfs"}

// openStores opens a fresh store per backend, cleaned up after the test.
func openStores(t *testing.T) map[string]drivers.Driver {
	t.Helper()
	stores := map[string]drivers.Driver{}
	for _, backend := range crossBackends {
		root := t.TempDir()
		d := openBackend(backend)(t, root)
		t.Cleanup(func() {
			require.NoError(t, d.Cleanup())
			drivertest.RequireNoMounts(t, root)
		})
		stores[backend] = d
	}
	return stores
}

// TestCrossBackend applies the same OCI layer tars under fuse, overlay and
// vfs, and checks:
//   - every layer of the chain shows the same merged tree under each;
//   - Diff of each layer is equivalent under each: the same members, in
//     the same order, with the same name, type, mode, owner, size, link,
//     xattrs, content and file mtimes. Two things may differ: directory
//     mtimes (a parent directory a tar does not list is made when it is
//     applied, at that time), and how deletions are said (a layered
//     backend has the opaque marker its layer was applied with; vfs
//     compares two trees and names each deleted entry);
//   - and that each backend's Diff, applied under every backend on the
//     same parent, gives back the same tree.
func TestCrossBackend(t *testing.T) {
	stores := openStores(t)
	layers := drivertest.ImageLayers(t)
	ids := []string{"base", "middle", "top"}
	for _, backend := range crossBackends {
		parent := ""
		for i, tarball := range layers {
			apply(t, stores[backend], ids[i], parent, tarball)
			parent = ids[i]
		}
	}
	for i, id := range ids {
		parent := ""
		if i > 0 {
			parent = ids[i-1]
		}
		trees := map[string]drivertest.Tree{}
		diffs := map[string][]byte{}
		for _, backend := range crossBackends {
			trees[backend] = snapshotLayer(t, stores[backend], id)
			diffs[backend] = readDiff(t, stores[backend], id)
		}
		for _, backend := range crossBackends[1:] {
			drivertest.RequireEqual(t, trees["fuse"], trees[backend], "layer %s: fuse vs %s", id, backend)
			require.Equal(t, contentMembers(t, diffs["fuse"]), contentMembers(t, diffs[backend]), "layer %s: Diff under fuse vs %s", id, backend)
		}
		for from, diff := range diffs {
			for _, to := range crossBackends {
				copyID := id + "-from-" + from
				apply(t, stores[to], copyID, parent, diff)
				drivertest.RequireEqual(t, trees[to], snapshotLayer(t, stores[to], copyID), "layer %s: %s's Diff applied under %s", id, from, to)
			}
		}
		t.Logf("layer %s: %d objects, a %d-member diff; equal under %s, and each Diff applies to the same tree under each", id, len(trees["fuse"]), len(drivertest.TarListing(t, diffs["fuse"])), strings.Join(crossBackends, ", "))
	}
}

func apply(t *testing.T, d drivers.Driver, id, parent string, tarball []byte) {
	t.Helper()
	require.NoError(t, d.Create(id, parent, nil), "%s: Create %s", d, id)
	_, err := d.ApplyDiff(id, parent, bytes.NewReader(tarball))
	require.NoError(t, err, "%s: ApplyDiff %s", d, id)
}

func snapshotLayer(t *testing.T, d drivers.Driver, id string) drivertest.Tree {
	t.Helper()
	dir, err := d.Get(id, "")
	require.NoError(t, err, "%s: Get %s", d, id)
	defer func() { require.NoError(t, d.Put(id)) }()
	return drivertest.Snapshot(t, dir)
}

func readDiff(t *testing.T, d drivers.Driver, id string) []byte {
	t.Helper()
	rc, err := d.Diff(id, "")
	require.NoError(t, err, "Diff %s", id)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err, "Diff %s", id)
	return b
}

// contentMembers lists a layer tar's members (drivertest.TarListing)
// without deletion markers, and without directory mtimes.
func contentMembers(t *testing.T, tarball []byte) []string {
	var out []string
	for _, l := range drivertest.TarListing(t, tarball) {
		name := strings.Fields(l)[0]
		if strings.HasPrefix(name[strings.LastIndex(name, "/")+1:], ".wh.") {
			continue
		}
		if f := strings.Fields(l); f[1] == "5" {
			l = dirTime.ReplaceAllString(l, "")
		}
		out = append(out, l)
	}
	return out
}

var dirTime = regexp.MustCompile(` mtime=[0-9-]+`)
