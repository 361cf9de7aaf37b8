package branches_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// aclEnt is one ACL entry: tag (ACL_USER_OBJ 0x01, ACL_USER 0x02,
// ACL_GROUP_OBJ 0x04, ACL_GROUP 0x08, ACL_MASK 0x10, ACL_OTHER 0x20),
// permissions and id.
type aclEnt struct{ tag, perm uint16 }

// aclXattr is the xattr form of an ACL; named entries (tag 2 and 8) get
// the ids in order.
func aclXattr(ents []aclEnt, ids ...uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range ents {
		id := ^uint32(0)
		if e.tag == 0x02 || e.tag == 0x08 {
			id, ids = ids[0], ids[1:]
		}
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

// aclOf reads attr of p: the value, or "none".
func aclOf(t testing.TB, p, attr string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, attr, buf)
	if errors.Is(err, unix.ENODATA) {
		return "none"
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, attr, err)
	}
	return fmt.Sprintf("%x", buf[:n])
}

// needACLs skips where the temp directory's filesystem has no POSIX ACLs
// (it fails under CI=true, where every test must run).
func needACLs(t testing.TB, dir string) {
	t.Helper()
	def := aclXattr([]aclEnt{{0x01, 7}, {0x04, 5}, {0x20, 5}})
	err := unix.Setxattr(dir, branches.ACLDefault, def, 0)
	if err == nil {
		unix.Removexattr(dir, branches.ACLDefault)
		return
	}
	testutil.SkipOrFail(t, fmt.Sprintf("%s: the filesystem has no POSIX ACLs: %v", dir, err))
}

// TestCreateACLsAsKernel checks Create against the kernel itself: an
// object made through the stack in a directory with a default ACL gets
// the mode and ACLs the kernel gives one made in such a directory by a
// process with the same umask, and the daemon's own umask plays no part.
func TestCreateACLsAsKernel(t *testing.T) {
	defaults := map[string][]byte{
		"none":       nil,
		"minimal":    aclXattr([]aclEnt{{0x01, 7}, {0x04, 5}, {0x20, 5}}),
		"minimal-go": aclXattr([]aclEnt{{0x01, 6}, {0x04, 0}, {0x20, 7}}),
		"named-user": aclXattr([]aclEnt{{0x01, 7}, {0x02, 7}, {0x04, 5}, {0x10, 7}, {0x20, 0}}, 1234),
		"named-group-mask": aclXattr([]aclEnt{{0x01, 6}, {0x04, 7}, {0x08, 4}, {0x10, 5}, {0x20, 4}},
			5678),
		"both": aclXattr([]aclEnt{{0x01, 7}, {0x02, 0}, {0x02, 6}, {0x04, 3}, {0x08, 7}, {0x10, 6}, {0x20, 1}},
			1000, 2000, 3000),
	}
	types := map[string]uint32{"file": unix.S_IFREG, "dir": unix.S_IFDIR, "fifo": unix.S_IFIFO}
	modes := []uint32{0o777, 0o640, 0o755, 0o1777, 0o2750}
	umasks := []uint32{0o022, 0o077, 0}

	root := t.TempDir()
	needACLs(t, root)
	native := filepath.Join(root, "native")
	upper, work, lower := filepath.Join(root, "upper"), filepath.Join(root, "work"), filepath.Join(root, "lower")
	for _, d := range []string{native, upper, work, lower} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, def := range defaults {
		for _, d := range []string{filepath.Join(native, name), filepath.Join(lower, name)} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if def != nil {
				if err := unix.Setxattr(d, branches.ACLDefault, def, 0); err != nil {
					t.Fatalf("setting the default ACL of %s: %v", d, err)
				}
			}
		}
	}
	// The workdir's parent has a default ACL too: it must not reach what
	// is built there.
	if err := unix.Setxattr(work, branches.ACLDefault, defaults["named-user"], 0); err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(upperOpts(upper, work, lower), "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	i := 0
	for name := range defaults {
		for tname, typ := range types {
			for _, mode := range modes {
				if typ == unix.S_IFDIR && mode&unix.S_ISGID != 0 {
					continue // mkdir(2) drops it before any filesystem sees it
				}
				for _, umask := range umasks {
					i++
					obj := fmt.Sprintf("%s-%o-%03o-%d", tname, mode, umask, i)
					nat := filepath.Join(native, name, obj)
					old := unix.Umask(int(umask))
					switch typ {
					case unix.S_IFREG:
						var fd int
						if fd, err = unix.Open(nat, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, mode); err == nil {
							unix.Close(fd)
						}
					case unix.S_IFDIR:
						err = unix.Mkdir(nat, mode)
					default:
						err = unix.Mknod(nat, typ|mode, 0)
					}
					// The daemon's umask, which must change nothing.
					unix.Umask(0o027)
					if err != nil {
						unix.Umask(old)
						t.Fatalf("native %s: %v", nat, err)
					}
					e, fd, cerr := s.Create(resolve(t, s, name), obj, branches.NewObject{
						Mode: typ | mode, Uid: uid, Gid: gid, Umask: umask, OpenFlags: unix.O_WRONLY})
					unix.Umask(old)
					if cerr != nil {
						t.Fatalf("Create %s/%s: %v", name, obj, cerr)
					}
					if fd >= 0 {
						unix.Close(fd)
					}
					var want unix.Stat_t
					if err := unix.Lstat(nat, &want); err != nil {
						t.Fatal(err)
					}
					up := filepath.Join(upper, name, obj)
					if e.St.Mode != want.Mode {
						t.Errorf("default ACL %s, %s mode %o umask %03o: mode %o, the kernel gives %o",
							name, tname, mode, umask, e.St.Mode, want.Mode)
					}
					for _, attr := range []string{branches.ACLAccess, branches.ACLDefault} {
						if got, w := aclOf(t, up, attr), aclOf(t, nat, attr); got != w {
							t.Errorf("default ACL %s, %s mode %o umask %03o: %s %s, the kernel gives %s",
								name, tname, mode, umask, attr, got, w)
						}
					}
				}
			}
		}
	}
	if entries, err := os.ReadDir(filepath.Join(work, "strata")); err != nil || len(entries) != 0 {
		t.Errorf("workdir left %v (%v)", entries, err)
	}
	if got := aclOf(t, filepath.Join(work, "strata"), branches.ACLDefault); got != "none" {
		t.Errorf("the workdir kept the default ACL %s", got)
	}
}

