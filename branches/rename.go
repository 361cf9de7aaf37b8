package branches

import (
	"errors"
	"fmt"
	"path"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Rename flags, as renameat2(2).
const (
	RenameNoReplace = unix.RENAME_NOREPLACE
	RenameExchange  = unix.RENAME_EXCHANGE
)

// Rename moves oldName in oldDir to newName in newDir
// (docs/UNION-SEMANTICS.md, "Removal and rename"): the source is copied up
// and renamed within the upper; a whiteout is left where a lower copy of the
// source would show through. A directory with lower content takes them along
// through an overlay.redirect xattr naming where they are
// (docs/WRITE-PATH.md, "Directory rename"); one without lower content that
// lands where a lower copy exists is made opaque instead. flags may be
// RenameNoReplace or RenameExchange.
func (s *Stack) Rename(oldDir *Entry, oldName string, newDir *Entry, newName string, flags uint32) error {
	if err := s.checkWritable(); err != nil {
		return err
	}
	if err := checkNewName(newName); err != nil {
		return err
	}
	src, err := s.Lookup(oldDir, oldName)
	if err != nil {
		return err
	}
	dst, err := s.Lookup(newDir, newName)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotExist) {
		return err
	}
	full := path.Join(newDir.Path, newName)
	if src.IsDir() && sys.PathWithin(newDir.Path, src.Path) {
		return fmt.Errorf("%s: a directory cannot move into itself: %w", full, unix.EINVAL)
	}
	switch {
	case flags&RenameNoReplace != 0 && exists:
		return fmt.Errorf("%s: %w", full, unix.EEXIST)
	case flags&RenameExchange != 0 && !exists:
		return fmt.Errorf("%s: %w", full, unix.ENOENT)
	case exists && src.Ino == dst.Ino:
		return nil // two names of one object: rename(2) does nothing
	}
	if exists && flags&RenameExchange == 0 {
		switch {
		case src.IsDir() && !dst.IsDir():
			return fmt.Errorf("%s: %w", full, unix.ENOTDIR)
		case !src.IsDir() && dst.IsDir():
			return fmt.Errorf("%s: %w", full, unix.EISDIR)
		case dst.IsDir():
			names, err := s.Names(dst)
			if err != nil {
				return err
			}
			if len(names) > 0 {
				return fmt.Errorf("%s: %w", full, unix.ENOTEMPTY)
			}
		}
	}
	defer s.layoutChanged() // entries of the moved names carry their old paths
	if src.IsDir() || exists && dst.IsDir() {
		defer s.subdirs.changed(oldDir, newDir, dst)
		if exists && dst.IsDir() && flags&RenameExchange == 0 {
			defer s.dirs.forget(dst.Ino)
		}
	}
	if flags&RenameExchange != 0 {
		err := s.exchange(src, dst)
		if t := s.tracer.Load(); t != nil && err == nil {
			t.exchanged(src, dst, s.w.upper.Branch)
		}
		return err
	}

	srcRedirected, err := s.prepareMove(src)
	if err != nil {
		return err
	}
	upper := s.w.upper
	newUp, err := s.copyUpTo(newDir, upper)
	if err != nil {
		return err
	}
	oldUp, err := s.Resolve(oldDir.Path) // the copy-ups above may have made it
	if err != nil {
		return err
	}
	leaveWhiteout, err := s.shownBelow(oldUp, oldName, upper)
	if err != nil {
		return err
	}
	lowerAtNew, err := s.shownBelow(newUp, newName, upper)
	if err != nil {
		return err
	}
	err = s.withDirIn(oldUp, upper, func(oldFD int, _ whiteout.DirMarkers) error {
		return s.withDirIn(newUp, upper, func(newFD int, newMarkers whiteout.DirMarkers) error {
			if src.IsDir() && lowerAtNew && !srcRedirected {
				if err := s.makeOpaque(oldFD, oldName); err != nil {
					return err
				}
			}
			aside := ""
			if exists && dst.IsDir() && dst.Top().Branch == upper.Branch {
				// rename(2) replaces only an empty directory: the upper
				// copy of an empty merged directory may hold markers. It
				// waits in the workdir until the move is done.
				aside = upper.tempName()
				if err := unix.Renameat(newFD, newName, upper.work(), aside); err != nil {
					return err
				}
			}
			err := s.moveInUpper(oldFD, oldName, newMarkers, newFD, newName, src.IsDir(), leaveWhiteout)
			if aside == "" {
				return err
			}
			if err != nil && unix.Renameat2(upper.work(), aside, newFD, newName, unix.RENAME_NOREPLACE) == nil {
				return err // refused: the destination is back as it was
			}
			// Replaced. What sys.RemoveAll leaves, the next Open clears.
			sys.RemoveAll(upper.work(), aside)
			return err
		})
	})
	if t := s.tracer.Load(); t != nil && err == nil {
		t.renamed(s, src, full, srcRedirected, leaveWhiteout, src.IsDir() && lowerAtNew && !srcRedirected)
	}
	return err
}

// prepareMove copies e up before it moves and, for a directory with lower
// copies, records in an overlay.redirect on its upper copy where those are
// (the path of the next copy down), so they follow it to any new name. A
// directory redirected before keeps its redirect: it already points there.
// It reports whether the directory carries a redirect.
func (s *Stack) prepareMove(e *Entry) (redirected bool, err error) {
	if err := s.checkRedirectAllowed(e); err != nil {
		return false, err
	}
	up, err := s.copyUpTo(e, s.w.upper)
	if err != nil || !up.IsDir() || len(up.Layers) < 2 {
		return false, err
	}
	if up.Top().Markers.Redirect != "" {
		return true, nil
	}
	if err := s.copyUpLinkSetsUnder(up); err != nil {
		return false, err
	}
	target := up.Layers[1].Path
	err = withParent(up.Top(), func(dirFD int, name string) error {
		fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return s.whiteoutWriter().SetRedirect(fd, target)
	})
	return err == nil, err
}

