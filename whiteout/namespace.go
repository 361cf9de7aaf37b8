package whiteout

import (
	"os"

	"github.com/strata-fs/strata/internal/sys"
)

// WritableNamespace is the xattr namespace this process writes the union's
// own xattrs in (overlay.opaque, overlay.redirect, overlay.whiteout,
// strata.*): "trusted." when it may, "user." otherwise. strata reads both.
func WritableNamespace() string {
	return writableNamespace(os.Geteuid(), sys.InInitialUserNamespace())
}

// writableNamespace is the rule: trusted.* needs CAP_SYS_ADMIN in the
// initial user namespace, which strata takes as euid 0 there. Root inside
// a user namespace (rootless podman runs its mount program there, a
// container engine may run in a container) is refused trusted.* with
// EPERM, so it uses user., as an unprivileged user does and as kernel
// overlay does with -o userxattr.
func writableNamespace(euid int, initialUserNS bool) string {
	if euid == 0 && initialUserNS {
		return "trusted."
	}
	return "user."
}
