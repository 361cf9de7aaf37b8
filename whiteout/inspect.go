package whiteout

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// Inventory is what one branch directory (an upper, an unpacked image
// layer) holds besides plain objects: its markers in each format, its
// redirects, the union bookkeeping on its objects, and what in all that is
// inconsistent.
type Inventory struct {
	// Format is "overlay", "aufs", "mixed" (markers of both) or "none".
	Format    string   `json:"format"`
	Whiteouts []Marker `json:"whiteouts"`
	Opaque    []Marker `json:"opaque"`
	Redirects []Marker `json:"redirects"`
	// Metadata: strata's own (strata.ino, strata.origin, its scratch
	// directory), aufs bookkeeping names, kernel overlay's other xattrs.
	Metadata []Marker  `json:"metadata"`
	Problems []Problem `json:"problems"`
}

// Marker is one marker or piece of bookkeeping.
type Marker struct {
	// Path is what the marker is about, relative to the branch: the name
	// a whiteout deletes, the opaque or renamed directory, the object
	// carrying the xattr.
	Path string `json:"path"`
	// Entry is the directory entry holding the marker when it is not Path
	// itself (".wh.name", ".wh..wh..opq").
	Entry string `json:"entry,omitempty"`
	// Kind says what it is, in words ("overlay whiteout (char 0/0)",
	// "redirect", "trusted.strata.ino", ...).
	Kind string `json:"kind"`
	// Format is "overlay" or "aufs" for markers of one format.
	Format string `json:"format,omitempty"`
	Value  string `json:"value,omitempty"`
}

