package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// openFlags are the FOPEN flags every opened file gets:
//
//   - NOFLUSH: close(2) sends no FLUSH request. A flush on a local backing
//     file has nothing to report (go-fuse's would dup and close the
//     descriptor), locks are released by their own unlock request, and a
//     FLUSH is one round trip of the seven a create+unlink costs.
//   - KEEP_CACHE: an open keeps the file's page cache. Every change goes
//     through the mount, so the cache cannot be stale (changes made to the
//     branches behind the union's back are not promised to show,
//     SEMANTICS.md); without it each open of a file read through the
//     daemon (passthrough off) would read it from the daemon again.
const openFlags = fuse.FOPEN_NOFLUSH | fuse.FOPEN_KEEP_CACHE

// file is an open union object: go-fuse's loopback file on the serving
// copy's descriptor. With passthrough allowed (the default) the kernel
// reads and writes the backing file itself once it has accepted the
// descriptor; otherwise every read and write comes through the daemon.
type file struct {
	*fs.LoopbackFile
	node        *Node
	passthrough bool
}

// openFile wraps fd, an open copy of n's object, and records it with n.
func (n *Node) openFile(fd int) *file {
	f := &file{LoopbackFile: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), node: n, passthrough: !n.u.noPassthrough}
	n.opened(f)
	return f
}

// Release closes the backing descriptor once the kernel is done with the
// file.
func (f *file) Release(ctx context.Context) syscall.Errno {
	f.node.released(f)
	return f.LoopbackFile.Release(ctx)
}

// PassthroughFd offers the backing descriptor to the kernel, unless
// passthrough is off for this mount.
func (f *file) PassthroughFd() (int, bool) {
	if !f.passthrough {
		return -1, false
	}
	return f.LoopbackFile.PassthroughFd()
}

// fd is the backing file's descriptor, for operations the daemon serves
// itself on the backing file.
func (f *file) fd() int {
	fd, _ := f.LoopbackFile.PassthroughFd()
	return fd
}
