package unionfs

import (
	"context"
	"log"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// union is what every node of one mount shares.
type union struct {
	stack *branches.Stack
	// owners maps ownership between branches and mount (idmap.go).
	owners *owners
	// noPassthrough keeps reads and writes of open files in the daemon.
	noPassthrough bool
	// logger receives what the mount's user should see: errors that had
	// no errno to give the caller (EIO), and rare decisions.
	logger *log.Logger
	// open lists each node's open files: how each reaches its data
	// decides how the next open may (chooseIOMode), they follow their
	// object across a copy-up, and a node with no name left acts through
	// one. go-fuse keeps a list of its own per node, of handle numbers,
	// private to its bridge: this is the one strata reads.
	openMu sync.Mutex
	open   map[*Node][]*file
}

// Node is one union object as the kernel sees it. It holds the resolved
// entry; everything it answers comes from the stack.
type Node struct {
	fs.Inode
	u *union

	mu    sync.Mutex
	entry *branches.Entry
	// gen is the stack's Generation when entry was resolved, with
	// orphanBit set when the node had no name left then (unlinked while
	// open): its entry's path may lead to another object, so it is served
	// from its open files instead. One word, not two: 200k nodes are
	// 200k times every field (docs/PERFORMANCE.md, daemon RSS).
	gen uint64
}

const (
	orphanBit = 1 << 63
	// staleGen is never a generation the stack reaches: a node holding
	// it resolves its entry again on next use.
	staleGen = orphanBit - 1
)

// newNode makes a node for e, resolved at generation gen (read before e
// was resolved, so that a change racing with the resolution makes the
// node resolve again).
func (u *union) newNode(e *branches.Entry, gen uint64) *Node {
	return &Node{u: u, entry: e, gen: gen}
}

// errno maps err for the kernel, logging what becomes EIO: such an error
// has no errno of its own, and only the log can say what it was.
func (u *union) errno(op string, n *Node, err error) syscall.Errno {
	errno := toErrno(err)
	if errno == syscall.EIO {
		u.logger.Printf("%s %s: %v (EIO to the caller)", op, n.Path(nil), err)
	}
	return errno
}

// current returns the node's entry, resolved again by the node's present
// path when the stack's layout has changed since it was resolved (a
// copy-up can give a directory a new upper copy, a rename moves a node;
// see branches.Stack.Generation). The path may name another object by now
// (renamed over, unlinked and re-created): a node never changes identity,
// so it keeps its last entry unless the path still leads to the same
// inode number.
//
// Only a resolution that finds the node's object makes the entry current
// (records gen). The branch operation of a rename or removal runs before
// go-fuse updates its tree (after the node method returns), so for that
// window the node's path is the old one: resolving it then fails or finds
// another object, and the node stays stale and resolves again on its next
// use, by which time the tree has moved. Recording gen there instead would
// pin the old path until the next layout change, and an unlinked open
// file would never notice it lost its name. The caller in the window gets
// the last entry, whose path nothing new can take before the tree has
// moved: the kernel holds the directories' locks across the whole rename
// or unlink request, tree update included, and the renamed or unlinked
// inode's own lock, which every setattr, setxattr and truncate of it takes
// too. What is left is an operation on a descendant of a renamed
// directory that got the last entry in the window and is still running
// after a new directory and object were made at the old path.
func (n *Node) current() *branches.Entry {
	gen := n.u.stack.Generation()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen&^orphanBit == gen {
		return n.entry
	}
	p := n.Path(nil)
	if p == "" && !n.IsRoot() {
		n.gen = gen | orphanBit
		return n.entry
	}
	if p == "" {
		p = "."
	}
	if e, err := n.u.stack.Resolve(p); err == nil && e.Ino == n.StableAttr().Ino {
		n.entry, n.gen = e, gen
	}
	return n.entry
}

// orphanFile returns an open file of the node when the node has no name
// left (nil otherwise): what an operation on the inode itself acts on
// then, as fchmod(2) of an unlinked file does.
func (n *Node) orphanFile() *file {
	if !n.isOrphan() {
		return nil
	}
	n.u.openMu.Lock()
	defer n.u.openMu.Unlock()
	if files := n.u.open[n]; len(files) > 0 {
		return files[0]
	}
	return nil
}

// isOrphan reports whether the node has no name left.
func (n *Node) isOrphan() bool {
	n.current()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen&orphanBit != 0
}

// hasOpenFiles reports whether the kernel holds files of n open.
func (n *Node) hasOpenFiles() bool {
	n.u.openMu.Lock()
	defer n.u.openMu.Unlock()
	return len(n.u.open[n]) > 0
}

// released drops f from the mount's list of open files by node (kept
// beside the nodes, not in them: most nodes have none; openFile adds).
func (n *Node) released(f *file) {
	n.u.openMu.Lock()
	defer n.u.openMu.Unlock()
	files := n.u.open[n]
	for i, g := range files {
		if g == f {
			files = append(files[:i], files[i+1:]...)
			break
		}
	}
	if len(files) == 0 {
		delete(n.u.open, n)
	} else {
		n.u.open[n] = files
	}
}

// nameGone marks the node's entry stale: the name it was resolved by was
// removed, and the node lives on under another name or as an open file.
func (n *Node) nameGone() {
	n.mu.Lock()
	n.gen = staleGen
	n.mu.Unlock()
}

// set records the entry an operation produced; gen is the stack's
// Generation read before the operation began. Open files follow the
// object if the operation copied it up.
func (n *Node) set(e *branches.Entry, gen uint64) {
	n.mu.Lock()
	moved := n.entry.Top().Branch != e.Top().Branch
	n.entry, n.gen = e, gen|n.gen&orphanBit // an orphan stays one
	n.mu.Unlock()
	if moved {
		n.followObject(e)
	}
}

// child makes (or finds) the inode for an entry resolved at generation gen
// and fills out.
func (n *Node) child(ctx context.Context, e *branches.Entry, gen uint64, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.fillAttr(e, &out.Attr); errno != 0 {
		return nil, errno
	}
	return n.NewInode(ctx, n.u.newNode(e, gen), fs.StableAttr{Mode: e.St.Mode & unix.S_IFMT, Ino: e.Ino}), 0
}

// Lookup resolves name in the directory n (docs/UNION-SEMANTICS.md,
// "Lookup").
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	gen := n.u.stack.Generation()
	child, err := n.u.stack.Lookup(n.current(), name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, child, gen, out)
}

