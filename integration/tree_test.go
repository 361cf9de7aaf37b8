package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// Node is what the walker records of one object (lstat, never following a
// symlink). Fields that do not apply to the type stay zero. Two trees are
// equal when their Nodes are.
type Node struct {
	Type   string // file, dir, symlink, fifo, socket, chardev, blockdev
	Perm   uint32 // mode & 07777: permission bits with setuid, setgid, sticky
	UID    uint32
	GID    uint32
	Size   int64    // regular files and symlinks
	SHA256 string   // regular files: hex sha256 of the content
	Target string   // symlinks
	Nlink  uint64   // non-directories (a directory's count is union-specific)
	Rdev   uint64   // devices
	Xattrs []string // user.* attributes as `name="value"`, sorted
	Mtime  string   // only with walkOptions.times
}

func (n Node) String() string {
	s := fmt.Sprintf("%s %04o %d:%d", n.Type, n.Perm, n.UID, n.GID)
	switch n.Type {
	case "file":
		s += fmt.Sprintf(" size=%d sha256=%.12s nlink=%d", n.Size, n.SHA256, n.Nlink)
	case "symlink":
		s += fmt.Sprintf(" -> %q", n.Target)
	case "char device", "block device":
		s += fmt.Sprintf(" rdev=%d:%d", unix.Major(n.Rdev), unix.Minor(n.Rdev))
	}
	if len(n.Xattrs) > 0 {
		s += " xattrs=" + strings.Join(n.Xattrs, ",")
	}
	if n.Mtime != "" {
		s += " mtime=" + n.Mtime
	}
	return s
}

// Tree is a walked directory: union-relative paths ("." is the root) to
// what they are.
type Tree struct {
	Root  string
	Nodes map[string]Node
	// Inos and Types are the raw st_ino and S_IFMT of each path, kept out of
	// Nodes because inode numbers differ between any two filesystems.
	Inos   map[string]uint64
	Types  map[string]uint32
	Nlinks map[string]uint64
}

// withoutTimes is a copy of tr with the mtimes left out.
func (tr Tree) withoutTimes() Tree {
	out := tr
	out.Nodes = make(map[string]Node, len(tr.Nodes))
	for p, n := range tr.Nodes {
		n.Mtime = ""
		out.Nodes[p] = n
	}
	return out
}

type walkOptions struct {
	// times records mtimes too: for "this tree did not change" checks,
	// never for comparisons between two filesystems.
	times bool
}

// walkTree records every object under root, root included.
func walkTree(t testing.TB, root string, opts ...walkOptions) Tree {
	t.Helper()
	var o walkOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	tree := Tree{Root: root, Nodes: map[string]Node{}, Inos: map[string]uint64{}, Types: map[string]uint32{}, Nlinks: map[string]uint64{}}
	testutil.Walk(t, root, func(rel, p string, st *unix.Stat_t) {
		t.Helper()
		n := Node{Type: branches.TypeName(st.Mode), Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			n.Size, n.SHA256 = st.Size, testutil.HashFile(t, p)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			require.NoError(t, err, "readlink %s", p)
			n.Size, n.Target = st.Size, target
		case unix.S_IFCHR, unix.S_IFBLK:
			n.Rdev = st.Rdev
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			n.Nlink = st.Nlink
		}
		n.Xattrs = testutil.Xattrs(t, p, "user.")
		if o.times {
			n.Mtime = fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		tree.Nodes[rel], tree.Inos[rel], tree.Types[rel], tree.Nlinks[rel] = n, st.Ino, st.Mode&unix.S_IFMT, st.Nlink
	})
	return tree
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// diffTrees lists every difference between want and got, one line each,
// sorted by path.
func diffTrees(want, got Tree) []string {
	return testutil.DiffMapsFunc(want.Nodes, got.Nodes, diffNode)
}

func diffNode(w, g Node) []string {
	var out []string
	add := func(field string, want, got any) {
		out = append(out, fmt.Sprintf("%s want %v, got %v", field, want, got))
	}
	if w.Type != g.Type {
		add("type", w.Type, g.Type)
		return out
	}
	if w.Perm != g.Perm {
		add("mode", fmt.Sprintf("%04o", w.Perm), fmt.Sprintf("%04o", g.Perm))
	}
	if w.UID != g.UID || w.GID != g.GID {
		add("owner", fmt.Sprintf("%d:%d", w.UID, w.GID), fmt.Sprintf("%d:%d", g.UID, g.GID))
	}
	if w.Size != g.Size {
		add("size", w.Size, g.Size)
	}
	if w.SHA256 != g.SHA256 {
		add("sha256", w.SHA256, g.SHA256)
	}
	if w.Target != g.Target {
		add("symlink target", fmt.Sprintf("%q", w.Target), fmt.Sprintf("%q", g.Target))
	}
	if w.Nlink != g.Nlink {
		add("nlink", w.Nlink, g.Nlink)
	}
	if w.Rdev != g.Rdev {
		add("rdev", w.Rdev, g.Rdev)
	}
	if strings.Join(w.Xattrs, ",") != strings.Join(g.Xattrs, ",") {
		add("user xattrs", w.Xattrs, g.Xattrs)
	}
	if w.Mtime != g.Mtime {
		add("mtime", w.Mtime, g.Mtime)
	}
	return out
}

// assertSameTree reports every difference between want and got.
func assertSameTree(t testing.TB, want, got Tree, what string) bool {
	t.Helper()
	diffs := diffTrees(want, got)
	if len(diffs) == 0 {
		return true
	}
	return assert.Fail(t, fmt.Sprintf("%s: %s (want) and %s (got) differ in %d places:\n\t%s",
		what, want.Root, got.Root, len(diffs), strings.Join(diffs, "\n\t")))
}

// dump is the tree as text, for failure messages.
func (tr Tree) dump() string {
	paths := make([]string, 0, len(tr.Nodes))
	for p := range tr.Nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "\t%s: %v\n", p, tr.Nodes[p])
	}
	return b.String()
}

