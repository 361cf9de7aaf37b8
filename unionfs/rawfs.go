package unionfs

import (
	"context"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-fs/strata/branches"
)

// rawFS is go-fuse's node bridge (fs.NewNodeFS) with what the union needs
// from the FUSE requests that the bridge does not hand to node methods:
//
//   - the caller's umask on MKDIR, MKNOD and CREATE. The mount takes
//     FUSE_POSIX_ACL, and with it FUSE_DONT_MASK: the kernel leaves the
//     umask to the filesystem, which applies it only where the parent has
//     no default ACL (branches.NewObject.Umask). The bridge passes the mode
//     alone, so the umask goes beside the request, keyed by its cancel
//     channel (one per request in flight, and the node method's
//     fuse.Context carries it), for callerUmask.
//   - the ids in ACLs, under uidmapping=/gidmapping=: the kernel checks a
//     named entry against the caller's id on the mount, so GETXATTR shows
//     the ids as the mount's and SETXATTR stores them as the branch's, as
//     it does for owners.
type rawFS struct {
	fuse.RawFileSystem
	owners *owners
}

// umasks holds the umask of each MKDIR, MKNOD and CREATE in flight, by the
// request's cancel channel.
var umasks sync.Map // <-chan struct{} -> uint32

// withUmask runs call with umask recorded for the request of cancel.
func withUmask(cancel <-chan struct{}, umask uint32, call func() fuse.Status) fuse.Status {
	if cancel == nil {
		return call() // not from the kernel's queue: no umask to carry
	}
	umasks.Store(cancel, umask)
	defer umasks.Delete(cancel)
	return call()
}

// callerUmask is the umask of the process whose request ctx serves (0 when
// the request did not carry one).
func callerUmask(ctx context.Context) uint32 {
	if c, ok := ctx.(*fuse.Context); ok && c.Cancel != nil {
		if v, ok := umasks.Load(c.Cancel); ok {
			return v.(uint32)
		}
	}
	return 0
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return withUmask(cancel, in.Umask, func() fuse.Status { return r.RawFileSystem.Mkdir(cancel, in, name, out) })
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return withUmask(cancel, in.Umask, func() fuse.Status { return r.RawFileSystem.Mknod(cancel, in, name, out) })
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return withUmask(cancel, in.Umask, func() fuse.Status { return r.RawFileSystem.Create(cancel, in, name, out) })
}

func isACL(attr string) bool { return attr == branches.ACLAccess || attr == branches.ACLDefault }

func (r *rawFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n, st := r.RawFileSystem.GetXAttr(cancel, header, attr, dest)
	if st == fuse.OK && r.owners != nil && isACL(attr) && int(n) <= len(dest) {
		if v, ok := branches.MapACLIDs(dest[:n], r.owners.uid.showNamed, r.owners.gid.showNamed); ok {
			copy(dest, v)
		}
	}
	return n, st
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if r.owners != nil && isACL(attr) {
		data, _ = branches.MapACLIDs(data, r.owners.uid.store, r.owners.gid.store)
	}
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

// showNamed is the id the mount shows for the id of a named ACL entry:
// the mapping's, as for an owner, but never the squash_to_* id, which
// stands for the owner of everything, not for every user an ACL names.
func (x idTranslator) showNamed(id uint32) uint32 {
	if v, ok := x.m.ToMount(id); ok {
		return v
	}
	return x.overflow
}
