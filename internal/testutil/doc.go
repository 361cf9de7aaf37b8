// Package testutil holds the helpers the test packages share: skipping
// (or, under CI=true, failing) a test the host cannot run, making files,
// directories, xattrs and whiteouts, and walking a tree into a snapshot
// to compare. It is a normal package because one package's _test.go files
// cannot be imported by another's; only tests import it.
//
// It imports nothing of strata's, so that any package's tests, internal
// ones included, may use it without an import cycle.
package testutil