// Getattr reports the serving copy's attributes with the union's inode
// number and link count. An open file answers from its descriptor, which
// stays right after the name is gone.
func (n *Node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if f == nil {
		if of := n.orphanFile(); of != nil {
			f = of
		}
	}
	if fg, ok := f.(fs.FileGetattrer); ok {
		errno := fg.Getattr(ctx, out)
		// The descriptor reports the backing inode; the union's number is
		// the node's.
		out.Attr.Ino = n.StableAttr().Ino
		n.u.owners.attr(&out.Attr)
		return errno
	}
	e, err := n.u.stack.Restat(n.current())
	if err != nil {
		return toErrno(err)
	}
	return n.fillAttr(e, &out.Attr)
}

// fillAttr reports e's attributes as the union shows them: its inode
// number and link count, owners mapped for the mount.
func (n *Node) fillAttr(e *branches.Entry, a *fuse.Attr) syscall.Errno {
	st, err := n.u.stack.Attr(e)
	if err != nil {
		return toErrno(err)
	}
	a.FromStat(toSyscallStat(&st))
	n.u.owners.attr(a)
	return 0
}

// Readlink returns a symlink's target from its serving copy.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := n.u.stack.Readlink(n.current())
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(target), 0
}

// Statfs reports the top branch's filesystem.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st unix.Statfs_t
	if err := n.u.stack.Statfs(&st); err != nil {
		return toErrno(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	out.NameLen = uint32(st.Namelen)
	return 0
}

// Access checks mode against the union attributes and the caller. The
// kernel does this itself on default_permissions mounts (strata's default);
// this answers access(2) on mounts without it.
func (n *Node) Access(ctx context.Context, mask uint32) syscall.Errno {
	st, err := n.u.stack.Attr(n.current())
	if err != nil {
		return toErrno(err)
	}
	n.u.owners.stat(&st)
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0
	}
	if mask&unix.W_OK != 0 && !n.u.stack.Writable() {
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
