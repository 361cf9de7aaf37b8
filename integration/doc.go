// Package integration tests the strata binary end to end, through real
// mounts: it builds cmd/strata once (TestMain), mounts unions of layer
// directories made by a declarative fixture builder, walks the mounted
// trees and compares them with what kernel overlayfs shows for the same
// layers (docs/UNION-SEMANTICS.md, "Kernel overlay decides").
//
// The tests need root, /dev/fuse and, for the oracle, the overlay
// filesystem. Without them they skip with a one-line reason, except when
// CI=true, where they fail instead: CI must run them.
//
// Every directory lives under t.TempDir(), and every mount is unmounted in
// t.Cleanup (strata umount, then a lazy unmount as a fallback), which waits
// until /proc/self/mountinfo no longer shows it. A test never leaves a mount
// or a daemon behind, even when it fails.
//
//	go test -count=1 -race ./integration/
package integration
