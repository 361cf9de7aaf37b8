// Package cow owns copy-up: making a private copy, in the upper branch, of
// an object that lives in a lower branch, before anything changes it.
//
// The protocol (docs/UNION-SEMANTICS.md, "Copy-up"; kernel overlayfs
// copy_up.c):
//
//  1. build the copy under a temp name in the workdir, which is on the
//     upper's filesystem: data first, then owner, mode, xattrs (all but the
//     union's own) and last the timestamps;
//  2. fsync it, unless the mount is volatile;
//  3. rename(2) it into place in the upper (RENAME_NOREPLACE: a copy-up
//     never replaces anything), then fsync the upper directory.
//
// A crash at any instant leaves either no copy (the lower original still
// shows) or a complete one; a half-built copy can only exist under the
// workdir, which OpenWorkdir empties at mount. Data goes by FICLONE
// (reflink) when the filesystem allows, else copy_file_range, else a
// read/write loop; holes stay holes in the last two.
//
// cow copies one object at a time. Which objects to copy, in which order
// (parents first) and into which branch is the union's decision, made in
// package branches.
package cow
