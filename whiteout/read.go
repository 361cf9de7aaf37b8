package whiteout

import (
	"errors"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// Kind says what hides a name, for the callers that explain a union.
type Kind uint8

const (
	// NoMarker: nothing hides the name.
	NoMarker Kind = iota
	// OverlayChar: a char device 0/0 with the name (kernel overlay).
	OverlayChar
	// OverlayXattr: an empty file with overlay.whiteout, in a directory
	// marked overlay.opaque=x (kernel overlay 6.7+).
	OverlayXattr
	// AufsFile: a ".wh.name" file (aufs, OCI layers).
	AufsFile
	// OpaqueOverlay: an overlay.opaque=y xattr on a parent directory.
	OpaqueOverlay
	// OpaqueAufs: a ".wh..wh..opq" file in a parent directory.
	OpaqueAufs
)

func (k Kind) String() string {
	switch k {
	case NoMarker:
		return "none"
	case OverlayChar:
		return "overlay whiteout (char 0/0)"
	case OverlayXattr:
		return "overlay whiteout (xattr)"
	case AufsFile:
		return "aufs whiteout (.wh. file)"
	case OpaqueOverlay:
		return "opaque dir (overlay.opaque xattr)"
	case OpaqueAufs:
		return "opaque dir (.wh..wh..opq)"
	}
	return "unknown marker"
}

// IsWhiteout reports whether k marks a deleted name (not an opaque dir).
func (k Kind) IsWhiteout() bool { return k == OverlayChar || k == OverlayXattr || k == AufsFile }

// IsCharWhiteout reports whether st is an overlay whiteout: a character
// device with device number 0/0.
func IsCharWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// DirMarkers is what one branch's copy of a directory says about the
// branches below it.
type DirMarkers struct {
	// Opaque is OpaqueOverlay or OpaqueAufs when the directory hides all of
	// its lower copies, NoMarker otherwise.
	Opaque Kind
	// XattrWhiteouts is set by overlay.opaque=x: empty files in the
	// directory may be xattr whiteouts and must be checked.
	XattrWhiteouts bool
	// Redirect is the overlay.redirect of a renamed directory: where its
	// lower copies are, as a path relative to the branch roots (already
	// made absolute and checked by ParseRedirect). Empty when none.
	Redirect string
}

// ReadDirMarkers reads the markers of the directory dirFD (any descriptor
// of it, O_PATH included): opacity in every dialect and an overlay
// redirect. rel is the directory's path in its branch, against which a
// relative redirect is read. A filesystem without xattrs reads as "no xattr
// markers"; other errors are returned.
func ReadDirMarkers(dirFD int, rel string) (DirMarkers, error) {
	var m DirMarkers
	names, err := sys.Listxattr(dirFD, "")
	if err != nil && !sys.IsNoAttr(err) && !errors.Is(err, unix.EPERM) {
		return m, err
	}
	for _, attr := range names {
		key, ok := overlayKey(attr)
		if !ok {
			continue
		}
		v, err := sys.Getxattr(dirFD, "", attr)
		if err != nil {
			continue // gone, or a namespace we may not read
		}
		switch key {
		case xattrOpaque:
			switch string(v) {
			case "y":
				m.Opaque = OpaqueOverlay
			case "x":
				m.XattrWhiteouts = true
			}
		case xattrRedirect:
			if target, ok := ParseRedirect(rel, string(v)); ok {
				m.Redirect = target
			}
		}
	}
	if m.Opaque != NoMarker {
		return m, nil
	}
	var st unix.Stat_t
	err = sys.Lstatat(dirFD, AufsOpaque, &st)
	switch {
	case err == nil:
		m.Opaque = OpaqueAufs
	case !errors.Is(err, unix.ENOENT):
		return m, err
	}
	return m, nil
}

// overlayKey strips the namespace of an overlay xattr
// ("trusted.overlay.opaque" -> "overlay.opaque").
func overlayKey(attr string) (string, bool) {
	for _, ns := range OverlayNamespaces {
		if strings.HasPrefix(attr, ns+"overlay.") {
			return attr[len(ns):], true
		}
	}
	return "", false
}

// ParseRedirect reads an overlay.redirect value found on the directory at
// rel (a path in its branch). The kernel writes an absolute path ("/a/b",
// from the layer root) or, for a rename within one parent, a bare name.
// The value comes from a branch and is not trusted: anything but a clean
// path without ".." is refused (ok false).
func ParseRedirect(rel, value string) (string, bool) {
	var p string
	if strings.HasPrefix(value, "/") {
		p = strings.TrimPrefix(value, "/")
	} else {
		if value == "" || strings.Contains(value, "/") {
			return "", false
		}
		p = path.Join(path.Dir(rel), value)
	}
	if p == "" || p != path.Clean(p) || p == "." {
		return "", false
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." || c == "." {
			return "", false
		}
	}
	return p, true
}

