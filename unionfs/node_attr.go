package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// Setattr changes mode, owner, size or times, copying the object up first.
func (n *Node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var a branches.SetAttr
	if m, ok := in.GetMode(); ok {
		a.Mode = &m
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok {
		a.Uid = &uid
	}
	if gok {
		a.Gid = &gid
	}
	if sz, ok := in.GetSize(); ok {
		size := int64(sz)
		a.Size = &size
	}
	if at, ok := in.GetATime(); ok {
		ts := unix.NsecToTimespec(at.UnixNano())
		a.Atime = &ts
	}
	if mt, ok := in.GetMTime(); ok {
		ts := unix.NsecToTimespec(mt.UnixNano())
		a.Mtime = &ts
	}
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		a.Atime = &unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		a.Mtime = &unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	if !n.u.owners.setattr(&a) {
		return n.Getattr(ctx, f, out)
	}
	gen := n.u.stack.Generation()
	var e *branches.Entry
	var err error
	fh := asFile(f)
	if fh == nil {
		fh = n.orphanFile() // fchmod(2) and the like of an unlinked file
	}
	switch {
	case fh != nil:
		fh.follow() // the descriptor must be on the copy the name shows
		e, err = n.u.stack.SetattrOpen(n.current(), fh.fd(), a)
	case n.isOrphan():
		err = syscall.ENOENT
	default:
		e, err = n.u.stack.Setattr(n.current(), a)
	}
	if err != nil {
		return toErrno(err)
	}
	n.set(e, gen)
	if f != nil {
		return n.Getattr(ctx, f, out) // an open file answers from its descriptor
	}
	return n.fillAttr(e, &out.Attr) // e was stat'ed after the change
}