// Problem is an inconsistency, with a stable code for scripts.
type Problem struct {
	Path   string `json:"path"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Problem codes.
const (
	ProblemWhiteoutBesideObject = "whiteout-beside-object"
	ProblemMixedFormat          = "mixed-format"
	ProblemBadRedirect          = "bad-redirect"
	ProblemDanglingRedirect     = "dangling-redirect"
	ProblemInertXattrWhiteout   = "inert-xattr-whiteout"
	ProblemMarkerNotEmpty       = "marker-not-empty"
	ProblemBadOpaqueValue       = "bad-opaque-value"
	ProblemMetacopy             = "metacopy"
	ProblemScratchLeftovers     = "scratch-leftovers"
	ProblemRootOpaque           = "opaque-root"
)

// StrataScratch is the scratch directory strata keeps inside an rw branch
// mounted with the aufs syntax and no workdir.
const StrataScratch = AufsMetaPrefix + "strata"

// Inspect walks the branch directory rootFD (an O_PATH descriptor is
// enough) and lists its markers and bookkeeping, flagging what is
// inconsistent within the branch. Cross-branch checks (a redirect whose
// target no lower branch has) are the caller's: see branches.
func Inspect(rootFD int) (*Inventory, error) {
	inv := &Inventory{Whiteouts: []Marker{}, Opaque: []Marker{}, Redirects: []Marker{}, Metadata: []Marker{}, Problems: []Problem{}}
	if err := inv.walk(rootFD, "."); err != nil {
		return nil, err
	}
	inv.classifyFormat()
	return inv, nil
}

func (inv *Inventory) problem(p, code, format string, a ...any) {
	inv.Problems = append(inv.Problems, Problem{Path: p, Code: code, Detail: fmt.Sprintf(format, a...)})
}

// walk inspects the directory rel and everything below it.
func (inv *Inventory) walk(rootFD int, rel string) error {
	dfd, err := sys.OpenDirBeneath(rootFD, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(dfd)
	xattrWhiteouts, err := inv.dirXattrs(dfd, rel)
	if err != nil {
		return err
	}
	entries, err := sys.ReadDir(rootFD, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	slices.SortFunc(entries, func(a, b sys.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name] = true
	}
	for _, e := range entries {
		p := path.Join(rel, e.Name)
		var st unix.Stat_t
		if err := sys.Lstatat(dfd, e.Name, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		done, err := inv.aufsEntry(rootFD, dfd, rel, e.Name, &st, names)
		if err != nil {
			return err
		}
		if done {
			continue
		}
		switch {
		case IsCharWhiteout(&st):
			inv.Whiteouts = append(inv.Whiteouts, Marker{Path: p, Kind: OverlayChar.String(), Format: "overlay"})
			continue
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			if err := inv.walk(rootFD, p); err != nil {
				return err
			}
			continue
		}
		isWhiteout, err := inv.objectXattrs(dfd, e.Name, p, &st, xattrWhiteouts)
		if err != nil {
			return err
		}
		if isWhiteout {
			inv.Whiteouts = append(inv.Whiteouts, Marker{Path: p, Kind: OverlayXattr.String(), Format: "overlay"})
		}
	}
	return nil
}

// aufsEntry records an aufs marker or bookkeeping name; done says the
// entry was one (whether or not it is well-formed).
func (inv *Inventory) aufsEntry(rootFD, dfd int, rel, name string, st *unix.Stat_t, names map[string]bool) (done bool, err error) {
	if !IsReserved(name) {
		return false, nil
	}
	p := path.Join(rel, name)
	emptyFile := st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0
	switch target, isWhiteout := AufsTarget(name); {
	case isWhiteout:
		tp := path.Join(rel, target)
		inv.Whiteouts = append(inv.Whiteouts, Marker{Path: tp, Entry: p, Kind: AufsFile.String(), Format: "aufs"})
		var tst unix.Stat_t
		if names[target] && sys.Lstatat(dfd, target, &tst) == nil && !IsCharWhiteout(&tst) {
			inv.problem(tp, ProblemWhiteoutBesideObject, "%s and %s are both in this branch: aufs and strata read it as deleted, then created again (%s shows, lower copies stay hidden); kernel overlay has no such form and would show %s as a file", p, tp, tp, name)
		}
		if !emptyFile {
			inv.problem(p, ProblemMarkerNotEmpty, "an aufs whiteout should be an empty regular file, and this one is not (it still counts as a whiteout)")
		}
	case name == AufsOpaque:
		inv.Opaque = append(inv.Opaque, Marker{Path: rel, Entry: p, Kind: OpaqueAufs.String(), Format: "aufs"})
		if !emptyFile {
			inv.problem(p, ProblemMarkerNotEmpty, "an aufs opaque marker should be an empty regular file, and this one is not (it still counts)")
		}
		if rel == "." {
			inv.problem(p, ProblemRootOpaque, "an opaque marker on the branch root is ignored: the roots are the stack itself")
		}
	case name == StrataScratch:
		inv.Metadata = append(inv.Metadata, Marker{Path: p, Kind: "strata scratch directory (aufs syntax without workdir)"})
		left, err := sys.ReadDir(rootFD, path.Join(p, "strata"))
		if err == nil && len(left) > 0 {
			inv.problem(p, ProblemScratchLeftovers, "%d leftover(s) of interrupted changes in %s/strata; the next mount removes them", len(left), p)
		}
	default:
		inv.Metadata = append(inv.Metadata, Marker{Path: p, Kind: "aufs bookkeeping name (hidden by aufs and strata)", Format: "aufs"})
	}
	return true, nil
}

// dirXattrs records a directory's overlay and strata xattrs and reports
// whether it is marked overlay.opaque=x (its empty files may be xattr
// whiteouts).
func (inv *Inventory) dirXattrs(dfd int, rel string) (xattrWhiteouts bool, err error) {
	attrs, err := readXattrs(dfd, "")
	if err != nil {
		return false, fmt.Errorf("%s: %w", rel, err)
	}
	for _, a := range attrs {
		key, isOverlay := overlayKey(a.name)
		switch {
		case isOverlay && key == xattrOpaque:
			switch a.value {
			case "y":
				inv.Opaque = append(inv.Opaque, Marker{Path: rel, Kind: OpaqueOverlay.String(), Format: "overlay", Value: a.name + "=y"})
				if rel == "." {
					inv.problem(rel, ProblemRootOpaque, "an opaque marker on the branch root is ignored: the roots are the stack itself")
				}
			case "x":
				xattrWhiteouts = true
				inv.Metadata = append(inv.Metadata, Marker{Path: rel, Kind: "overlay.opaque=x: may hold xattr whiteouts", Format: "overlay", Value: a.name + "=x"})
			default:
				inv.problem(rel, ProblemBadOpaqueValue, "%s=%q is neither y (opaque) nor x (holds xattr whiteouts); it is ignored", a.name, a.value)
			}
		case isOverlay && key == xattrRedirect:
			target, ok := ParseRedirect(rel, a.value)
			if !ok {
				inv.problem(rel, ProblemBadRedirect, "%s=%q is not a clean path inside the branches; it is ignored, so this directory's lower copies are not found", a.name, a.value)
				continue
			}
			inv.Redirects = append(inv.Redirects, Marker{Path: rel, Kind: "redirect", Value: "/" + target})
		default:
			inv.metadataXattr(rel, a)
		}
	}
	return xattrWhiteouts, nil
}

// objectXattrs records a non-directory's union xattrs and says whether it
// is an xattr whiteout.
func (inv *Inventory) objectXattrs(dfd int, name, p string, st *unix.Stat_t, xattrWhiteouts bool) (bool, error) {
	attrs, err := readXattrs(dfd, name)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	whiteout := false
	for _, a := range attrs {
		key, isOverlay := overlayKey(a.name)
		switch {
		case isOverlay && key == xattrWhiteout:
			if xattrWhiteouts && IsXattrWhiteout(dfd, name, st) {
				whiteout = true
				continue
			}
			inv.problem(p, ProblemInertXattrWhiteout, "carries %s but is not a whiteout (its directory lacks overlay.opaque=x, or it is not an empty file): kernel overlay and strata show it as a file", a.name)
		case isOverlay && key == "overlay.metacopy":
			inv.problem(p, ProblemMetacopy, "a kernel overlay metacopy upper (%s): its data is in a lower copy, which strata does not follow; strata shows this stub", a.name)
		default:
			inv.metadataXattr(p, a)
		}
	}
	return whiteout, nil
}

// metadataXattr records the union's own xattrs other than markers.
func (inv *Inventory) metadataXattr(p string, a xattr) {
	switch {
	case strings.HasSuffix(a.name, ".strata.ino"):
		inv.Metadata = append(inv.Metadata, Marker{Path: p, Kind: a.name + ": inode number kept across copy-up"})
	case strings.HasSuffix(a.name, ".strata.origin"):
		inv.Metadata = append(inv.Metadata, Marker{Path: p, Kind: a.name + ": where the copy-up came from", Value: a.value})
	case IsUnionXattr(a.name):
		inv.Metadata = append(inv.Metadata, Marker{Path: p, Kind: a.name + ": union bookkeeping (kernel overlay's, or another tool's)"})
	}
}

// classifyFormat decides the branch's format from its markers and flags
// the markers of the other format in a branch of one.
func (inv *Inventory) classifyFormat() {
	var overlay, aufs []Marker
	for _, m := range slices.Concat(inv.Whiteouts, inv.Opaque) {
		switch m.Format {
		case "overlay":
			overlay = append(overlay, m)
		case "aufs":
			aufs = append(aufs, m)
		}
	}
	switch {
	case len(overlay) == 0 && len(aufs) == 0:
		inv.Format = "none"
		return
	case len(aufs) == 0:
		inv.Format = "overlay"
		return
	case len(overlay) == 0:
		inv.Format = "aufs"
		return
	}
	inv.Format = "mixed"
	odd, major := overlay, "aufs"
	if len(overlay) > len(aufs) {
		odd, major = aufs, "overlay"
	}
	for _, m := range odd {
		where := m.Path
		if m.Entry != "" {
			where = m.Entry
		}
		inv.problem(where, ProblemMixedFormat, "%s in a branch otherwise in %s format (%d vs %d markers): strata reads both, but kernel overlay ignores .wh. files and aufs ignores char 0/0 and xattrs; strata convert makes the branch one format", m.Kind, major, len(odd), len(overlay)+len(aufs)-len(odd))
	}
}

type xattr struct{ name, value string }

// readXattrs reads every xattr of name in dfd (dfd itself when name is
// empty); a filesystem without xattrs has none.
func readXattrs(dfd int, name string) ([]xattr, error) {
	names, err := sys.Listxattr(dfd, name)
	if sys.IsNoAttr(err) || errors.Is(err, unix.EPERM) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []xattr
	for _, n := range names {
		v, err := sys.Getxattr(dfd, name, n)
		if err != nil {
			continue // gone, or a namespace we may not read
		}
		out = append(out, xattr{n, string(v)})
	}
	return out, nil
}
