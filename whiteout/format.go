package whiteout

import (
	"fmt"
	"strings"
)

// Format is an on-disk dialect of whiteouts and opaque markers.
type Format int

const (
	// Overlay is the kernel overlayfs dialect: char 0/0 whiteouts and the
	// overlay.opaque xattr.
	Overlay Format = iota
	// Aufs is the aufs and OCI image-layer dialect: ".wh." files.
	Aufs
)

func (f Format) String() string {
	switch f {
	case Overlay:
		return "overlay"
	case Aufs:
		return "aufs"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat reads the value of --whiteout.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "overlay":
		return Overlay, nil
	case "aufs", "oci":
		return Aufs, nil
	}
	return 0, fmt.Errorf("whiteout format %q: want overlay or aufs", s)
}

// Names of the aufs dialect.
const (
	// AufsPrefix starts every aufs marker; the union refuses to create a
	// name that starts with it.
	AufsPrefix = ".wh."
	// AufsMetaPrefix starts aufs's own bookkeeping names (.wh..wh.aufs,
	// .wh..wh.plnk, .wh..wh.orph, the opaque marker): never a whiteout.
	AufsMetaPrefix = ".wh..wh."
	// AufsOpaque marks its directory opaque.
	AufsOpaque = ".wh..wh..opq"
)

// Xattr names of the overlay dialect, without the namespace ("trusted." or
// "user.") in front.
const (
	xattrOpaque   = "overlay.opaque"
	xattrWhiteout = "overlay.whiteout"
	xattrRedirect = "overlay.redirect"
)

// OverlayNamespaces are the namespaces the kernel reads overlay xattrs from:
// trusted by default, user with -o userxattr (unprivileged mounts).
var OverlayNamespaces = []string{"trusted.", "user."}

// IsReserved reports whether name is reserved for markers and may not be
// created through the union (creating it fails with EINVAL).
func IsReserved(name string) bool { return strings.HasPrefix(name, AufsPrefix) }

// AufsName is the aufs whiteout file name for name.
func AufsName(name string) string { return AufsPrefix + name }

// AufsTarget returns the name an aufs whiteout entry hides, and false when
// entry is not an aufs whiteout (bookkeeping names included).
func AufsTarget(entry string) (string, bool) {
	if !strings.HasPrefix(entry, AufsPrefix) || strings.HasPrefix(entry, AufsMetaPrefix) {
		return "", false
	}
	name := entry[len(AufsPrefix):]
	if name == "" || name == "." || name == ".." {
		return "", false
	}
	return name, true
}

// IsUnionXattr reports whether the xattr name belongs to the union's own
// bookkeeping and must be hidden from users of the mount.
func IsUnionXattr(attr string) bool {
	for _, ns := range OverlayNamespaces {
		if strings.HasPrefix(attr, ns+"overlay.") {
			return true
		}
	}
	return strings.HasPrefix(attr, "user.fuseoverlayfs.") || strings.HasPrefix(attr, "user.strata.") ||
		strings.HasPrefix(attr, "trusted.strata.")
}
