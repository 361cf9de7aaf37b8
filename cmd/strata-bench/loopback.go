package main

import (
	"fmt"
	"os"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-fs/strata/unionfs"
)

// The gofuse-loopback system is go-fuse's own loopback filesystem, with
// the mount options strata uses, serving a kernel overlay mount of the
// same layers: no union logic in userspace at all. Its distance from
// kernel overlay is what any go-fuse filesystem pays on this machine (the
// request round trips through the Go runtime), so strata's distance from
// it is what strata's own work costs.
//
// The harness runs it as itself: strata-bench -serve-loopback SRC MNT.

// serveLoopback mounts src at mnt through go-fuse's loopback and serves
// until unmounted.
func serveLoopback(src, mnt string) error {
	root, err := fs.NewLoopbackRoot(src)
	if err != nil {
		return err
	}
	timeout := unionfs.DefaultCacheTimeout
	server, err := fs.Mount(mnt, root, &fs.Options{
		EntryTimeout: &timeout, AttrTimeout: &timeout, NegativeTimeout: &timeout,
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName: "gofuse-loopback", Name: "gofuse-loopback",
			MaxWrite: 1 << 20, EnableLocks: true,
			AllowOther: true, DirectMount: true,
			Options: []string{"default_permissions"},
		},
	})
	if err != nil {
		return err
	}
	server.Wait()
	return nil
}

// loopbackSource is where the loopback of mount sp serves from: a kernel
// overlay of sp's layers beside its mount point.
func loopbackSource(sp mountSpec) string { return sp.mnt + ".overlay" }

// mountUnderLoopback mounts the kernel overlay the loopback serves.
func mountUnderLoopback(sp mountSpec) (*mounted, error) {
	under := sp
	under.mnt = loopbackSource(sp)
	if err := os.MkdirAll(under.mnt, 0o755); err != nil {
		return nil, err
	}
	if sp.upper == "" && len(sp.lowers) == 1 {
		// overlay refuses a single lowerdir without an upper.
		under.upper, under.work = under.mnt+".upper", under.mnt+".work"
		for _, d := range []string{under.upper, under.work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
	}
	return mountKernel(system{name: "kernel"}, under)
}

// runServeLoopback is main for -serve-loopback.
func runServeLoopback(args []string) {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "strata-bench: -serve-loopback SRC MNT")
		os.Exit(2)
	}
	if err := serveLoopback(args[0], args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "strata-bench: loopback:", err)
		os.Exit(1)
	}
}
