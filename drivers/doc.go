// Package drivers owns the graphdriver adapter: Docker-style layers with
// parents kept in an on-disk layer store, mounted through one of four
// backends, and converted to and from OCI layer tars.
//
// Terms:
//   - A layer has an id, a parent (or none: a base layer) and its own
//     content. Create makes a read-only layer (an image layer, filled by
//     ApplyDiff); CreateReadWrite makes a writable one (a container layer,
//     or Docker's "<id>-init" layer between image and container).
//   - The chain of a layer is its ancestors, nearest first. Get mounts the
//     layer with its chain and returns the directory showing the merged
//     tree; Put undoes one Get. Mounts are reference counted on disk, so
//     a "strata graph mount" in one process and "strata graph umount" in
//     another balance.
//   - A backend is how layers are stored and mounted: fuse (strata's own
//     union, the default), overlay (kernel overlayfs), devicemapper (thin
//     snapshots) or vfs (a full copy per layer). Layered backends keep each
//     layer's own changes with whiteout markers; full-tree backends keep a
//     complete tree per layer.
//
// The store, under its root:
//
//	backend               which backend the store belongs to (JSON), and how it was chosen
//	lock                  the store-wide lock file
//	<backend>/diff/<id>   the layer's own files (vfs: a full copy)
//	<backend>/layers/<id> its ancestors, nearest first (aufs format); registers the layer
//	<backend>/meta/<id>   the rest of its record (JSON)
//	<backend>/mnt/<id>    where Get mounts it
//	<backend>/work/<id>   the workdir of a writable layer (fuse, overlay)
//	<backend>/l/<short>   a short symlink to ../diff/<id>, to keep mount options small
//	<backend>/refs/<id>   outstanding Gets, with the boot id they were counted in
//	<backend>/locks/<id>  the layer's lock file
//
// A lifecycle:
//
//	s, err := drivers.New(drivers.Options{Root: "/var/lib/strata", Backend: "auto", StrataBinary: exe})
//	err = s.Create("img", "", nil)
//	size, err := s.ApplyDiff("img", "", layerTar)
//	err = s.CreateReadWrite("ctr-init", "img", nil)
//	err = s.CreateReadWrite("ctr", "ctr-init", nil)
//	dir, err := s.Get("ctr", "")   // the container's root filesystem
//	...
//	err = s.Put("ctr")
//	tarStream, err := s.Diff("ctr", "")  // what the container changed, as an OCI layer
//
// docs/GRAPHDRIVER.md has the design: the on-disk format, crash safety,
// reference counting across processes, each backend, auto-selection.
// Package drivers/archive does the tar conversion; drivers/drivertest is
// the conformance suite every backend passes.
package drivers
