package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// paxXattr starts the PAX records that carry xattrs (the form GNU tar,
// Go's archive/tar, Docker and containerd write).
const paxXattr = "SCHILY.xattr."

// headerXattrs returns the xattrs an entry carries, sorted, refusing the
// union's own: a tar must not smuggle markers (opaque, redirect, whiteout)
// past the translation.
func headerXattrs(hdr *tar.Header) ([]xattr, error) {
	var out []xattr
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		switch {
		case name == "":
			return nil, refuse("PAX xattr record with an empty name")
		case whiteout.IsUnionXattr(name):
			return nil, refuse("xattr %s belongs to the union's own bookkeeping; layers carry whiteouts as .wh. entries", name)
		}
		out = append(out, xattr{name, []byte(v)})
	}
	slices.SortFunc(out, func(a, b xattr) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// checkHeader refuses what an entry may not be, before anything is
// written for it.
func (u *unpacker) checkHeader(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		kind := "char"
		if hdr.Typeflag == tar.TypeBlock {
			kind = "block"
		}
		if hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0 {
			return refuse("char device 0/0 is an overlay whiteout; OCI layers spell whiteouts .wh.<name>")
		}
		if !u.opts.AllowDevices {
			return refuse("%s device %d:%d: device nodes are not allowed (ApplyOptions.AllowDevices is off)", kind, hdr.Devmajor, hdr.Devminor)
		}
	case tar.TypeGNUSparse:
		return refuse("sparse entry: OCI layers should not use sparse files, and Apply does not take them")
	default:
		return refuse("unsupported entry type %q", hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return refuse("sparse entry: OCI layers should not use sparse files, and Apply does not take them")
		}
	}
	if hdr.Typeflag == tar.TypeSymlink && (hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 || len(hdr.Linkname) > maxPathLen) {
		return refuse("symlink target is empty, has a NUL byte or is too long")
	}
	_, err := headerXattrs(hdr)
	return err
}

// object creates the entry p (a file, directory, symlink, hard link, fifo
// or device) with its metadata.
func (u *unpacker) object(p entryPath, hdr *tar.Header, content io.Reader) error {
	if err := u.checkHeader(hdr); err != nil {
		return err
	}
	if p.isRoot() {
		return u.dirMetadata(u.root, ".", hdr)
	}
	var link *linkSource
	if hdr.Typeflag == tar.TypeLink {
		var err error
		if link, err = u.linkSource(hdr.Linkname); err != nil {
			return err
		}
		defer link.close()
	}
	dirFD, err := u.openDir(p.parent(), true)
	if err != nil {
		return err
	}
	defer unix.Close(dirFD)
	name := p.base()
	wasWhiteout, err := u.clearWhiteout(dirFD, name)
	if err != nil {
		return err
	}
	old, exists, err := lstatAt(dirFD, name)
	if err != nil {
		return err
	}
	merge := exists && isDir(&old) && hdr.Typeflag == tar.TypeDir
	if exists && !merge {
		if err := sys.RemoveAll(dirFD, name); err != nil {
			return err
		}
	}
	if err := u.create(dirFD, name, p, hdr, content, link, merge); err != nil {
		return err
	}
	u.markCreated(p)
	if wasWhiteout && hdr.Typeflag == tar.TypeDir {
		// A directory where a whiteout was: deleted, then made again in
		// this layer, so the lower copies must not merge into it.
		return u.makeOpaque(dirFD, p)
	}
	return nil
}

