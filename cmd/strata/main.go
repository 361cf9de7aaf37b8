// Command strata mounts and explains union filesystems. See `strata --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `strata - a userspace union filesystem (read-only and read-write branches merged into one tree)

Usage:
  strata mount [flags] -o OPTIONS MOUNTPOINT   mount a union (returns once it is ready)
  strata umount [-l] MOUNTPOINT                unmount it
  strata demo [--explain]                      build a 3-layer example, mount it, show the union at work
  strata explain [--json] PATH                 why PATH in a mounted union looks as it does
  strata explain [--json] -o OPTIONS PATH      the same for unmounted branches (PATH from the union root)
  strata trace on MOUNTPOINT FILE              write a running mount's decision trace to FILE
  strata trace off MOUNTPOINT                  stop it
  strata inspect [--json] DIR | -o OPTIONS     list a branch's markers and flag inconsistencies
  strata convert --to overlay|aufs DIR         rewrite an unmounted branch's markers in the other format
  strata graph --root DIR SUBCOMMAND ...       a container layer store (create, mount, apply, diff, ...)
  strata version                               print the version

  strata [-f] [-d] -o OPTIONS MOUNTPOINT       the same mount, called as fuse-overlayfs is (podman's mount_program)
  strata SOURCE MOUNTPOINT -o OPTIONS          the same, called as mount.fuse3 calls it (fstab, mount -t fuse.strata)

Mount options (-o, comma-separated, repeatable), in either syntax:
  overlay:  lowerdir=L1:L2:...[,upperdir=U,workdir=W]   L1 is the top lower; no upperdir = read-only
            a colon inside a path is written \:
  aufs:     br=DIR[=rw|ro|rr]:DIR[=...]...              top first; the first defaults to rw, the rest to ro
  also:     ro, volatile, allow_other, default_permissions, suid, nosuid, dev, nodev, exec, noexec
  and fuse-overlayfs's: uidmapping=C:H:L[:...], gidmapping=, squash_to_uid=, squash_to_gid=,
            squash_to_root, static_nlink, timeout=, fsync=0, context=, redirect_dir=, ... (docs/CONTAINERS.md)

Examples:
  strata mount -o lowerdir=/layers/app:/layers/base /mnt/merged
  strata mount -o lowerdir=/l1:/l2,upperdir=/u,workdir=/w /mnt/merged
  strata mount -o br=/u=rw:/l1=ro:/l2=rr /mnt/merged
  strata mount -o 'lowerdir=/data/a\:b:/data/base' /mnt/merged
  strata umount /mnt/merged

Run 'strata COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "mount":
		err = cmdMount(args[1:])
	case "umount", "unmount":
		err = cmdUmount(args[1:])
	case "demo":
		err = cmdDemo(args[1:])
	case "explain":
		err = cmdExplain(args[1:])
	case "trace":
		err = cmdTrace(args[1:])
	case "inspect":
		err = cmdInspect(args[1:])
	case "convert":
		err = cmdConvert(args[1:])
	case "graph":
		err = cmdGraph(args[1:])
	case "version", "--version":
		fmt.Println(versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		if !isMountProgramCall(args) {
			fmt.Fprintf(os.Stderr, "strata: unknown command %q\n\n%s", args[0], usage)
			return 2
		}
		err = cmdMountProgram(args)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "strata: %v\n", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "strata: %v\n", err)
	return 1
}

var errUsage = errors.New("usage")

func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func versionString() string {
	s := "strata " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " (" + bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "github.com/hanwen/go-fuse/v2" {
				s += ", go-fuse " + d.Version
			}
		}
		s += ")"
	}
	return s
}
