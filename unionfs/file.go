package unionfs

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// openFlags are the FOPEN flags every opened file gets:
//
//   - NOFLUSH: close(2) sends no FLUSH request. A flush on a local backing
//     file has nothing to report (go-fuse's would dup and close the
//     descriptor), locks are released by their own unlock request, and a
//     FLUSH is one round trip of the seven a create+unlink costs.
//   - KEEP_CACHE: an open keeps the file's page cache. Every change goes
//     through the mount, so the cache cannot be stale (changes made to the
//     branches behind the union's back are not promised to show:
//     docs/UNION-SEMANTICS.md, "Out of scope"); without it each open of a
//     file read through the daemon would read it from the daemon again.
//     go-fuse drops it for passthrough opens, which have no page cache of
//     their own.
const openFlags = fuse.FOPEN_NOFLUSH | fuse.FOPEN_KEEP_CACHE

// ioMode is how the kernel reaches an open file's data.
type ioMode uint8

const (
	// viaDaemon: reads and writes come to the daemon and go through the
	// FUSE inode's page cache (the kernel's "cached" io mode).
	viaDaemon ioMode = iota
	// passthrough: the kernel reads and writes the backing file itself.
	passthrough
	// registered: passthrough, on the copy the node's live passthrough
	// opens are on, whatever copy the open was given (see chooseIOMode).
	registered
	// refused: the open fails (EBUSY).
	refused
)

// file is an open union object: go-fuse's loopback file on a copy of the
// node's object. Which copy, and how the kernel reaches it, follows one
// rule (docs/CHOICES.md, "Open files across a copy-up"):
//
//   - The kernel binds a FUSE inode's passthrough opens to one backing
//     file, and opens later passthrough opens of the inode on that file's
//     path with their own flags. A copy in a read-only branch is therefore
//     never passed through on a writable mount: the next open for writing
//     would reach it.
//   - A copy in a read-only branch is read through the daemon instead,
//     and once the object has been copied up the file follows it (follow):
//     a descriptor opened before the copy-up sees the new data, as kernel
//     overlay shows it, and the page cache is shared with every writer.
//   - A copy in a writable branch is passed through, unless the inode has
//     open files read through the daemon: the kernel keeps one io mode per
//     inode, so it is then read and written through the daemon too.
type file struct {
	loopbackOps
	lb   *fs.LoopbackFile
	node *Node
	mode ioMode

	// mu guards branch and serialises follow.
	mu sync.Mutex
	// branch holds the copy the descriptor is open on.
	branch *branches.Branch
	// flags are the open(2) flags the copy was opened with, for
	// reopening the copy that replaces it.
	flags int
}

// loopbackOps are the operations of go-fuse's loopback file that a file
// serves on its descriptor: all but PassthroughFd, which go-fuse takes as
// consent to pass a handle through (passthroughFile), and Statx, which
// would report the backing inode unmapped (without it the kernel asks
// Getattr, which maps it).
type loopbackOps interface {
	fs.FileReader
	fs.FileWriter
	fs.FileWritever
	fs.FileReleaser
	fs.FileGetattrer
	fs.FileGetlker
	fs.FileSetlker
	fs.FileSetlkwer
	fs.FileLseeker
	fs.FileFlusher
	fs.FileFsyncer
	fs.FileSetattrer
	fs.FileAllocater
	fs.FileIoctler
}

// passthroughFile is a file the kernel may pass through: the only handle
// type that offers go-fuse a backing descriptor. go-fuse registers the
// first one per node and reuses that registration for every later
// passthrough open of the node, so offering it is the node's decision
// (Node.openFile), not the file's.
type passthroughFile struct{ *file }

var _ fs.FilePassthroughFder = passthroughFile{}

// PassthroughFd offers the backing descriptor to the kernel.
func (p passthroughFile) PassthroughFd() (int, bool) { return p.lb.PassthroughFd() }

// openFile wraps fd, open on e's serving copy with flags, records it with
// n and returns the handle and the FOPEN flags for the kernel. It takes
// fd over: closes it on failure, or when the open is served by another
// descriptor of the same object.
func (n *Node) openFile(e *branches.Entry, fd int, flags int) (fs.FileHandle, uint32, syscall.Errno) {
	flags = branches.ReopenFlags(flags)
	branch := e.Top().Branch
	n.u.openMu.Lock()
	defer n.u.openMu.Unlock()
	open := n.u.open[n]
	mode := chooseIOMode(!n.u.noPassthrough, n.u.stack.Writable(), branch, open)
	switch mode {
	case refused:
		unix.Close(fd)
		n.u.logger.Printf("open %s: passthrough opens of another copy are live (EBUSY to the caller)", e.Path)
		return nil, 0, syscall.EBUSY
	case registered:
		// The copy of the node's passthrough opens, reopened with this
		// open's flags: the kernel would open that copy's path anyway.
		var g *file
		for _, g = range open {
			if g.mode == passthrough {
				break
			}
		}
		same, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", g.fd()), flags|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			n.u.logger.Printf("open %s: reopening the copy of its passthrough opens: %v", e.Path, err)
			return nil, 0, fs.ToErrno(err)
		}
		fd, branch, mode = same, g.branch, passthrough
	}
	lb := fs.NewLoopbackFile(fd).(*fs.LoopbackFile)
	f := &file{loopbackOps: lb, lb: lb, node: n, mode: mode, branch: branch, flags: flags}
	n.u.open[n] = append(open, f)
	if mode == passthrough {
		return passthroughFile{f}, openFlags, 0
	}
	return f, openFlags, 0
}

