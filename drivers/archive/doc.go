// Package archive owns the conversion between OCI image-spec layer tars and
// layer directories: Apply unpacks a layer tar into a layer's own directory
// (atomically, refusing hostile entries), Diff and DiffTrees write a layer
// tar of one layer directory or of the difference between two full trees,
// Changes and ChangesTrees list what a layer adds, changes and deletes the
// way `docker diff` does, and Size is a layer's DiffSize.
//
// Terms. A layer tar is the OCI changeset format
// (https://github.com/opencontainers/image-spec/blob/main/layer.md): a
// deletion of "name" is an empty entry ".wh.name", an opaque directory (one
// that hides everything below it) holds an entry ".wh..wh..opq". A layer
// directory is one layer's own files as a union branch: its deletions are
// markers in any dialect package whiteout reads (overlay char 0/0, overlay
// xattr whiteouts, aufs ".wh." files; overlay.opaque xattrs or
// ".wh..wh..opq" for opaque directories). A full tree (vfs backend) has no
// markers: it is the whole filesystem of a layer.
//
// A lifecycle, as the graphdriver uses it:
//
//	size, err := archive.Apply(diffDir, tarStream, archive.ApplyOptions{Format: whiteout.Overlay})
//	changes, err := archive.Changes(diffDir, parentStack.FS())
//	err = archive.Diff(w, diffDir, archive.DiffOptions{Parent: parentStack.FS()})
//
// Apply builds the new content in a staging directory beside the layer
// directory and swaps it in with one renameat2(RENAME_EXCHANGE); see
// docs/LAYER-TARS.md for the atomicity argument, the whiteout translation
// table and the policy on hostile entries. Every path taken from a tar is
// resolved with openat2 beneath the staging root, never through a symlink.
//
// This package knows nothing of the layer store or of mounting: which
// directory is a layer, and which parent view to compare it with, is the
// caller's (package drivers).
package archive
