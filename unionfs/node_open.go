package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// Open opens the object; branches.Stack.Open decides whether that copies
// it up.
func (n *Node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	gen := n.u.stack.Generation()
	kept := branches.KeptOpenFlags(int(flags))
	e, fd, copied, err := n.u.stack.Open(n.current(), kept)
	if err != nil {
		return nil, 0, n.u.errno("open", n, err)
	}
	if copied {
		n.set(e, gen)
	}
	fh, fopen, errno := n.openFile(e, fd, kept)
	return fh, fopen, errno
}

// Create makes and opens a new regular file.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	obj := newObject(ctx, unix.S_IFREG|mode&0o7777)
	obj.OpenFlags = branches.KeptOpenFlags(int(flags))
	obj.Umask = callerUmask(ctx)
	n.u.owners.creator(&obj)
	gen := n.u.stack.Generation()
	e, fd, err := n.u.stack.Create(n.current(), name, obj)
	if err != nil {
		return nil, nil, 0, n.u.errno("create "+name+" in", n, err)
	}
	child, errno := n.child(ctx, e, gen, out)
	if errno != 0 {
		unix.Close(fd)
		return nil, nil, 0, errno
	}
	fh, fopen, errno := child.Operations().(*Node).openFile(e, fd, obj.OpenFlags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return child, fh, fopen, 0
}

// newObject describes an object made by the caller of ctx.
func newObject(ctx context.Context, mode uint32) branches.NewObject {
	obj := branches.NewObject{Mode: mode}
	if caller, ok := fuse.FromContext(ctx); ok {
		obj.Uid, obj.Gid = caller.Uid, caller.Gid
	}
	return obj
}

// CopyFileRange copies between two open files inside the kernel
// (copy_file_range on the backing files, which may share extents). The
// destination is open for writing, so it is an upper copy already.
func (n *Node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode,
	fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, dst := asFile(fhIn), asFile(fhOut)
	if in == nil || dst == nil {
		return 0, syscall.ENOTSUP
	}
	in.follow()
	oi, oo := int64(offIn), int64(offOut)
	count, err := unix.CopyFileRange(in.fd(), &oi, dst.fd(), &oo, int(length), int(flags))
	if err != nil {
		return 0, toErrno(err)
	}
	return uint32(count), 0
}
