// Package whiteout owns the on-disk markers of a union: whiteouts (a name
// deleted in a higher branch, hiding the same name below) and opaque
// directories (a directory that hides everything below it).
//
// Two dialects exist on disk and a stack may mix them, so this package reads
// every form in every branch and writes the one the mount chooses:
//
//	format            whiteout for "name"                       opaque directory
//	overlay           char device 0/0 named "name"              xattr trusted.overlay.opaque=y
//	                                                            (user.overlay.opaque=y unprivileged)
//	overlay, xattr    empty regular file "name" with xattr      (parent has overlay.opaque=x,
//	form (6.7+)       *.overlay.whiteout                        which means "look for those")
//	aufs / OCI        empty file ".wh.name"                     file ".wh..wh..opq" in the directory
//
// Reading works on a directory descriptor of one branch (see Scan, DirMarkers
// and Classify); writing goes through a Writer. The package knows nothing of
// branch stacks: which branch a marker hides is the caller's rule (package
// branches), and so is the choice of format.
//
// A marker in the aufs dialect applies to the branches below its own: a
// branch that holds both ".wh.name" and "name" shows "name" and hides the
// lower ones (the OCI layer rule "deleted, then created again").
//
// Inspect lists one branch's markers and flags what is inconsistent in it;
// Convert rewrites a branch's markers from one dialect to the other.
package whiteout
