// Package cow will own copy-up: copying an object from a lower branch to the
// upper one before it is changed, atomically through the workdir (a temp
// copy, fsync unless the mount is volatile, then rename(2) into place), data
// by FICLONE, else copy_file_range, else a buffered loop, holes kept.
//
// The union is read-only in this version, so nothing is copied up yet; the
// package exists so that the layout (branches, whiteout, cow, unionfs) is the
// one the write path fills in. See docs/ARCHITECTURE.md.
package cow
