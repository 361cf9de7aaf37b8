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

// Change is one marker rewritten by Convert.
type Change struct {
	// Path is what the marker is about (the whited-out name, the opaque
	// directory), relative to the branch.
	Path string `json:"path"`
	From string `json:"from"`
	To   string `json:"to"`
}

// convertTemp is the scratch name Convert builds a char 0/0 under before
// renaming it over an xattr whiteout: a reserved name, and a whiteout in
// every reader, so a crash leaves nothing visible.
const convertTemp = AufsMetaPrefix + "strata-convert"

// Convert rewrites every marker of the branch rootFD into format to:
// whiteouts, opaque directories, and the aufs "deleted, then created
// again" pair (.wh.name beside name), which overlay says with an opaque
// directory or, for a non-directory, with nothing. Overlay xattrs are
// written in namespace ns ("trusted." or "user."). Redirects are left as
// they are: strata reads them in both formats, and aufs has no other way to
// say a directory was renamed.
//
// Each entry is rewritten on its own, new marker first, old marker last;
// in between the branch holds both forms, which strata reads exactly as
// either, so an interrupted conversion loses nothing and running it again
// finishes it. With dryRun it only reports what it would change. The branch
// must not be in use by a mount (the caller checks).
func Convert(rootFD int, to Format, ns string, dryRun bool) ([]Change, error) {
	c := &converter{root: rootFD, to: to, ns: ns, dry: dryRun}
	if err := c.dir("."); err != nil {
		return c.changes, err
	}
	return c.changes, nil
}

type converter struct {
	root    int
	to      Format
	ns      string
	dry     bool
	changes []Change
}

func (c *converter) writer(f Format) Writer { return Writer{Format: f, XattrNamespace: c.ns} }

// step records a change and, unless dry, makes it.
func (c *converter) step(p, from, to string, do func() error) error {
	if !c.dry {
		if err := do(); err != nil {
			return fmt.Errorf("%s: %s to %s: %w", p, from, to, err)
		}
	}
	c.changes = append(c.changes, Change{Path: p, From: from, To: to})
	return nil
}

