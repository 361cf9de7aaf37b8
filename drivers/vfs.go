package drivers

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/cow"
	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// vfsBackend keeps every layer as a full copy of its parent plus its own
// changes. It needs no mount and no privilege, so it always works; it is
// slow and big unless the filesystem can share extents (reflink), which
// the copy uses when it can.
type vfsBackend struct {
	s *Store
}

func openVFS(s *Store) (backend, error) { return &vfsBackend{s: s}, nil }

func (v *vfsBackend) name() string             { return "vfs" }
func (v *vfsBackend) kind() contentKind        { return fullTree }
func (v *vfsBackend) markers() whiteout.Format { return whiteout.Overlay }
func (v *vfsBackend) tracksMounts() bool       { return false }
func (v *vfsBackend) dead(*layer) bool         { return false }
func (v *vfsBackend) remove(*layer) error      { return nil }
func (v *vfsBackend) unmount(*layer) error     { return nil }
func (v *vfsBackend) close() error             { return nil }

func (v *vfsBackend) mountDir(l *layer) string { return v.s.abs(layerPath(dirDiff, l.ID)) }

func (v *vfsBackend) mount(l *layer, _ []*layer) (string, error) { return v.mountDir(l), nil }

func (v *vfsBackend) contentDir(l *layer) (string, func() error, error) {
	return v.mountDir(l), func() error { return nil }, nil
}

func (v *vfsBackend) status() [][2]string {
	return [][2]string{{"Copy", "full copy per layer: reflink (FICLONE) where the filesystem shares extents, else copy_file_range"}}
}

// create copies the parent's tree into the new layer.
func (v *vfsBackend) create(l, parent *layer) error {
	if parent == nil {
		return nil
	}
	return v.s.copyLayerTree(parent.ID, l.ID)
}

// copyLayerTree replaces the empty diff/<dst> with a full copy of
// diff/<src>: owners, modes, xattrs, times, hard links and holes kept. The
// copy is built in staging/ and renamed into place, so diff/<dst> is
// either empty or complete.
func (s *Store) copyLayerTree(src, dst string) error {
	stage, err := s.newStaging("copy")
	if err != nil {
		return err
	}
	defer s.root.RemoveAll(stage)
	work, err := cow.OpenWorkdir(s.abs(stage))
	if err != nil {
		return err
	}
	defer work.Close()
	diffFD, err := unix.Open(s.abs(dirDiff), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(diffFD)
	stageFD, err := unix.Open(s.abs(stage), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(stageFD)
	// One fsync for the whole tree (syncfs below) instead of one per file.
	c := &treeCopier{engine: &cow.Engine{Work: work, Volatile: true}, links: map[[2]uint64]string{}, dstRoot: stageFD}
	// The root directory itself: copied by name (src) into staging, where
	// it keeps that name until it is renamed to diff/<dst>.
	if err := c.copyEntry(diffFD, stageFD, src, src); err != nil {
		return fmt.Errorf("copying layer %s: %w", src, err)
	}
	if err := syncFS(s.abs(stage)); err != nil {
		return err
	}
	if err := s.root.Remove(layerPath(dirDiff, dst)); err != nil {
		return err
	}
	if err := s.root.Rename(layerPath(stage, src), layerPath(dirDiff, dst)); err != nil {
		return err
	}
	return syncDir(s.root, dirDiff)
}

// treeCopier copies a tree object by object through the copy-up engine,
// which already knows every file type, reflink and holes, and the order
// metadata must be set in. It adds what a tree needs on top: recursion,
// hard links kept as links, and directory times restored after the
// directory's entries were added.
type treeCopier struct {
	engine  *cow.Engine
	links   map[[2]uint64]string // (dev, ino) of a multi-link file -> its copy, relative to dstRoot
	dstRoot int
}

// copyEntry copies srcDir/name to dstDir/name (rel is its path below the
// destination root), and a directory's whole subtree.
func (c *treeCopier) copyEntry(srcDir, dstDir int, name, rel string) error {
	var st unix.Stat_t
	if err := sys.Lstatat(srcDir, name, &st); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := c.links[key]; ok {
			return c.link(first, dstDir, name, rel)
		}
		c.links[key] = rel
	}
	if _, err := c.engine.Up(srcDir, dstDir, name, nil); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if typ != unix.S_IFDIR {
		return nil
	}
	subSrc, err := sys.OpenDirBeneath(srcDir, name)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(subSrc)
	subDst, err := sys.OpenDirBeneath(dstDir, name)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(subDst)
	entries, err := sys.ReadDir(subSrc, ".")
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		if err := c.copyEntry(subSrc, subDst, e.Name, rel+"/"+e.Name); err != nil {
			return err
		}
	}
	// Adding entries changed the copy's mtime; give it the original's.
	return unix.UtimesNanoAt(dstDir, name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// link makes dstDir/name another name of the copy at first.
func (c *treeCopier) link(first string, dstDir int, name, rel string) error {
	dir, base := splitRel(first)
	fd, err := sys.OpenDirBeneath(c.dstRoot, dir)
	if err != nil {
		return fmt.Errorf("%s: hard link to %s: %w", rel, first, err)
	}
	defer unix.Close(fd)
	if err := unix.Linkat(fd, base, dstDir, name, 0); err != nil {
		return fmt.Errorf("%s: hard link to %s: %w", rel, first, err)
	}
	return nil
}

// splitRel splits a slash-separated relative path into its directory
// ("." for none) and last element.
func splitRel(rel string) (string, string) {
	for i := len(rel) - 1; i >= 0; i-- {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:]
		}
	}
	return ".", rel
}

// syncFS flushes the filesystem dir is on (one syncfs for a whole copied
// tree instead of an fsync per file).
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
