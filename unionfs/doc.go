// Package unionfs is the go-fuse node layer of strata. It is thin: every
// FUSE call is translated into a call on package branches (resolution,
// merged listings, attributes, the write path) and the answer is mapped to
// an errno in one place (toErrno). No union rule lives here; if a FUSE
// method needs to decide which branch serves a name, the decision belongs
// in branches.
//
// It serves reads and writes (api_check.go lists every operation):
// lookups, attributes and merged listings (d_ino equal to st_ino);
// create, mkdir, mknod, symlink, link, unlink, rmdir and rename, each
// copying up through branches where the rules ask for it; xattrs with the
// union's own hidden, and POSIX ACLs, which the kernel enforces (mount.go
// takes FUSE's ACL support; rawfs.go carries the caller's umask to
// creation). Open files (file.go) are passed through to the kernel where
// the copy allows it; one reading a lower copy follows the object to its
// upper copy after a copy-up. idmap.go maps owners for uidmapping=,
// gidmapping= and squash_to_*. A stack without a writable branch is
// mounted read-only.
//
// The mount's control channel (how `strata explain` and `strata trace`
// reach a running daemon) is not node code: it is package control.
package unionfs