// dir converts the directory rel, then its subdirectories.
func (c *converter) dir(rel string) error {
	fd, err := sys.OpenBeneath(c.root, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(fd)
	entries, err := sys.ReadDir(c.root, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	slices.SortFunc(entries, func(a, b sys.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	if c.to == Overlay {
		err = c.toOverlay(fd, rel, entries)
	} else {
		err = c.toAufs(fd, rel, entries)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		var st unix.Stat_t
		if IsReserved(e.Name) || sys.Lstatat(fd, e.Name, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := c.dir(path.Join(rel, e.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (c *converter) toOverlay(fd int, rel string, entries []sys.DirEntry) error {
	for _, e := range entries {
		if e.Name == AufsOpaque {
			err := c.step(rel, OpaqueAufs.String(), OpaqueOverlay.String(), func() error {
				if err := c.makeOverlayOpaque(fd, rel); err != nil {
					return err
				}
				return unix.Unlinkat(fd, AufsOpaque, 0)
			})
			if err != nil {
				return err
			}
			continue
		}
		target, ok := AufsTarget(e.Name)
		if !ok {
			continue
		}
		tp := path.Join(rel, target)
		var st unix.Stat_t
		err := sys.Lstatat(fd, target, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
			err = c.step(tp, AufsFile.String(), OverlayChar.String(), func() error {
				if err := c.writer(Overlay).Whiteout(fd, target); err != nil {
					return err
				}
				return unix.Unlinkat(fd, e.Name, 0)
			})
		case err != nil:
			return fmt.Errorf("%s: %w", tp, err)
		case IsCharWhiteout(&st):
			err = c.step(tp, AufsFile.String()+" beside "+OverlayChar.String(), OverlayChar.String(), func() error {
				return unix.Unlinkat(fd, e.Name, 0)
			})
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			// Deleted, then created again: a directory that hides its
			// lower copies is an opaque one.
			err = c.step(tp, "dir beside "+AufsFile.String(), "dir, "+OpaqueOverlay.String(), func() error {
				dfd, err := sys.OpenBeneath(fd, target, unix.O_RDONLY|unix.O_DIRECTORY, 0)
				if err != nil {
					return err
				}
				defer unix.Close(dfd)
				if err := c.makeOverlayOpaque(dfd, tp); err != nil {
					return err
				}
				return unix.Unlinkat(fd, e.Name, 0)
			})
		default:
			// A non-directory hides its lower copies by itself.
			err = c.step(tp, "non-directory beside "+AufsFile.String(), "non-directory (hides the lower copies by itself)", func() error {
				return unix.Unlinkat(fd, e.Name, 0)
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// makeOverlayOpaque sets overlay.opaque=y on the directory fd. Its xattr
// whiteouts, if any, become char 0/0 first: =y replaces the =x that makes
// them whiteouts.
func (c *converter) makeOverlayOpaque(fd int, rel string) error {
	m, err := ReadDirMarkers(fd, rel)
	if err != nil {
		return err
	}
	if m.XattrWhiteouts {
		entries, err := sys.ReadDir(fd, ".")
		if err != nil {
			return err
		}
		for _, e := range entries {
			var st unix.Stat_t
			if sys.Lstatat(fd, e.Name, &st) != nil || !IsXattrWhiteout(fd, e.Name, &st) {
				continue
			}
			unix.Unlinkat(fd, convertTemp, 0)
			if err := c.writer(Overlay).Whiteout(fd, convertTemp); err != nil {
				return err
			}
			if err := unix.Renameat(fd, convertTemp, fd, e.Name); err != nil {
				return err
			}
		}
	}
	return c.writer(Overlay).MakeOpaque(fd)
}

func (c *converter) toAufs(fd int, rel string, entries []sys.DirEntry) error {
	m, err := ReadDirMarkers(fd, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	opaqueAttrs, xattrMarks := overlayOpaqueXattrs(fd)
	if len(opaqueAttrs) > 0 {
		err := c.step(rel, OpaqueOverlay.String(), OpaqueAufs.String(), func() error {
			if err := c.writer(Aufs).MakeOpaque(fd); err != nil {
				return err
			}
			for _, a := range opaqueAttrs {
				if err := sys.Removexattr(fd, "", a); err != nil && !sys.IsNoAttr(err) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, e := range entries {
		if IsReserved(e.Name) {
			continue
		}
		var st unix.Stat_t
		if err := sys.Lstatat(fd, e.Name, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s: %w", path.Join(rel, e.Name), err)
		}
		var kind Kind
		switch {
		case IsCharWhiteout(&st):
			kind = OverlayChar
		case m.XattrWhiteouts && IsXattrWhiteout(fd, e.Name, &st):
			kind = OverlayXattr
		default:
			continue
		}
		name := e.Name
		err := c.step(path.Join(rel, name), kind.String(), AufsFile.String(), func() error {
			if err := c.writer(Aufs).Whiteout(fd, name); err != nil {
				return err
			}
			return unix.Unlinkat(fd, name, 0)
		})
		if err != nil {
			return err
		}
	}
	if len(xattrMarks) > 0 {
		// No xattr whiteouts are left to look for.
		return c.step(rel, "overlay.opaque=x (holds xattr whiteouts)", "no marker", func() error {
			for _, a := range xattrMarks {
				if err := sys.Removexattr(fd, "", a); err != nil && !sys.IsNoAttr(err) {
					return err
				}
			}
			return nil
		})
	}
	return nil
}

// overlayOpaqueXattrs lists the overlay.opaque xattrs of the directory fd
// set to y (opaque) and to x (holds xattr whiteouts), in every namespace.
func overlayOpaqueXattrs(fd int) (opaque, xattrWhiteouts []string) {
	for _, ns := range OverlayNamespaces {
		v, err := sys.Getxattr(fd, "", ns+xattrOpaque)
		switch {
		case err != nil:
		case string(v) == "y":
			opaque = append(opaque, ns+xattrOpaque)
		case string(v) == "x":
			xattrWhiteouts = append(xattrWhiteouts, ns+xattrOpaque)
		}
	}
	return opaque, xattrWhiteouts
}