// chooseIOMode decides how a new open of a copy in branch b is reached,
// given whether the mount may pass files through, whether it is writable,
// and the node's open files.
//
// A node never mixes passthrough with files served by the daemon: the
// kernel refuses the page cache beside passthrough opens (EIO), and go-fuse
// counts every handle's release against the node's passthrough
// registration, so a daemon-served handle beside passthrough ones would
// unregister the backing file while they still use it, and the next
// passthrough open would fail (EIO). Two opens meet passthrough opens of
// another copy, which only a node resolved to two copies at once reaches:
//   - a lower copy (an entry resolved before a copy-up that a rename or
//     unlink in flight keeps stale): the object is the passthrough opens'
//     upper copy, so the open is served on it (registered);
//   - another writable copy (a link moved a file of a lower rw branch of a
//     multi-rw stack up): the kernel would open the registered copy, which
//     the union no longer shows, so the open fails (refused) until the
//     old opens are closed.
func chooseIOMode(allowPassthrough, writable bool, b *branches.Branch, open []*file) ioMode {
	if !allowPassthrough {
		return viaDaemon
	}
	var pt *file
	for _, g := range open {
		if g.mode == viaDaemon {
			return viaDaemon // the kernel would refuse passthrough (one io mode per inode)
		}
		if g.mode == passthrough {
			pt = g
		}
	}
	switch {
	case pt != nil && pt.branch == b:
		return passthrough
	case pt != nil && b.Perm != branches.RW:
		return registered
	case pt != nil:
		return refused
	case b.Perm != branches.RW && writable:
		return viaDaemon
	}
	return passthrough
}

// Release closes the backing descriptor once the kernel is done with the
// file.
func (f *file) Release(ctx context.Context) syscall.Errno {
	f.node.released(f)
	return f.lb.Release(ctx)
}

// follow moves a file read through the daemon onto the copy the union
// shows for its node now, when its own copy was left behind by a copy-up
// (followTo).
func (f *file) follow() {
	if f.mode == passthrough {
		return
	}
	f.followTo(f.node.current())
}

// followTo moves the file onto e's serving copy when the file is open on a
// copy in a read-only branch and e, the node's object as it is now, is
// served from another branch (it was copied up). The copy opened must
// still be e's object (Stack.OpenObject): a descriptor follows its
// object, never a name that another object has taken since. dup3 swaps
// the open file behind the descriptor number in one step, so a read in
// flight finishes on one copy or the other. Passthrough files never
// follow: they are open on writable copies, which copy-up never replaces.
func (f *file) followTo(e *branches.Entry) {
	if f.mode == passthrough {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.branch.Perm == branches.RW || e.Top().Branch == f.branch || e.St.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	fd, err := f.node.u.stack.OpenObject(e, f.flags)
	if err != nil {
		return // the old copy still holds the data as it was
	}
	defer unix.Close(fd)
	if err := unix.Dup3(fd, f.fd(), unix.O_CLOEXEC); err != nil {
		return
	}
	f.branch = e.Top().Branch
}

// followObject moves the node's files read through the daemon onto e, the
// node's object as an operation left it, while e's path surely still
// leads to it: a copy-up by this node's open, setattr or setxattr, or by a
// rename or link of it. Waiting for the files' next reads instead could
// find the name taken by another object by then, and the copy-up's data
// out of reach.
func (n *Node) followObject(e *branches.Entry) {
	n.u.openMu.Lock()
	files := append([]*file(nil), n.u.open[n]...)
	n.u.openMu.Unlock()
	for _, f := range files {
		f.followTo(e)
	}
}

// Read reads the copy the union shows.
func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.follow()
	return f.lb.Read(ctx, buf, off)
}

// Getattr reports the attributes of the copy the union shows.
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	f.follow()
	return f.lb.Getattr(ctx, out)
}

// Lseek finds data and holes in the copy the union shows.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	f.follow()
	return f.lb.Lseek(ctx, off, whence)
}

// asFile is the file behind a handle this package made (nil for none).
func asFile(h fs.FileHandle) *file {
	switch f := h.(type) {
	case *file:
		return f
	case passthroughFile:
		return f.file
	}
	return nil
}

// fd is the backing file's descriptor, for operations the daemon serves
// itself on the backing file; call follow first where the copy matters.
func (f *file) fd() int {
	fd, _ := f.lb.PassthroughFd()
	return fd
}
