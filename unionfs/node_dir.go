package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// Readdir lists the merged directory. Each entry's d_ino is the inode
// number Lookup gives the same name, because both come from the same
// resolution in branches.
func (n *Node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	children, err := n.u.stack.ReadDir(n.current())
	if err != nil {
		return nil, toErrno(err)
	}
	list := make([]fuse.DirEntry, len(children))
	for i, c := range children {
		list[i] = fuse.DirEntry{Name: c.Name(), Mode: c.St.Mode & unix.S_IFMT, Ino: c.Ino}
	}
	return fs.NewListDirStream(list), 0
}

// Mkdir makes a directory; over a whiteout it is opaque.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.make(ctx, name, newObject(ctx, unix.S_IFDIR|mode&0o7777), out)
}

// Mknod makes a fifo, socket or device node (devices need root).
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	obj := newObject(ctx, mode)
	obj.Rdev = uint64(dev)
	return n.make(ctx, name, obj, out)
}

// Symlink makes a symbolic link.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	obj := newObject(ctx, unix.S_IFLNK|0o777)
	obj.Target = target
	return n.make(ctx, name, obj, out)
}

func (n *Node) make(ctx context.Context, name string, obj branches.NewObject, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.u.owners.creator(&obj)
	e, _, err := n.u.stack.Create(n.current(), name, obj)
	if err != nil {
		return nil, toErrno(err)
	}
	n.u.changed()
	return n.child(ctx, e, out)
}

// Link gives the object of target another name in this directory.
func (n *Node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	e, err := n.u.stack.Link(t.current(), n.current(), name)
	if err != nil {
		return nil, toErrno(err)
	}
	n.u.changed()
	return n.child(ctx, e, out)
}

// Unlink removes a non-directory, leaving a whiteout where a lower copy
// would show.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

// Rmdir removes an empty directory (empty in the merged view).
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

func (n *Node) remove(name string, isDir bool) syscall.Errno {
	err := n.u.stack.Remove(n.current(), name, isDir)
	if err != nil {
		return toErrno(err)
	}
	n.u.changed()
	return 0
}

// Rename moves name to newName in newParent (flags: RENAME_NOREPLACE,
// RENAME_EXCHANGE).
func (n *Node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^(branches.RenameNoReplace|branches.RenameExchange) != 0 {
		return syscall.EINVAL
	}
	err := n.u.stack.Rename(n.current(), name, np.current(), newName, flags)
	if err != nil {
		return toErrno(err)
	}
	n.u.changed()
	return 0
}
