package branches_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/strata-fs/strata/branches"
)

func u32(v uint32) *uint32 { return &v }

// TestParseOptionsCompat covers every option containers/storage and
// fuse-overlayfs users pass (issue 7), one row each, on top of a fixed
// stack.
func TestParseOptionsCompat(t *testing.T) {
	const stack = "lowerdir=/l1:/l2,upperdir=/u,workdir=/w"
	hour := time.Hour
	half := 500 * time.Millisecond
	tests := []struct {
		name     string
		items    []string
		compat   branches.Compat
		volatile bool
		mount    []string
	}{
		{name: "empty items, as podman writes them", items: []string{",," + stack + ",,volatile,"}, volatile: true},
		{name: "volatile", items: []string{stack + ",volatile"}, volatile: true},
		{name: "fsync=0 is volatile", items: []string{stack + ",fsync=0"}, volatile: true},
		{name: "fsync=1", items: []string{stack + ",fsync=1"}},
		{name: "quoted context with a comma inside", items: []string{stack + `,context="system_u:object_r:container_file_t:s0:c1,c2"`},
			compat: branches.Compat{Context: "system_u:object_r:container_file_t:s0:c1,c2"}},
		{name: "uidmapping and gidmapping, several ranges", items: []string{stack + ",uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1"},
			compat: branches.Compat{
				UIDMap: branches.IDMap{{From: 0, To: 1000, Len: 1}, {From: 1, To: 100000, Len: 65536}},
				GIDMap: branches.IDMap{{From: 0, To: 1000, Len: 1}},
			}},
		{name: "squash_to_uid and squash_to_gid", items: []string{stack + ",squash_to_uid=1000,squash_to_gid=100"},
			compat: branches.Compat{SquashUID: u32(1000), SquashGID: u32(100)}},
		{name: "squash_to_root", items: []string{stack + ",squash_to_root"},
			compat: branches.Compat{SquashUID: u32(0), SquashGID: u32(0)}},
		{name: "xattr_permissions=0", items: []string{stack + ",xattr_permissions=0"}},
		{name: "redirect_dir=on", items: []string{stack + ",redirect_dir=on"}},
		{name: "redirect_dir=off", items: []string{stack + ",redirect_dir=off"}, compat: branches.Compat{NoRedirects: true}},
		{name: "redirect_dir=follow", items: []string{stack + ",redirect_dir=follow"}, compat: branches.Compat{NoRedirects: true}},
		{name: "metacopy=off", items: []string{stack + ",metacopy=off"}},
		{name: "metacopy=on", items: []string{stack + ",metacopy=on"},
			compat: branches.Compat{Ignored: []string{"metacopy=on (strata copies data with metadata on copy-up; the merged view is the same)"}}},
		{name: "static_nlink", items: []string{stack + ",static_nlink"}, compat: branches.Compat{StaticNlink: true}},
		{name: "timeout in seconds", items: []string{stack + ",timeout=3600"}, compat: branches.Compat{Timeout: &hour}},
		{name: "fractional timeout", items: []string{stack + ",timeout=0.5"}, compat: branches.Compat{Timeout: &half}},
		{name: "noxattrs=0, empty plugins", items: []string{stack + ",noxattrs=0,plugins="}},
		{name: "noacl", items: []string{stack + ",noacl"}, compat: branches.Compat{NoACL: true}},
		{name: "debug", items: []string{stack + ",debug"}, compat: branches.Compat{Debug: true}},
		{name: "performance options are ignored, each named once", items: []string{stack + ",threaded=1,fast_ino=1,writeback=0"},
			compat: branches.Compat{Ignored: []string{
				"threaded=1 (go-fuse always serves requests in parallel)",
				"fast_ino=1 (strata's inode numbers are always stable)",
				"writeback=0 (strata does not use the kernel's writeback cache)",
			}}},
		{name: "user mount options reach the kernel", items: []string{stack + ",nodev,nosuid,noexec,allow_other"},
			mount: []string{"nodev", "nosuid", "noexec", "allow_other"}},
		{name: "mount.fuse3 form: rw first, dev,suid last", items: []string{"rw," + stack + ",dev,suid"}, mount: []string{"dev", "suid"}},
		{name: "fstab bookkeeping is accepted quietly", items: []string{stack + ",defaults,noauto,nofail,_netdev,user,x-systemd.automount,comment=strata"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := branches.ParseOptions(tc.items)
			if err != nil {
				t.Fatalf("ParseOptions(%q): %v", tc.items, err)
			}
			want := branches.Options{
				Syntax:   branches.SyntaxOverlay,
				Branches: []branches.BranchSpec{up("/u"), lo("/l1"), lo("/l2")},
				Workdir:  "/w",
				Volatile: tc.volatile,
				Mount:    tc.mount,
				Compat:   tc.compat,
			}
			if g, w := normOptions(got), normOptions(&want); !reflect.DeepEqual(g, w) {
				t.Errorf("ParseOptions(%q)\n got  %+v\n want %+v", tc.items, *g, *w)
			}
		})
	}
}

