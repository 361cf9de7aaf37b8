package drivers

import (
	"github.com/strata-fs/strata/whiteout"
)

// backend is what differs between fuse, overlay, devicemapper and vfs. The
// Store does everything else (ids, records, locks, reference counts, the
// diff side) the same way for all of them.
type backend interface {
	name() string
	// kind says how a layer's content is kept.
	kind() contentKind
	// markers is the whiteout dialect ApplyDiff writes (layered kinds).
	markers() whiteout.Format
	// create fills in a new layer's storage. The store has made diff/<id>
	// (empty), mnt/<id>, work/<id> for a writable layer, and l/<link>.
	create(l, parent *layer) error
	// remove releases what create made beyond those directories.
	remove(l *layer) error
	// mount makes the merged view of l and its ancestors (chain, nearest
	// first) and returns the directory that shows it.
	mount(l *layer, chain []*layer) (string, error)
	// unmount undoes mount.
	unmount(l *layer) error
	// mountDir is where a mounted layer's tree is (what mount returned).
	mountDir(l *layer) string
	// tracksMounts says whether a mount shows in /proc/self/mountinfo at
	// mnt/<id>, so a stale reference count can be detected.
	tracksMounts() bool
	// dead reports whether l's mount is there but cannot serve any more
	// (a FUSE daemon that was killed leaves its mount behind).
	dead(l *layer) bool
	// contentDir gives the directory ApplyDiff unpacks into, and a release
	// to call afterwards (devicemapper mounts the device for it).
	contentDir(l *layer) (dir string, release func() error, err error)
	// status adds backend rows to Status.
	status() [][2]string
	// close releases what the backend holds (a device-mapper pool).
	close() error
}

// contentKind is how a backend keeps layers.
type contentKind int

const (
	// layered: diff/<id> holds only the layer's own changes, with
	// whiteout markers; a union of the chain shows the tree.
	layered contentKind = iota
	// fullTree: each layer is a complete tree (a copy or a snapshot of
	// its parent plus its changes); diffs compare two trees.
	fullTree
)

// backendNames is the order --backend auto probes in.
var backendNames = []string{"overlay", "fuse", "devicemapper", "vfs"}

// openBackend probes and opens the named backend for the store s (whose
// path and options are set; the backend subtree may not exist yet). An
// error wrapping ErrNotSupported means this host cannot run it.
func openBackend(name string, s *Store) (backend, error) {
	switch name {
	case "overlay":
		return openOverlay(s)
	case "fuse":
		return openFuse(s)
	case "devicemapper":
		return openDeviceMapper(s)
	case "vfs":
		return openVFS(s)
	}
	return nil, errUnknownBackend(name)
}
