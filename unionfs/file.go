package unionfs

import (
	"github.com/hanwen/go-fuse/v2/fs"
)

// file is an open union object: go-fuse's loopback file on the serving
// copy's descriptor. With passthrough allowed (the default) the kernel
// reads and writes the backing file itself once it has accepted the
// descriptor; otherwise every read and write comes through the daemon.
type file struct {
	*fs.LoopbackFile
	passthrough bool
}

func (u *union) newFile(fd int) *file {
	return &file{LoopbackFile: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), passthrough: !u.noPassthrough}
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