// TestCopyUpKeepsACLs: a copy-up carries both ACLs, and a chmod through
// the stack afterwards changes the mask as a chmod does on the branch.
func TestCopyUpKeepsACLs(t *testing.T) {
	root := t.TempDir()
	needACLs(t, root)
	upper, work, lower, native := filepath.Join(root, "upper"), filepath.Join(root, "work"),
		filepath.Join(root, "lower"), filepath.Join(root, "native")
	access := aclXattr([]aclEnt{{0x01, 6}, {0x02, 0}, {0x04, 4}, {0x08, 6}, {0x10, 6}, {0x20, 4}}, 1234, 5678)
	def := aclXattr([]aclEnt{{0x01, 7}, {0x02, 5}, {0x04, 5}, {0x10, 7}, {0x20, 0}}, 1234)
	for _, d := range []string{upper, work, lower, native} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{lower, native} {
		mk(t, dir, "d/", "d/f=data")
		if err := unix.Setxattr(filepath.Join(dir, "d"), branches.ACLDefault, def, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(filepath.Join(dir, "d"), branches.ACLAccess, access, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(filepath.Join(dir, "d/f"), branches.ACLAccess, access, 0); err != nil {
			t.Fatal(err)
		}
	}
	s, err := branches.Open(upperOpts(upper, work, lower), "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	mode := uint32(0o640)
	if _, err := s.Setattr(resolve(t, s, "d/f"), branches.SetAttr{Mode: &mode}); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if err := os.Chmod(filepath.Join(native, "d/f"), os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d", "d/f"} {
		var got, want unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, p), &got); err != nil {
			t.Fatalf("upper copy of %s: %v", p, err)
		}
		if err := unix.Lstat(filepath.Join(native, p), &want); err != nil {
			t.Fatal(err)
		}
		if got.Mode != want.Mode {
			t.Errorf("%s: mode %o, want %o", p, got.Mode, want.Mode)
		}
		for _, attr := range []string{branches.ACLAccess, branches.ACLDefault} {
			if g, w := aclOf(t, filepath.Join(upper, p), attr), aclOf(t, filepath.Join(native, p), attr); g != w {
				t.Errorf("%s %s: %s, want %s", p, attr, g, w)
			}
		}
	}
}

func TestMapACLIDs(t *testing.T) {
	in := aclXattr([]aclEnt{{0x01, 7}, {0x02, 5}, {0x04, 5}, {0x08, 7}, {0x10, 7}, {0x20, 0}}, 10, 20)
	want := aclXattr([]aclEnt{{0x01, 7}, {0x02, 5}, {0x04, 5}, {0x08, 7}, {0x10, 7}, {0x20, 0}}, 1010, 2020)
	got, ok := branches.MapACLIDs(in, func(id uint32) uint32 { return id + 1000 }, func(id uint32) uint32 { return id + 2000 })
	if !ok || string(got) != string(want) {
		t.Errorf("MapACLIDs = %x, %v; want %x", got, ok, want)
	}
	if string(in) == string(got) {
		t.Errorf("MapACLIDs changed its input")
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, {1, 0, 0, 0}, append(aclXattr(nil), 1, 2, 3)} {
		if out, ok := branches.MapACLIDs(bad, nil, nil); ok || string(out) != string(bad) {
			t.Errorf("MapACLIDs(%x) = %x, %v; want it back unchanged, false", bad, out, ok)
		}
	}
}
