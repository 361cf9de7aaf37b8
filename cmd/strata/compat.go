package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/strata-fs/strata/branches"
)

// The fuse-overlayfs-compatible invocation, so that strata can be
// containers/storage's overlay.mount_program and a mount.fuse3 helper:
//
//	strata [-f] [-d] -o OPTIONS MOUNTPOINT          (fuse-overlayfs, podman, buildah)
//	strata SOURCE MOUNTPOINT -o OPTIONS             (mount.fuse3: fstab, mount -t fuse.strata)
//
// It takes the same options as "strata mount" (which stays the documented
// interface), returns once the mount is live with the daemon in the
// background, and on failure prints one line and leaves nothing mounted.

// isMountProgramCall reports whether args (without the program name) are
// the fuse-overlayfs or mount.fuse3 form rather than a strata command.
func isMountProgramCall(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-o") {
			return true
		}
	}
	return false
}

// cmdMountProgram mounts as fuse-overlayfs or a mount.fuse3 helper does.
func cmdMountProgram(args []string) error {
	f, mountpoint, err := parseMountProgramArgs(args)
	if err != nil {
		return err
	}
	return mountUnion(f, mountpoint)
}

// parseMountProgramArgs reads the fuse-overlayfs / mount.fuse3 command
// line into the flags of "strata mount" and the mountpoint.
func parseMountProgramArgs(args []string) (mountFlags, string, error) {
	f := mountFlags{whiteout: "overlay"}
	if os.Getenv("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT") != "" {
		// fuse-overlayfs's switch to .wh. whiteouts, honoured likewise.
		f.whiteout = "aufs"
	}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t":
			if i+1 == len(args) {
				return f, "", usageError("%s needs a value", a)
			}
			i++
			if a == "-o" {
				f.options = append(f.options, args[i])
			}
			// -t fuse.strata comes from mount(8) helpers: the type is us.
		case strings.HasPrefix(a, "-o"):
			f.options = append(f.options, a[2:])
		case a == "-f":
			f.foreground = true
		case a == "-d" || a == "--debug":
			f.debug = true
		case a == "-n" || a == "-s" || a == "-v":
			// mount(8) helper flags: no mtab, sloppy, verbose.
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			return f, "", usageError("unknown flag %q (the fuse-overlayfs form takes -o OPTIONS, -f and -d; see 'strata --help')", a)
		default:
			positional = append(positional, a)
		}
	}
	switch len(positional) {
	case 1: // fuse-overlayfs: MOUNTPOINT
	case 2: // mount.fuse3: SOURCE MOUNTPOINT; the source is only a label
		positional = positional[1:]
	default:
		return f, "", usageError("expected -o OPTIONS MOUNTPOINT or SOURCE MOUNTPOINT -o OPTIONS, got %d arguments besides the options: %q", len(positional), positional)
	}
	return f, positional[0], nil
}

// applyCompat carries out the compatibility options that belong to the
// command rather than to the union: debug, the SELinux context, and the
// one warning naming every option accepted with no effect.
func applyCompat(opts *branches.Options, f *mountFlags) {
	c := &opts.Compat
	if c.Debug {
		f.debug = true
	}
	if c.Context != "" {
		if selinuxEnabled() {
			// The kernel's LSM takes context= on any mount, FUSE included.
			opts.Mount = append(opts.Mount, fmt.Sprintf("context=%q", c.Context))
		} else {
			c.Ignored = append(c.Ignored, fmt.Sprintf("context=%q (SELinux is not enabled on this host)", c.Context))
		}
	}
	if len(c.Ignored) > 0 && os.Getenv(readyFDEnv) == "" {
		fmt.Fprintf(os.Stderr, "strata: warning: options with no effect here: %s\n", strings.Join(c.Ignored, "; "))
	}
}

func selinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}
