package unionfs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

func TestOwners(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	mapped := newOwners(branches.Compat{
		UIDMap: branches.IDMap{{From: 0, To: 1000, Len: 1}, {From: 1, To: 100000, Len: 65536}},
		GIDMap: branches.IDMap{{From: 0, To: 1000, Len: 1}},
	})
	squashed := newOwners(branches.Compat{SquashUID: u32(7), SquashGID: u32(8), StaticNlink: true})
	tests := []struct {
		name               string
		o                  *owners
		uid, gid, mode     uint32
		wantUID, wantGID   uint32
		wantNlink, inNlink uint32
	}{
		{"no options: unchanged", nil, 5, 6, unix.S_IFREG, 5, 6, 3, 3},
		{"mapped root", mapped, 0, 0, unix.S_IFREG, 1000, 1000, 1, 1},
		{"mapped subordinate id", mapped, 33, 0, unix.S_IFREG, 100032, 1000, 1, 1},
		{"unmapped ids show as overflow", mapped, 70000, 5, unix.S_IFREG, mapped.uid.overflow, mapped.gid.overflow, 1, 1},
		{"squash wins, static_nlink on a directory", squashed, 0, 0, unix.S_IFDIR, 7, 8, 1, 5},
		{"static_nlink leaves files alone", squashed, 3, 3, unix.S_IFREG, 7, 8, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := fuse.Attr{Mode: tc.mode | 0o755, Nlink: tc.inNlink, Owner: fuse.Owner{Uid: tc.uid, Gid: tc.gid}}
			tc.o.attr(&a)
			if a.Uid != tc.wantUID || a.Gid != tc.wantGID || a.Nlink != tc.wantNlink {
				t.Errorf("attr: got %d:%d nlink %d, want %d:%d nlink %d", a.Uid, a.Gid, a.Nlink, tc.wantUID, tc.wantGID, tc.wantNlink)
			}
		})
	}

	obj := branches.NewObject{Uid: 100032, Gid: 1000}
	mapped.creator(&obj)
	if obj.Uid != 33 || obj.Gid != 0 {
		t.Errorf("creator 100032:1000 stored as %d:%d, want 33:0", obj.Uid, obj.Gid)
	}
	a := branches.SetAttr{Uid: u32(1000), Gid: u32(5)}
	if !mapped.setattr(&a) || *a.Uid != 0 || *a.Gid != mapped.gid.overflow {
		t.Errorf("chown 1000:5 stored as %d:%d, want 0:overflow", *a.Uid, *a.Gid)
	}
	sq := branches.SetAttr{Uid: u32(1), Gid: u32(2)}
	if squashed.setattr(&sq) {
		t.Errorf("a chown of squashed owners leaves %+v to do, want nothing", sq)
	}
}
