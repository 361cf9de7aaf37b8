package unionfs

import (
	"os"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// owners is how a mount presents ownership, as fuse-overlayfs does for
// containers/storage: uidmapping=/gidmapping= translate every owner the
// kernel sees from the branch's id to the mount's, and every owner a
// caller sets or creates back; squash_to_uid/gid/root show one owner for
// everything. It all happens at run time: nothing in a branch is chowned.
// A nil *owners changes nothing.
type owners struct {
	uid, gid    idTranslator
	staticNlink bool
}

// idTranslator maps one kind of id (uids or gids).
type idTranslator struct {
	m        branches.IDMap
	squash   *uint32
	overflow uint32 // for ids no range covers, as in a user namespace
}

// newOwners returns nil when the options ask for no change.
func newOwners(c branches.Compat) *owners {
	if len(c.UIDMap) == 0 && len(c.GIDMap) == 0 && c.SquashUID == nil && c.SquashGID == nil && !c.StaticNlink {
		return nil
	}
	return &owners{
		uid:         idTranslator{m: c.UIDMap, squash: c.SquashUID, overflow: overflowID("uid")},
		gid:         idTranslator{m: c.GIDMap, squash: c.SquashGID, overflow: overflowID("gid")},
		staticNlink: c.StaticNlink,
	}
}

// overflowID is the kernel's id for "not mapped here" (65534 unless the
// sysctl says otherwise).
func overflowID(kind string) uint32 {
	data, err := os.ReadFile("/proc/sys/kernel/overflow" + kind)
	if err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32); err == nil {
			return uint32(v)
		}
	}
	return 65534
}

// show is the id the mount shows for an id stored in a branch.
func (x idTranslator) show(id uint32) uint32 {
	if x.squash != nil {
		return *x.squash
	}
	if v, ok := x.m.ToMount(id); ok {
		return v
	}
	return x.overflow
}

// store is the id kept in a branch for an owner given through the mount;
// an id no range covers is kept as the overflow id, as fuse-overlayfs
// does.
func (x idTranslator) store(id uint32) uint32 {
	if v, ok := x.m.ToBranch(id); ok {
		return v
	}
	return x.overflow
}

// chown maps the owner a setattr asks for; a chown of a squashed owner is
// dropped: it succeeds and changes nothing (the mount shows the squash id
// whatever is stored), as with fuse-overlayfs.
func (x idTranslator) chown(id *uint32) *uint32 {
	if id == nil || x.squash != nil {
		return nil
	}
	v := x.store(*id)
	return &v
}

// attr turns attributes read from a branch into what the mount shows.
func (o *owners) attr(a *fuse.Attr) {
	if o == nil {
		return
	}
	a.Uid, a.Gid = o.uid.show(a.Uid), o.gid.show(a.Gid)
	if o.staticNlink && a.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.Nlink = 1
	}
}

// stat is attr for a stat buffer (access checks).
func (o *owners) stat(st *unix.Stat_t) {
	if o == nil {
		return
	}
	st.Uid, st.Gid = o.uid.show(st.Uid), o.gid.show(st.Gid)
}

// creator maps the owner of a new object to the branch's ids.
func (o *owners) creator(obj *branches.NewObject) {
	if o == nil {
		return
	}
	obj.Uid, obj.Gid = o.uid.store(obj.Uid), o.gid.store(obj.Gid)
}

// setattr maps a chown to the branch's ids and reports whether anything
// is left to change.
func (o *owners) setattr(a *branches.SetAttr) bool {
	if o == nil {
		return true
	}
	a.Uid, a.Gid = o.uid.chown(a.Uid), o.gid.chown(a.Gid)
	return *a != branches.SetAttr{}
}