// IsXattrWhiteout reports whether name (already stat'ed into st) in dirFD is
// an xattr-form overlay whiteout. Only call it for directories whose markers
// have XattrWhiteouts set: the kernel checks nowhere else, and neither do we.
func IsXattrWhiteout(dirFD int, name string, st *unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		return false
	}
	for _, ns := range OverlayNamespaces {
		if _, err := sys.Getxattr(dirFD, name, ns+xattrWhiteout); err == nil {
			return true
		}
	}
	return false
}

// Lookup says whether name in the directory dirFD of one branch is present,
// and whether that branch hides name in the branches below.
type Lookup struct {
	// Present: the branch holds a real object called name (described by St).
	Present bool
	St      unix.Stat_t
	// Hides is the marker that hides name in lower branches: a whiteout
	// (when Present is false), or an aufs whiteout beside a real object
	// (deleted, then created again in the same layer).
	Hides Kind
}

// LookupName looks name up in one branch's directory dirFD, honouring every
// whiteout dialect. markers are the directory's own markers (from
// ReadDirMarkers). A missing name is not an error.
func LookupName(dirFD int, name string, markers DirMarkers) (Lookup, error) {
	var l Lookup
	err := sys.Lstatat(dirFD, name, &l.St)
	switch {
	case err == nil:
		switch {
		case IsCharWhiteout(&l.St):
			return Lookup{Hides: OverlayChar}, nil
		case markers.XattrWhiteouts && IsXattrWhiteout(dirFD, name, &l.St):
			return Lookup{Hides: OverlayXattr}, nil
		}
		l.Present = true
	case errors.Is(err, unix.ENOENT):
	default:
		return l, err
	}
	var wh unix.Stat_t
	err = sys.Lstatat(dirFD, AufsName(name), &wh)
	switch {
	case err == nil:
		l.Hides = AufsFile
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENAMETOOLONG):
		// A name too long to carry the prefix cannot have an aufs whiteout.
	default:
		return l, err
	}
	return l, nil
}

// Classify sorts the raw entries of one branch's directory into what the
// union shows (names) and what they hide from the branches below (hidden,
// name to marker). It stats only what the entry types leave open: char
// devices, entries of unknown type, and empty-file candidates for xattr
// whiteouts when markers.XattrWhiteouts is set. Marker names never appear in
// names.
func Classify(dirFD int, entries []sys.DirEntry, markers DirMarkers) (names []sys.DirEntry, hidden map[string]Kind, err error) {
	hidden = map[string]Kind{}
	for _, e := range entries {
		if target, ok := AufsTarget(e.Name); ok {
			hidden[target] = AufsFile
			continue
		}
		if IsReserved(e.Name) {
			continue
		}
		typ := e.Type
		needStat := typ == unix.DT_UNKNOWN || typ == unix.DT_CHR || (markers.XattrWhiteouts && typ == unix.DT_REG)
		if needStat {
			var st unix.Stat_t
			if err := sys.Lstatat(dirFD, e.Name, &st); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // vanished under us
				}
				return nil, nil, err
			}
			if IsCharWhiteout(&st) {
				hidden[e.Name] = OverlayChar
				continue
			}
			if markers.XattrWhiteouts && IsXattrWhiteout(dirFD, e.Name, &st) {
				hidden[e.Name] = OverlayXattr
				continue
			}
			e.Type = DirentType(st.Mode)
		}
		names = append(names, e)
	}
	return names, hidden, nil
}

// DirentType converts a stat mode to a DT_* constant.
func DirentType(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	}
	return unix.DT_UNKNOWN
}
