package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// OpendirHandle opens the merged directory for listing. The kernel keeps
// the listing in its cache (FOPEN_CACHE_DIR) until the directory changes
// through the mount, as kernel overlay keeps its merged listings.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{node: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is one open directory. The merged listing is resolved on the
// first read (an opened directory is often never read), and READDIRPLUS
// builds each child from the entry the listing resolved rather than
// resolving the name again. go-fuse serialises calls on one handle.
type dirHandle struct {
	node    *Node
	entries []*branches.Entry // nil until the first read
	gen     uint64            // the stack's Generation before the listing
	listed  bool
	next    int // index of the next entry to return
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
)

// Readdirent returns the next entry. Each entry's d_ino is the inode
// number Lookup gives the same name, because both come from the same
// resolution in branches.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !d.listed {
		gen := d.node.u.stack.Generation()
		entries, err := d.node.u.stack.ReadDir(d.node.current())
		if err != nil {
			return nil, toErrno(err)
		}
		d.entries, d.gen, d.listed = entries, gen, true
	}
	if d.next >= len(d.entries) {
		return nil, 0
	}
	e := d.entries[d.next]
	d.next++
	return &fuse.DirEntry{Name: e.Name(), Mode: e.St.Mode & unix.S_IFMT, Ino: e.Ino, Off: uint64(d.next)}, 0
}

// Lookup answers READDIRPLUS for the entry Readdirent just returned,
// from the listing while the stack's layout is as it was when the listing
// was made. After a rename or a copy-up the name may lead elsewhere, and
// the kernel makes a dentry of what READDIRPLUS answers: it is resolved
// again.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.next > 0 && d.next <= len(d.entries) && d.gen == d.node.u.stack.Generation() {
		if e := d.entries[d.next-1]; e.Name() == name {
			return d.node.child(ctx, e, d.gen, out)
		}
	}
	return d.node.Lookup(ctx, name, out)
}

// Seekdir moves to offset off (the Off of the entry before it); 0 lists
// the directory afresh, as rewinddir(3) expects.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		d.entries, d.listed = nil, false
	}
	d.next = int(off)
	return 0
}

// Mkdir makes a directory; over a whiteout it is opaque.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	obj := newObject(ctx, unix.S_IFDIR|mode&0o7777)
	obj.Umask = callerUmask(ctx)
	return n.make(ctx, name, obj, out)
}

// Mknod makes a fifo, socket or device node (devices need root).
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	obj := newObject(ctx, mode)
	obj.Rdev = uint64(dev)
	obj.Umask = callerUmask(ctx)
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
	gen := n.u.stack.Generation()
	e, _, err := n.u.stack.Create(n.current(), name, obj)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, e, gen, out)
}

// Link gives the object of target another name in this directory.
func (n *Node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	gen := n.u.stack.Generation()
	e, err := n.u.stack.Link(t.current(), n.current(), name)
	if err != nil {
		return nil, toErrno(err)
	}
	t.followObject(e) // the link copied the target up
	return n.child(ctx, e, gen, out)
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
	if err := n.u.stack.Remove(n.current(), name, isDir); err != nil {
		return toErrno(err)
	}
	// go-fuse gives one node to every name that shows one inode number (a
	// hard link, or two copies that carry one number), and the node's
	// entry may be this name's: it must resolve again by a name it still
	// has. No other node's entry changed (branches.Stack.Generation).
	if ch := n.GetChild(name); ch != nil {
		if c, ok := ch.Operations().(*Node); ok {
			c.nameGone()
		}
	}
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
	moved, over := n.openChild(name), np.openChild(newName)
	if err := n.u.stack.Rename(n.current(), name, np.current(), newName, flags); err != nil {
		return toErrno(err)
	}
	// A rename copies a lower object up: its open files follow it to the
	// name it has now, before anything else can take that name.
	if moved != nil {
		moved.followName(np, newName)
	}
	if over != nil && flags&branches.RenameExchange != 0 {
		over.followName(n, name)
	}
	return 0
}

// openChild is the node of name in n when it has open files (nil
// otherwise): the node whose files may have to follow a rename.
func (n *Node) openChild(name string) *Node {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	c, ok := ch.Operations().(*Node)
	if !ok || !c.hasOpenFiles() {
		return nil
	}
	return c
}

// followName moves n's open files onto the object name in dir shows,
// when that is n's object.
func (n *Node) followName(dir *Node, name string) {
	e, err := n.u.stack.Lookup(dir.current(), name)
	if err == nil && e.Ino == n.StableAttr().Ino {
		n.followObject(e)
	}
}
