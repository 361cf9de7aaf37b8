// Package drivers will hold the graphdriver adapter: Docker-style layers
// with parents (Create, Remove, Get, Put, Exists, Status, Cleanup, and
// Diff, Changes, ApplyDiff, DiffSize over OCI layer tars), an on-disk layer
// store, and backends (strata FUSE, kernel overlay, devicemapper thin, vfs)
// that all pass one conformance suite.
//
// Nothing is implemented yet; see docs/ARCHITECTURE.md for where it fits.
package drivers
