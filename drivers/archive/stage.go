package archive

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// stagePrefix starts the name of Apply's staging directory, which sits
// beside the layer directory: ".strata-stage.<layer dir name>".
const stagePrefix = ".strata-stage."

// IsStagingName reports whether name, an entry beside a layer directory, is
// an Apply staging directory (live, or left by a crash and removed by the
// next Apply to that layer). Listings of layer directories skip it.
func IsStagingName(name string) bool { return strings.HasPrefix(name, stagePrefix) }

// RemoveStaging removes what an interrupted Apply of the layer directory
// dir left beside it (a crash, a kill), and does nothing when there is
// nothing. It waits for a live Apply of dir to finish first. The next
// Apply of dir does the same; a store calls this when it opens, so that
// the hard links a staging directory holds to the layer's files (see
// openStage) do not outlive the crash.
func RemoveStaging(dir string) error {
	s, err := lockStage(dir)
	if err != nil {
		return fmt.Errorf("remove staging of %s: %w", dir, err)
	}
	defer s.close()
	if err := sys.RemoveAll(s.parentFD, s.name); err != nil {
		return fmt.Errorf("remove staging of %s: %w", dir, err)
	}
	return nil
}

// stage is one Apply's workspace: the new layer content is built in
// <parent>/.strata-stage.<base>/tree and swapped with the layer directory
// in one renameat2(RENAME_EXCHANGE).
//
// Locks: the layer directory and the new tree are both flock'd for the
// whole Apply, so a second Apply of the same directory waits until this
// one has swapped and cleaned up (it locks whatever inode the path names,
// and checks the path still names it afterwards). A crash drops the locks
// and leaves the staging directory, which the next Apply removes before
// making its own.
type stage struct {
	parentFD int    // the layer directory's parent (O_RDONLY)
	base     string // the layer directory's name in it
	layerFD  int    // the layer directory (O_RDONLY, flock'd)
	name     string // the staging directory's name in parentFD
	boxFD    int    // the staging directory (O_PATH)
	treeFD   int    // the new layer root, box/tree (O_RDONLY, flock'd)
	dirs     []dirMeta
}

// dirMeta is a directory's mode and times, set once everything inside it
// is written (a new entry changes a directory's mtime, and a read-only
// mode would stop the writes). ino tells a directory from another made
// later at the same path.
type dirMeta struct {
	rel          string
	ino          uint64
	mode         uint32
	atime, mtime unix.Timespec
}

// openStage locks the layer directory, removes a staging directory a crash
// left, and makes a new one holding the layer's current content: new
// directories with the same metadata, and a hard link for every other
// object. Apply never changes a non-directory in place (a tar entry always
// replaces the name), so the links share nothing that is written, and the
// old layer directory stays byte for byte as it was; only the link counts
// (and ctimes) of its files are raised while a staging directory exists.
func openStage(dir string) (*stage, error) {
	s, err := lockStage(dir)
	if err != nil {
		return nil, err
	}
	if err := s.create(); err != nil {
		s.abort()
		s.close()
		return nil, fmt.Errorf("staging: %w", err)
	}
	return s, nil
}

