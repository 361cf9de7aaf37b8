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
	uids, gids               branches.IDMap
	squashUID, squashGID     *uint32
	staticNlink              bool
	overflowUID, overflowGID uint32
}

// newOwners returns nil when the options ask for no change.
func newOwners(c branches.Compat) *owners {
	if len(c.UIDMap) == 0 && len(c.GIDMap) == 0 && c.SquashUID == nil && c.SquashGID == nil && !c.StaticNlink {
		return nil
	}
	return &owners{
		uids: c.UIDMap, gids: c.GIDMap,
		squashUID: c.SquashUID, squashGID: c.SquashGID,
		staticNlink: c.StaticNlink,
		overflowUID: overflowID("uid"), overflowGID: overflowID("gid"),
	}
}

// overflowID is the kernel's id for "not mapped here" (65534 unless the
// sysctl says otherwise); an id no range covers shows as it, as in a user
// namespace.
func overflowID(kind string) uint32 {
	data, err := os.ReadFile("/proc/sys/kernel/overflow" + kind)
	if err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32); err == nil {
			return uint32(v)
		}
	}
	return 65534
}

func (o *owners) showUID(id uint32) uint32 {
	if o.squashUID != nil {
		return *o.squashUID
	}
	if v, ok := o.uids.ToMount(id); ok {
		return v
	}
	return o.overflowUID
}

func (o *owners) showGID(id uint32) uint32 {
	if o.squashGID != nil {
		return *o.squashGID
	}
	if v, ok := o.gids.ToMount(id); ok {
		return v
	}
	return o.overflowGID
}

// attr turns attributes read from a branch into what the mount shows.
func (o *owners) attr(a *fuse.Attr) {
	if o == nil {
		return
	}
	a.Uid, a.Gid = o.showUID(a.Uid), o.showGID(a.Gid)
	if o.staticNlink && a.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.Nlink = 1
	}
}

// stat is attr for a stat buffer (access checks).
func (o *owners) stat(st *unix.Stat_t) {
	if o == nil {
		return
	}
	st.Uid, st.Gid = o.showUID(st.Uid), o.showGID(st.Gid)
}

// storeUID maps an owner given through the mount to the id kept in the
// branch; an id no range covers is kept as the overflow id, as
// fuse-overlayfs does.
func (o *owners) storeUID(id uint32) uint32 {
	if v, ok := o.uids.ToBranch(id); ok {
		return v
	}
	return o.overflowUID
}

func (o *owners) storeGID(id uint32) uint32 {
	if v, ok := o.gids.ToBranch(id); ok {
		return v
	}
	return o.overflowGID
}

// creator maps the owner of a new object to the branch's ids.
func (o *owners) creator(obj *branches.NewObject) {
	if o == nil {
		return
	}
	obj.Uid, obj.Gid = o.storeUID(obj.Uid), o.storeGID(obj.Gid)
}

// setattr maps a chown to the branch's ids. A chown of a squashed owner
// succeeds and changes nothing (the mount shows the squash id whatever is
// stored), as with fuse-overlayfs. It reports whether anything is left
// to change.
func (o *owners) setattr(a *branches.SetAttr) bool {
	if o == nil {
		return true
	}
	if a.Uid != nil {
		if o.squashUID != nil {
			a.Uid = nil
		} else {
			v := o.storeUID(*a.Uid)
			a.Uid = &v
		}
	}
	if a.Gid != nil {
		if o.squashGID != nil {
			a.Gid = nil
		} else {
			v := o.storeGID(*a.Gid)
			a.Gid = &v
		}
	}
	return *a != branches.SetAttr{}
}
