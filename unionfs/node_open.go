package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// Open opens the serving copy read-only. Opening a lower file for reading
// never copies it up; opening for writing fails with EROFS on this
// read-only union.
func (n *Node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	// Keep only flags that change how reads behave; creation flags are
	// meaningless on an existing copy.
	keep := int(flags) & (unix.O_DIRECT | unix.O_NOATIME | unix.O_NONBLOCK)
	fd, err := n.stack.OpenLayer(n.entry.Top(), unix.O_RDONLY|keep)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return fs.NewLoopbackFile(fd), 0, 0
}