// children lists the names directly inside dir ("." for the root), sorted.
func (tr Tree) children(dir string) []string {
	var out []string
	for p := range tr.Nodes {
		if p != "." && path.Dir(p) == dir {
			out = append(out, path.Base(p))
		}
	}
	sort.Strings(out)
	return out
}

// dirent is one raw directory entry as getdents64 returns it.
type dirent struct {
	Ino  uint64
	Type uint8
	Name string
}

// readDirents reads the raw entries of dir with getdents64 (os.ReadDir
// does not expose d_ino). "." and ".." are included.
func readDirents(t testing.TB, dir string) []dirent {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err, "open %s", dir)
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		require.NoError(t, err, "getdents %s", dir)
		if n <= 0 {
			return out
		}
		out = append(out, parseDirents(t, buf[:n])...)
	}
}

// parseDirents decodes struct linux_dirent64 records:
// u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[] (NUL-ended).
func parseDirents(t testing.TB, b []byte) []dirent {
	t.Helper()
	const nameOff = 19
	var out []dirent
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), nameOff, "short dirent record")
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		require.True(t, reclen > nameOff && reclen <= len(b), "bad d_reclen %d (%d bytes left)", reclen, len(b))
		name := b[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, dirent{Ino: binary.NativeEndian.Uint64(b[0:8]), Type: b[18], Name: string(name)})
		b = b[reclen:]
	}
	return out
}

// direntType is the DT_* value that matches an S_IFMT value.
func direntType(ifmt uint32) uint8 {
	switch ifmt {
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_UNKNOWN
}

// checkInodes checks the rules of docs/UNION-SEMANTICS.md, "Identity" on a
// mounted union already walked into tree: readdir's d_ino (and d_type) equal
// lstat's st_ino (and type) for every entry; distinct objects have distinct
// st_ino; the names of each hard-link group share one st_ino and report
// st_nlink equal to the group's size.
func checkInodes(t testing.TB, tree Tree, hardlinks [][]string) {
	t.Helper()
	for rel, ifmt := range tree.Types {
		if ifmt != unix.S_IFDIR {
			continue
		}
		dir := filepath.Join(tree.Root, filepath.FromSlash(rel))
		seen := 0
		for _, d := range readDirents(t, dir) {
			if d.Name == "." || d.Name == ".." {
				continue
			}
			seen++
			child := path.Join(rel, d.Name)
			ino, ok := tree.Inos[child]
			if !assert.True(t, ok, "readdir of %s lists %q, which the walk did not see", rel, d.Name) {
				continue
			}
			assert.Equal(t, ino, d.Ino, "%s: readdir d_ino differs from lstat st_ino", child)
			if d.Type != unix.DT_UNKNOWN {
				assert.Equal(t, direntType(tree.Types[child]), d.Type, "%s: readdir d_type differs from lstat's type", child)
			}
		}
		assert.Equal(t, len(tree.children(rel)), seen, "%s: entries listed by getdents", rel)
	}

	linked := map[string]int{} // path -> group index
	for i, g := range hardlinks {
		for _, p := range g {
			linked[p] = i
		}
	}
	byIno := map[uint64][]string{}
	for p, ino := range tree.Inos {
		byIno[ino] = append(byIno[ino], p)
	}
	for ino, paths := range byIno {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		g, ok := linked[paths[0]]
		same := ok
		for _, p := range paths {
			if gp, ok := linked[p]; !ok || gp != g {
				same = false
			}
		}
		assert.True(t, same, "st_ino %d is shared by %v, which are not one hard-link group", ino, paths)
	}
	for _, g := range hardlinks {
		for _, p := range g {
			require.Contains(t, tree.Inos, p, "hard link %s", p)
			assert.Equal(t, tree.Inos[g[0]], tree.Inos[p], "hard links %s and %s must share st_ino", g[0], p)
			assert.Equal(t, uint64(len(g)), tree.Nodes[p].Nlink, "%s: st_nlink of a %d-name hard-link group", p, len(g))
		}
	}
}

// checkDirNlink checks the directory link count on a walked union: 2
// plus the number of visible subdirectories (docs/UNION-SEMANTICS.md,
// "Identity").
func checkDirNlink(t testing.TB, tree Tree) {
	t.Helper()
	for rel, ifmt := range tree.Types {
		if ifmt != unix.S_IFDIR {
			continue
		}
		subdirs := 0
		for _, c := range tree.children(rel) {
			if tree.Types[path.Join(rel, c)] == unix.S_IFDIR {
				subdirs++
			}
		}
		assert.Equal(t, uint64(2+subdirs), tree.Nlinks[rel], "%s: directory st_nlink with %d visible subdirectories", rel, subdirs)
	}
}
