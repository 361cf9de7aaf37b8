package drivertest

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// Tree is what a directory tree holds, one line per object keyed by its
// slash path ("." for the root): type and permissions (as FileMode
// prints them), owner, size and
// content hash, symlink target, device numbers, xattrs (the union's own
// left out), mtime of regular files, and for a file with several links
// the first path of its link set. Directory times are left out: they
// change whenever an entry is added, and layers add entries in different
// orders.
type Tree map[string]string

// Snapshot walks dir without following symlinks (testutil.Walk).
func Snapshot(t testing.TB, dir string) Tree {
	t.Helper()
	tree := Tree{}
	linkSets := map[[2]uint64]string{}
	testutil.Walk(t, dir, func(rel, p string, st *unix.Stat_t) {
		if rel == "lost+found" || strings.HasPrefix(rel, "lost+found/") {
			return // ext4's, on devicemapper layers
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		// FileMode's String: type letter, then setuid/setgid/sticky, then
		// rwx bits ("drwxr-x---", "urwxr-xr-x" for 04755).
		line := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			line += fmt.Sprintf(" size=%d sha256=%.16s mtime=%d.%09d", st.Size, testutil.HashFile(t, p), st.Mtim.Sec, st.Mtim.Nsec)
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := linkSets[key]; ok {
					line += " link-of=" + first
				} else {
					linkSets[key] = rel
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				t.Fatalf("readlink %s: %v", p, err)
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if x := xattrs(t, p); x != "" {
			line += " xattrs{" + x + "}"
		}
		tree[rel] = line
	})
	return tree
}

// Diff lists the paths where two trees differ, for a failure message.
func (a Tree) Diff(b Tree) string {
	var out []string
	for p, la := range a {
		if lb, ok := b[p]; !ok {
			out = append(out, "- "+p+": "+la)
		} else if la != lb {
			out = append(out, "~ "+p+": "+la+"  =>  "+lb)
		}
	}
	for p, lb := range b {
		if _, ok := a[p]; !ok {
			out = append(out, "+ "+p+": "+lb)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// RequireEqual fails the test when the trees differ, listing how.
func RequireEqual(t testing.TB, want, got Tree, msgAndArgs ...any) {
	t.Helper()
	if d := want.Diff(got); d != "" {
		t.Fatalf("%strees differ (- only in the first, + only in the second):\n%s", message(msgAndArgs), d)
	}
}

func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(f, msgAndArgs[1:]...) + ": "
	}
	return fmt.Sprint(msgAndArgs...) + ": "
}

// xattrs lists p's attributes as name=value, sorted, without the union's
// own bookkeeping (overlay.*, strata.*) and security.* (labels the
// filesystem sets on its own).
func xattrs(t testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "" // no xattr support: nothing to compare
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || whiteout.IsUnionXattr(name) || strings.HasPrefix(name, "security.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, v[:m]))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