// TestParseOptionsCompatRefusals: options fuse-overlayfs accepts but whose
// meaning strata cannot give are refused, naming the option and why.
func TestParseOptionsCompatRefusals(t *testing.T) {
	const stack = "lowerdir=/l,upperdir=/u,workdir=/w,"
	tests := []struct {
		item, option, reason string
	}{
		{"uidmapping=0:1000", "uidmapping=0:1000", "FROM:TO:LEN"},
		{"uidmapping=", "uidmapping=", "needs a value"},
		{"gidmapping=0:x:1", "gidmapping=0:x:1", `"x" is not an id`},
		{"uidmapping=0:1000:0", "uidmapping=0:1000:0", "empty"},
		{"uidmapping=4294967295:0:2", "uidmapping=4294967295:0:2", "runs past"},
		{"squash_to_uid=root", "squash_to_uid=root", "numeric id"},
		{"squash_to_gid=", "squash_to_gid=", "numeric id"},
		{"squash_to_root=1", "squash_to_root=1", "takes no value"},
		{"xattr_permissions=2", "xattr_permissions=2", "force_mask"},
		{"xattr_permissions=1", "xattr_permissions=1", "not supported"},
		{"redirect_dir=nofollow", "redirect_dir=nofollow", "always follows"},
		{"redirect_dir=maybe", "redirect_dir=maybe", "on, off or follow"},
		{"noxattrs=1", "noxattrs=1", "xattrs"},
		{"plugins=/usr/libexec/fuse-overlayfs/x.so", "plugins=/usr/libexec/fuse-overlayfs/x.so", "cannot load"},
		{"fsync=2", "fsync=2", "fsync=0 or fsync=1"},
		{"metacopy=yes", "metacopy=yes", "metacopy=on or metacopy=off"},
		{"timeout=soon", "timeout=soon", "seconds"},
		{"timeout=-1", "timeout=-1", "seconds"},
		{`context=""`, `context=""`, "SELinux label"},
		{"no_such_option", "no_such_option", "unknown option"},
	}
	for _, tc := range tests {
		t.Run(tc.item, func(t *testing.T) {
			o, err := branches.ParseOptions([]string{stack + tc.item})
			if err == nil {
				t.Fatalf("ParseOptions(%q) = %+v, want an error", tc.item, *o)
			}
			var oe *branches.OptionError
			if !errors.As(err, &oe) || !errors.Is(err, branches.ErrOption) {
				t.Fatalf("error %v is not an *OptionError wrapping ErrOption", err)
			}
			if oe.Option != tc.option {
				t.Errorf("error names option %q, want %q", oe.Option, tc.option)
			}
			if !strings.Contains(err.Error(), tc.reason) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tc.reason)
			}
		})
	}
}

func TestIDMap(t *testing.T) {
	m := branches.IDMap{{From: 0, To: 1000, Len: 1}, {From: 1, To: 100000, Len: 65536}}
	tests := []struct {
		branch, mount uint32
	}{
		{0, 1000},
		{1, 100000},
		{65536, 165535},
	}
	for _, tc := range tests {
		if got, ok := m.ToMount(tc.branch); !ok || got != tc.mount {
			t.Errorf("ToMount(%d) = %d, %v; want %d", tc.branch, got, ok, tc.mount)
		}
		if got, ok := m.ToBranch(tc.mount); !ok || got != tc.branch {
			t.Errorf("ToBranch(%d) = %d, %v; want %d", tc.mount, got, ok, tc.branch)
		}
	}
	if _, ok := m.ToMount(65537); ok {
		t.Error("ToMount(65537): no range covers it, want not ok")
	}
	if _, ok := m.ToBranch(999); ok {
		t.Error("ToBranch(999): no range covers it, want not ok")
	}
	var none branches.IDMap
	if got, ok := none.ToMount(42); !ok || got != 42 {
		t.Errorf("empty map ToMount(42) = %d, %v; want 42, true", got, ok)
	}
}

// TestCompatKeysIncludeFuseOverlayfs: every key in fuse-overlayfs's own
// option table is known, so none is refused as unknown.
func TestCompatKeysIncludeFuseOverlayfs(t *testing.T) {
	fuseOverlayfs := []string{"redirect_dir", "context", "uidmapping", "gidmapping", "timeout", "threaded",
		"fsync", "fast_ino", "writeback", "noxattrs", "plugins", "xattr_permissions", "squash_to_root",
		"squash_to_uid", "squash_to_gid", "static_nlink", "noacl"}
	known := map[string]bool{}
	for _, k := range branches.CompatKeys() {
		known[k] = true
	}
	for _, k := range fuseOverlayfs {
		if !known[k] {
			t.Errorf("fuse-overlayfs option %q is not in the compatibility table", k)
		}
	}
}