// create makes the object name in dirFD.
func (u *unpacker) create(dirFD int, name string, p entryPath, hdr *tar.Header, content io.Reader, link *linkSource, merge bool) error {
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeReg:
		return u.createFile(dirFD, name, hdr, content)
	case tar.TypeDir:
		if !merge {
			if err := unix.Mkdirat(dirFD, name, 0o700); err != nil {
				return err
			}
		}
		fd, err := sys.OpenDirBeneath(dirFD, name)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return u.dirMetadata(fd, p.String(), hdr)
	case tar.TypeLink:
		if err := unix.Linkat(link.dirFD, link.name, dirFD, name, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		if link.plnk && !u.plnk[link.name] {
			u.plnk[link.name] = true
			u.size += link.size
		}
		// The link shares its target's inode and metadata; the tar's copy
		// of them in this header is not applied again.
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dirFD, name); err != nil {
			return err
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(dirFD, name, unix.S_IFIFO|0o600, 0); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		mode := uint32(unix.S_IFCHR)
		if hdr.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(dirFD, name, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	}
	fd, err := sys.OpenBeneath(dirFD, name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := u.setMetadata(fd, hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, sys.ProcPath(fd, ""), perm, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return u.setTimes(dirFD, name, hdr)
}

// createFile writes a regular file's content and metadata.
func (u *unpacker) createFile(dirFD int, name string, hdr *tar.Header, content io.Reader) error {
	fd, err := unix.Openat(dirFD, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	n, err := io.Copy(f, content)
	u.size += n
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return io.ErrUnexpectedEOF
	}
	if err := u.setMetadata(fd, hdr); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return u.setTimes(dirFD, name, hdr)
}

// setMetadata gives the object behind fd (any descriptor, O_PATH included)
// the entry's owner and xattrs. chown comes first: it clears setuid bits,
// so the mode is set after it.
func (u *unpacker) setMetadata(fd int, hdr *tar.Header) error {
	if err := chownFD(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	xattrs, err := headerXattrs(hdr)
	if err != nil {
		return err
	}
	for _, x := range xattrs {
		if err := setXattrFD(fd, x); err != nil {
			return err
		}
	}
	return nil
}

// setXattrFD sets one xattr on fd's object without following a symlink.
// Without privileges a trusted. or security. xattr is left out (EPERM), as
// cow does for rootless copy-up.
func setXattrFD(fd int, x xattr) error {
	err := sys.Setxattr(fd, "", x.Name, x.Value, 0)
	if errors.Is(err, unix.EPERM) && unix.Geteuid() != 0 && !strings.HasPrefix(x.Name, "user.") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xattr %s: %w", x.Name, err)
	}
	return nil
}

// setTimes sets the entry's times on name in dirFD (not following a
// symlink).
func (u *unpacker) setTimes(dirFD int, name string, hdr *tar.Header) error {
	atime, mtime := entryTimes(hdr)
	if err := unix.UtimesNanoAt(dirFD, name, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes: %w", err)
	}
	return nil
}

func entryTimes(hdr *tar.Header) (atime, mtime unix.Timespec) {
	mtime = unix.NsecToTimespec(hdr.ModTime.UnixNano())
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = unix.NsecToTimespec(hdr.AccessTime.UnixNano())
	}
	return atime, mtime
}

// dirMetadata applies a directory entry to the directory fd (rel in the
// tree): owner and xattrs now, replacing the xattrs it had (OCI: a
// directory over a directory takes the entry's attributes), except the
// union's own; mode and times once its content is written.
func (u *unpacker) dirMetadata(fd int, rel string, hdr *tar.Header) error {
	want, err := headerXattrs(hdr)
	if err != nil {
		return err
	}
	have, err := readXattrs(fd, "")
	if err != nil {
		return err
	}
	for _, x := range have {
		if !slices.ContainsFunc(want, func(w xattr) bool { return w.Name == x.Name }) {
			if err := sys.Removexattr(fd, "", x.Name); err != nil && !sys.IsNoAttr(err) {
				return fmt.Errorf("removexattr %s: %w", x.Name, err)
			}
		}
	}
	if err := u.setMetadata(fd, hdr); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := sys.Fstat(fd, &st); err != nil {
		return err
	}
	atime, mtime := entryTimes(hdr)
	u.st.dirs = append(u.st.dirs, dirMeta{rel: rel, ino: st.Ino, mode: uint32(hdr.Mode) & 0o7777, atime: atime, mtime: mtime})
	return nil
}

// linkSource is the existing object a hard-link entry names.
type linkSource struct {
	dirFD int
	name  string
	plnk  bool  // a stored aufs plnk file
	size  int64 // its size, for a plnk file
	owned bool  // dirFD is ours to close
}

func (l *linkSource) close() {
	if l.owned {
		unix.Close(l.dirFD)
	}
}

// linkSource resolves a hard link's target: an object already in the
// layer (written earlier by this tar, or there before), found beneath the
// staging root without passing through a symlink, and neither a directory
// nor a whiteout. Old Docker aufs tars link to /.wh..wh.plnk/<name>; those
// come from the stored plnk files.
func (u *unpacker) linkSource(linkname string) (*linkSource, error) {
	t, err := parseEntryName(linkname)
	if err != nil {
		return nil, refuse("hard link target %q: %v", linkname, err)
	}
	if t.isRoot() {
		return nil, refuse("hard link to the layer root")
	}
	if len(t) == 2 && t[0] == plnkDir {
		if !u.plnkStored(t.base()) {
			return nil, refuse("hard link target %q is not in the layer", linkname)
		}
		fd, err := sys.OpenDirBeneath(u.st.boxFD, "plnk")
		if err != nil {
			return nil, err
		}
		var st unix.Stat_t
		if err := sys.Lstatat(fd, t.base(), &st); err != nil {
			unix.Close(fd)
			return nil, err
		}
		return &linkSource{dirFD: fd, name: t.base(), plnk: true, size: st.Size, owned: true}, nil
	}
	if err := t.checkDirs(); err != nil || whiteout.IsReserved(t.base()) {
		return nil, refuse("hard link target %q is a whiteout or under one", linkname)
	}
	fd, err := u.openDir(t.parent(), false)
	if errors.Is(err, unix.ENOENT) {
		return nil, refuse("hard link target %q is not in the layer", linkname)
	}
	if err != nil {
		if _, ok := errors.AsType[*refusal](err); ok {
			return nil, refuse("hard link target %q: %v", linkname, err)
		}
		return nil, err
	}
	st, ok, err := lstatAt(fd, t.base())
	switch {
	case err != nil:
	case !ok:
		err = refuse("hard link target %q is not in the layer", linkname)
	case isDir(&st):
		err = refuse("hard link target %q is a directory", linkname)
	case whiteout.IsCharWhiteout(&st):
		err = refuse("hard link target %q is a whiteout", linkname)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &linkSource{dirFD: fd, name: t.base(), owned: true}, nil
}

func (u *unpacker) plnkStored(name string) bool {
	_, ok := u.plnk[name]
	return ok
}

// storePlnk keeps an aufs plnk file (a hard-link source in a legacy Docker
// aufs tar) in the staging directory, outside the tree, for the links that
// name it.
func (u *unpacker) storePlnk(name string, hdr *tar.Header, content io.Reader) error {
	if err := u.checkHeader(hdr); err != nil {
		return err
	}
	if err := unix.Mkdirat(u.st.boxFD, "plnk", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	fd, err := sys.OpenDirBeneath(u.st.boxFD, "plnk")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	size := u.size
	err = u.createFile(fd, name, hdr, content)
	u.size = size // counted when a link brings it into the layer
	if err != nil {
		return err
	}
	u.plnk[name] = false
	return nil
}
