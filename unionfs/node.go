package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// Node is one union object as the kernel sees it. It holds the resolved
// entry; everything it answers comes from the stack.
type Node struct {
	fs.Inode
	stack *branches.Stack
	entry *branches.Entry
}

// Lookup resolves name in the directory n (SEMANTICS.md, Lookup).
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	child, err := n.stack.Lookup(n.entry, name)
	if err != nil {
		return nil, toErrno(err)
	}
	st, err := n.stack.Attr(child)
	if err != nil {
		return nil, toErrno(err)
	}
	out.Attr.FromStat(toSyscallStat(&st))
	node := &Node{stack: n.stack, entry: child}
	return n.NewInode(ctx, node, fs.StableAttr{Mode: child.St.Mode & unix.S_IFMT, Ino: child.Ino}), 0
}

// Getattr reports the serving copy's attributes with the union's inode
// number and link count.
func (n *Node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	st, err := n.stack.Attr(n.entry)
	if err != nil {
		return toErrno(err)
	}
	out.Attr.FromStat(toSyscallStat(&st))
	return 0
}

// Readlink returns a symlink's target from its serving copy.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := n.stack.Readlink(n.entry)
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(target), 0
}

// Statfs reports the top branch's filesystem.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st unix.Statfs_t
	if err := n.stack.Statfs(&st); err != nil {
		return toErrno(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	// Leave room for the ".wh." prefix, as fuse-overlayfs does, so that
	// every name the union accepts can also be whited out in aufs form.
	out.NameLen = uint32(st.Namelen) - 4
	return 0
}

// Access checks mode against the union attributes and the caller. The
// kernel does this itself on default_permissions mounts (strata's default);
// this answers access(2) on mounts without it.
func (n *Node) Access(ctx context.Context, mask uint32) syscall.Errno {
	st, err := n.stack.Attr(n.entry)
	if err != nil {
		return toErrno(err)
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0
	}
	if mask&unix.W_OK != 0 && n.stack.Options().ReadOnly {
		return syscall.EROFS
	}
	if !permitted(st.Mode, st.Uid, st.Gid, caller.Uid, caller.Gid, mask) {
		return syscall.EACCES
	}
	return 0
}

// permitted is the classic owner/group/other check (root may read and
// write anything, and execute what anyone may execute).
func permitted(mode, uid, gid, callerUID, callerGID, mask uint32) bool {
	mask &= 7
	if callerUID == 0 {
		if mask&unix.X_OK == 0 || mode&0o111 != 0 || mode&unix.S_IFMT == unix.S_IFDIR {
			return true
		}
		return false
	}
	var bits uint32
	switch {
	case callerUID == uid:
		bits = mode >> 6
	case callerGID == gid:
		bits = mode >> 3
	default:
		bits = mode
	}
	return bits&mask == mask
}

func toSyscallStat(st *unix.Stat_t) *syscall.Stat_t {
	return &syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		Mtim: syscall.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		Ctim: syscall.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec},
	}
}