// lockStage opens dir's parent and locks dir.
func lockStage(dir string) (*stage, error) {
	dir = filepath.Clean(dir)
	s := &stage{parentFD: -1, layerFD: -1, boxFD: -1, treeFD: -1}
	parent, base := filepath.Split(dir)
	if parent == "" {
		parent = "."
	}
	if base == "" || base == "." || base == ".." {
		return nil, errors.New("need a layer directory with a name of its own")
	}
	s.base = base
	s.name = stagePrefix + base
	if len(s.name) > maxNameLen {
		return nil, errors.New("directory name too long to stage beside it")
	}
	var err error
	if s.parentFD, err = unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, err
	}
	if err := s.lockLayer(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// lockLayer opens and flocks the layer directory, retrying when a
// concurrent Apply swapped it while we waited for the lock.
func (s *stage) lockLayer() error {
	for {
		fd, err := unix.Openat(s.parentFD, s.base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return errors.New("not a directory")
		}
		if err != nil {
			return err
		}
		if err := flock(fd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("lock: %w", err)
		}
		var locked, now, parent unix.Stat_t
		err = sys.Fstat(fd, &locked)
		if err == nil {
			err = sys.Lstatat(s.parentFD, s.base, &now)
		}
		if err == nil {
			err = sys.Fstat(s.parentFD, &parent)
		}
		if err != nil {
			unix.Close(fd)
			return err
		}
		if locked.Dev != now.Dev || locked.Ino != now.Ino {
			unix.Close(fd) // swapped by another Apply meanwhile: lock the new one
			continue
		}
		if locked.Dev != parent.Dev {
			unix.Close(fd)
			return errors.New("is a mount point; Apply stages beside the layer directory on the same filesystem, so apply into a directory inside the mount")
		}
		s.layerFD = fd
		return nil
	}
}

func flock(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// create removes a leftover staging directory (we hold the layer's lock,
// so no live Apply owns it) and builds the new one.
func (s *stage) create() error {
	if err := sys.RemoveAll(s.parentFD, s.name); err != nil {
		return fmt.Errorf("removing a leftover: %w", err)
	}
	if err := unix.Mkdirat(s.parentFD, s.name, 0o700); err != nil {
		return err
	}
	var err error
	if s.boxFD, err = sys.OpenDirBeneath(s.parentFD, s.name); err != nil {
		return err
	}
	if err := unix.Mkdirat(s.boxFD, "tree", 0o700); err != nil {
		return err
	}
	if s.treeFD, err = sys.OpenBeneath(s.boxFD, "tree", unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
		return err
	}
	if err := flock(s.treeFD); err != nil {
		return err
	}
	return s.linkTree(s.layerFD, s.treeFD, ".")
}

// linkTree fills the new directory dst (at rel in the tree) with the
// content of src: directories are made anew with src's owner and xattrs
// (all of them: union markers included, they are the layer's), everything
// else is hard-linked.
func (s *stage) linkTree(src, dst int, rel string) error {
	var st unix.Stat_t
	if err := sys.Fstat(src, &st); err != nil {
		return err
	}
	if err := copyOwnerXattrs(src, dst, &st); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	var dstSt unix.Stat_t
	if err := sys.Fstat(dst, &dstSt); err != nil {
		return err
	}
	s.dirs = append(s.dirs, dirMeta{rel: rel, ino: dstSt.Ino, mode: st.Mode, atime: st.Atim, mtime: st.Mtim})
	entries, err := sys.ReadDir(src, ".")
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		childRel := joinRel(rel, e.Name)
		var cst unix.Stat_t
		if err := sys.Lstatat(src, e.Name, &cst); err != nil {
			return fmt.Errorf("%s: %w", childRel, err)
		}
		if !isDir(&cst) {
			if err := unix.Linkat(src, e.Name, dst, e.Name, 0); err != nil {
				return fmt.Errorf("%s: link: %w", childRel, err)
			}
			continue
		}
		if err := unix.Mkdirat(dst, e.Name, 0o700); err != nil {
			return fmt.Errorf("%s: %w", childRel, err)
		}
		if err := s.linkChildDir(src, dst, e.Name, childRel); err != nil {
			return err
		}
	}
	return nil
}

func (s *stage) linkChildDir(src, dst int, name, rel string) error {
	csrc, err := sys.OpenBeneath(src, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(csrc)
	cdst, err := sys.OpenBeneath(dst, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(cdst)
	return s.linkTree(csrc, cdst, rel)
}

// copyOwnerXattrs gives the directory dst the owner and every xattr of src.
func copyOwnerXattrs(src, dst int, st *unix.Stat_t) error {
	if err := chownFD(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	names, err := sys.Listxattr(src, "")
	if sys.IsNoAttr(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, attr := range names {
		v, err := sys.Getxattr(src, "", attr)
		if sys.IsNoAttr(err) {
			continue
		}
		if err == nil {
			err = sys.Setxattr(dst, "", attr, v, 0)
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	return nil
}

// finishDirs sets the recorded directories' modes and times, the last
// writes of an Apply. A directory removed or replaced since is skipped.
func (s *stage) finishDirs() error {
	for _, d := range s.dirs {
		fd, err := sys.OpenBeneath(s.treeFD, d.rel, unix.O_PATH|unix.O_DIRECTORY, 0)
		if errors.Is(err, unix.ENOENT) || sys.IsNotDir(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
		var st unix.Stat_t
		err = sys.Fstat(fd, &st)
		if err == nil && st.Ino == d.ino {
			err = unix.Fchmodat(unix.AT_FDCWD, sys.ProcPath(fd, ""), d.mode&0o7777, 0)
			if err == nil {
				err = setTimesFD(fd, d.atime, d.mtime)
			}
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
	}
	return nil
}

// commit makes the new tree durable, swaps it with the layer directory and
// removes the old content. Before the exchange the layer directory is
// untouched; the exchange is one atomic step; after it, the layer directory
// is the complete new tree, and what is left to remove is only the old one,
// under the staging name (a crash there leaves it for the next Apply).
func (s *stage) commit() error {
	if err := unix.Syncfs(s.treeFD); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	err := unix.Renameat2(s.parentFD, s.base, s.boxFD, "tree", unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("the filesystem cannot swap directories atomically (renameat2 RENAME_EXCHANGE: %v)", err)
	}
	if err != nil {
		return fmt.Errorf("swapping in the new content: %w", err)
	}
	unix.Fsync(s.parentFD)
	// Past the swap the Apply has happened: a failure to remove the old
	// tree is the next Apply's to clean, not an error of this one.
	sys.RemoveAll(s.parentFD, s.name)
	return nil
}

// abort removes the staging directory; the layer directory was never
// touched.
func (s *stage) abort() {
	if s.parentFD >= 0 && s.boxFD >= 0 {
		sys.RemoveAll(s.parentFD, s.name)
	}
}

func (s *stage) close() {
	for _, fd := range []int{s.treeFD, s.boxFD, s.layerFD, s.parentFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// chownFD sets the owner of fd's object. Without privileges (EPERM) the
// object keeps the caller's ownership, as cow does for rootless copy-up.
func chownFD(fd, uid, gid int) error {
	err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EPERM) && unix.Geteuid() != 0 {
		return nil
	}
	return err
}
