// Package unionfs is the go-fuse node layer of strata. It is thin: every
// FUSE call is translated into a call on package branches (resolution,
// merged listings, attributes) and the answer is mapped to an errno in one
// place (toErrno). No union rule lives here; if a FUSE method needs to
// decide which branch serves a name, the decision belongs in branches.
//
// This version serves the read-only operations: Lookup, Getattr, Readdir
// (d_ino equal to st_ino), Readlink, Open/Read, Statfs, Access,
// Getxattr/Listxattr. The mount is read-only; writes fail with EROFS.
//
// The mount's control channel (how `strata explain` and `strata trace`
// reach a running daemon) is not node code: it is package control.
package unionfs