// moveInUpper renames within the upper branch, replacing a whiteout at
// the new name and leaving one at the old name when asked. When the
// rename itself is refused, the upper is left as it was.
func (s *Stack) moveInUpper(oldFD int, oldName string, newMarkers whiteout.DirMarkers, newFD int, newName string, isDir, leaveWhiteout bool) error {
	l, err := whiteout.LookupName(newFD, newName, newMarkers)
	if err != nil {
		return err
	}
	aufs := s.whiteoutWriter().Format == whiteout.Aufs
	if leaveWhiteout && aufs {
		// .wh.old beside old hides the lower copies; old itself still
		// shows until the rename.
		if _, err := s.writeWhiteout(oldFD, oldName); err != nil {
			return err
		}
	}
	moved, err := s.moveOver(oldFD, oldName, l, newFD, newName, isDir, leaveWhiteout && !aufs)
	if !moved && leaveWhiteout && aufs {
		// Refused: the object stays, so must its lower copies.
		unix.Unlinkat(oldFD, whiteout.AufsName(oldName), 0)
	}
	return err
}

// moveOver is moveInUpper's rename, over l, what the new name holds;
// whiteoutOld asks for an overlay whiteout at the old name. moved says
// whether the object left the old name (a later step may still fail).
func (s *Stack) moveOver(oldFD int, oldName string, l whiteout.Lookup, newFD int, newName string, isDir, whiteoutOld bool) (moved bool, err error) {
	overlayWh := l.Hides == whiteout.OverlayChar || l.Hides == whiteout.OverlayXattr
	if overlayWh && !l.Present && isDir {
		// A directory cannot replace the whiteout: swap them; the
		// whiteout lands at the old name, which is what that name
		// needs when a lower copy shows there.
		if err := unix.Renameat2(oldFD, oldName, newFD, newName, unix.RENAME_EXCHANGE); err != nil {
			return false, err
		}
		// An xattr whiteout is one only in an opaque=x directory,
		// which the old one need not be: replace it there.
		if l.Hides == whiteout.OverlayXattr || !whiteoutOld {
			if err := unix.Unlinkat(oldFD, oldName, 0); err != nil {
				return true, err
			}
		}
		if l.Hides == whiteout.OverlayXattr && whiteoutOld {
			_, err := s.writeWhiteout(oldFD, oldName)
			return true, err
		}
		return true, nil
	}
	if moved, err := s.renameLeaving(oldFD, oldName, newFD, newName, whiteoutOld); err != nil {
		return moved, err
	}
	if l.Hides == whiteout.AufsFile {
		// The moved object hides the lower copies by itself (a
		// non-directory, or a directory made opaque above).
		return true, unix.Unlinkat(newFD, whiteout.AufsName(newName), 0)
	}
	return true, nil
}

// renameLeaving renames, leaving an overlay whiteout at the old name in
// the same step when asked (RENAME_WHITEOUT), or right after where the
// kernel refuses that flag. moved says whether the object left the old
// name.
func (s *Stack) renameLeaving(oldFD int, oldName string, newFD int, newName string, whiteoutOld bool) (moved bool, err error) {
	if !whiteoutOld {
		err := unix.Renameat(oldFD, oldName, newFD, newName)
		return err == nil, err
	}
	err = unix.Renameat2(oldFD, oldName, newFD, newName, unix.RENAME_WHITEOUT)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
		return err == nil, err
	}
	if err := unix.Renameat(oldFD, oldName, newFD, newName); err != nil {
		return false, err
	}
	_, err = s.writeWhiteout(oldFD, oldName)
	return true, err
}

// exchange swaps two names, both copied up; each keeps showing, so no
// whiteout is needed, but a directory that lands where a lower copy shows
// is made opaque.
func (s *Stack) exchange(a, b *Entry) error {
	aRedirected, err := s.prepareMove(a)
	if err != nil {
		return err
	}
	bRedirected, err := s.prepareMove(b)
	if err != nil {
		return err
	}
	aDir, err := s.Resolve(path.Dir(a.Path))
	if err != nil {
		return err
	}
	bDir, err := s.Resolve(path.Dir(b.Path))
	if err != nil {
		return err
	}
	aName, bName := a.Name(), b.Name()
	upper := s.w.upper
	lowerAtB, err := s.shownBelow(bDir, bName, upper)
	if err != nil {
		return err
	}
	lowerAtA, err := s.shownBelow(aDir, aName, upper)
	if err != nil {
		return err
	}
	return s.withDirIn(aDir, upper, func(aFD int, _ whiteout.DirMarkers) error {
		return s.withDirIn(bDir, upper, func(bFD int, _ whiteout.DirMarkers) error {
			if a.IsDir() && lowerAtB && !aRedirected {
				if err := s.makeOpaque(aFD, aName); err != nil {
					return err
				}
			}
			if b.IsDir() && lowerAtA && !bRedirected {
				if err := s.makeOpaque(bFD, bName); err != nil {
					return err
				}
			}
			return unix.Renameat2(aFD, aName, bFD, bName, unix.RENAME_EXCHANGE)
		})
	})
}
