// Package sys holds the Linux system-call glue that the union packages share:
// opening paths beneath a branch root without following symlinks, reading and
// writing extended attributes of a name relative to a directory descriptor,
// and listing raw directory entries.
//
// Keeping these here means every place that touches a branch goes through the
// same audited calls (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and
// the packages above stay free of syscall details.
package sys
