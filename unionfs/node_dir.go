package unionfs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Readdir lists the merged directory. Each entry's d_ino is the inode
// number Lookup gives the same name, because both come from the same
// resolution in branches.
func (n *Node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	children, err := n.stack.ReadDir(n.entry)
	if err != nil {
		return nil, toErrno(err)
	}
	list := make([]fuse.DirEntry, len(children))
	for i, c := range children {
		list[i] = fuse.DirEntry{Name: c.Name(), Mode: c.St.Mode & unix.S_IFMT, Ino: c.Ino}
	}
	return fs.NewListDirStream(list), 0
}
