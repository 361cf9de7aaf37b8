package sys

import (
	"reflect"
	"testing"
)

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:        "/a b",
		`/x\134y`:        `/x\y`,
		`/t\011n`:        "/t\tn",
		`/q"uote`:        `/q"uote`,
		`/plain`:         "/plain",
		`/nl\012it`:      "/nl\nit",
		`/c\072olon`:     "/c:olon",
		"/caf\xc3\xa9":   "/caf\xc3\xa9", // bytes above 0x7f are kept as they are
		"/\xff\\040x":    "/\xff x",      // even when not UTF-8
		`/short\04`:      `/short\04`,    // not an escape: kept
		`/big\777`:       `/big\777`,     // over a byte: kept
		`/not\09octal`:   `/not\09octal`,
		`\040lead\040`:   " lead ",
		`/two\040\040sp`: "/two  sp",
	} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	const data = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
61 22 0:52 / /tmp/with\040space rw,nosuid,nodev master:5 - fuse.strata strata rw,user_id=0,group_id=0,allow_other
62 22 0:53 /sub /mnt/bind\134dir ro - tmpfs tmp\072fs rw
63 22 0:54 / /mnt/o rw - overlay overlay rw,lowerdir=/a\054b:/c,upperdir=/u,workdir=/w
garbage line without separator
64 22 x:y / /bad rw - tmpfs tmpfs rw
`
	want := []Mount{
		{Major: 0, Minor: 21, Root: "/", MountPoint: "/", Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		{Major: 0, Minor: 52, Root: "/", MountPoint: "/tmp/with space", Options: "rw,nosuid,nodev", FSType: "fuse.strata", Source: "strata", SuperOptions: "rw,user_id=0,group_id=0,allow_other"},
		{Major: 0, Minor: 53, Root: "/sub", MountPoint: `/mnt/bind\dir`, Options: "ro", FSType: "tmpfs", Source: "tmp:fs", SuperOptions: "rw"},
		// Super options stay escaped: a comma in a path is \054 there.
		{Major: 0, Minor: 54, Root: "/", MountPoint: "/mnt/o", Options: "rw", FSType: "overlay", Source: "overlay", SuperOptions: `rw,lowerdir=/a\054b:/c,upperdir=/u,workdir=/w`},
	}
	if got := parseMountinfo(data); !reflect.DeepEqual(got, want) {
		t.Errorf("parseMountinfo:\n got %+v\nwant %+v", got, want)
	}
}

func TestMountOf(t *testing.T) {
	mounts := []Mount{
		{MountPoint: "/", FSType: "ext4"},
		{MountPoint: "/mnt", FSType: "tmpfs"},
		{MountPoint: "/mnt/u", FSType: "fuse.strata"},
		{MountPoint: "/mnt/u", FSType: "overlay"}, // stacked later: covers the first
	}
	for p, want := range map[string]string{
		"/":        "ext4",
		"/etc":     "ext4",
		"/mnt":     "tmpfs",
		"/mnt/uu":  "tmpfs",
		"/mnt/u":   "overlay",
		"/mnt/u/x": "overlay",
	} {
		m, ok := MountOf(mounts, p)
		if !ok || m.FSType != want {
			t.Errorf("MountOf(%q) = %v %v, want %s", p, m.FSType, ok, want)
		}
	}
}
