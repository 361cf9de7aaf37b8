package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// mountStrataFlags is mountStrata with command-line flags that go before
// the options and the mountpoint ("--whiteout=aufs"). It unmounts in
// t.Cleanup, as mountStrata does.
func mountStrataFlags(t testing.TB, mnt string, flags []string, opts ...string) {
	t.Helper()
	testutil.NeedFUSE(t)
	t.Cleanup(func() { unmountAndWait(t, mnt, true) })
	args := append([]string{"mount"}, flags...)
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	args = append(args, mnt)
	res := runStrata(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("strata %q: exit %d\nstderr: %s", res.Args, res.ExitCode, res.Stderr)
	}
	m := mountsAt(t, mnt)
	require.Len(t, m, 1, "strata mount exited 0, so the mount must be live at %s", mnt)
	require.Equal(t, "fuse.strata", m[0].FSType, "filesystem type at %s", mnt)
}

// writableOpt is the -o value of a writable overlay-syntax union.
func writableOpt(lowers []string, upper, work string) string {
	return lowerdirOpt(lowers) + ",upperdir=" + escapeLowerdir(upper) + ",workdir=" + escapeLowerdir(work)
}

// mountKernelOverlayRW mounts kernel overlayfs read-write over lowers (top
// first) with an upper and a workdir, plus extra options
// ("redirect_dir=on"), and unmounts it in t.Cleanup.
func mountKernelOverlayRW(t testing.TB, mnt string, lowers []string, upper, work string, extra ...string) {
	t.Helper()
	requireKernelOverlay(t)
	for _, p := range append(append([]string{upper, work}, lowers...), extra...) {
		// The kernel reads "\:" in lowerdir only; a comma ends any option.
		require.False(t, strings.ContainsAny(p, ",\\:"), "%q: keep test paths and options free of commas, colons and backslashes", p)
	}
	t.Cleanup(func() { unmountAndWait(t, mnt, false) })
	data := lowerdirOpt(lowers) + ",upperdir=" + upper + ",workdir=" + work
	for _, e := range extra {
		data += "," + e
	}
	err := unix.Mount("overlay", mnt, "overlay", 0, data)
	require.NoError(t, err, "mount -t overlay overlay -o %s %s", data, mnt)
	m := mountsAt(t, mnt)
	require.Len(t, m, 1, "one mount at %s", mnt)
	require.Equal(t, "overlay", m[0].FSType)
}

// branchState is a record of a branch directory detailed enough to notice
// any change: per object its type, mode, owner, content (so size),
// symlink target, device, link count, every xattr (any namespace), mtime
// and ctime.
type branchState struct {
	Root  string
	Lines []string // one per object, in testutil.Walk's order
	Sum   string   // sha256 of Lines
}

// branchFields are what branchState records of each object.
const branchFields = testutil.WithOwner | testutil.WithContent | testutil.WithRdev | testutil.WithNlink |
	testutil.WithMtime | testutil.WithRootMtime | testutil.WithCtime | testutil.WithXattrs

// snapshotBranch records root (see branchState).
func snapshotBranch(t testing.TB, root string) branchState {
	t.Helper()
	snap := testutil.Snapshot(t, root, branchFields)
	sum := sha256.Sum256([]byte(snap))
	return branchState{Root: root, Lines: strings.Split(snap, "\n"), Sum: hex.EncodeToString(sum[:])}
}

// snapshotBranches records each of dirs.
func snapshotBranches(t testing.TB, dirs []string) []branchState {
	t.Helper()
	out := make([]branchState, len(dirs))
	for i, d := range dirs {
		out[i] = snapshotBranch(t, d)
	}
	return out
}

// assertBranchesUnchanged checks that every branch recorded in before is
// exactly as it was (TestLowersUnmodified: the union never writes a lower).
func assertBranchesUnchanged(t testing.TB, before []branchState) {
	t.Helper()
	for _, b := range before {
		after := snapshotBranch(t, b.Root)
		if b.Sum == after.Sum {
			t.Logf("branch %s unchanged (sha256 %.16s, %d objects)", b.Root, b.Sum, len(b.Lines))
			continue
		}
		gone, added := lineChanges(b.Lines, after.Lines)
		t.Errorf("branch %s changed (sha256 %.16s -> %.16s): %d objects as they were, %d as they are now:\n  was: %s\n  now: %s",
			b.Root, b.Sum, after.Sum, len(gone), len(added), capLines(gone, 20, "\n  was: "), capLines(added, 20, "\n  now: "))
	}
}

// lineChanges lists the lines only in before and those only in after, in
// their order: a changed branch shows its changed objects, not all of them.
func lineChanges(before, after []string) (gone, added []string) {
	in := func(lines []string) map[string]bool {
		m := make(map[string]bool, len(lines))
		for _, l := range lines {
			m[l] = true
		}
		return m
	}
	inBefore, inAfter := in(before), in(after)
	for _, l := range before {
		if !inAfter[l] {
			gone = append(gone, l)
		}
	}
	for _, l := range after {
		if !inBefore[l] {
			added = append(added, l)
		}
	}
	return gone, added
}

// capLines joins the first n lines with sep and says how many it left out.
func capLines(lines []string, n int, sep string) string {
	if len(lines) <= n {
		return strings.Join(lines, sep)
	}
	return strings.Join(lines[:n], sep) + fmt.Sprintf("%s(%d more)", sep, len(lines)-n)
}

// fsNode is what the io/fs view of a union can tell about an object, and
// what a walked Tree's Node is reduced to for comparing with it.
type fsNode struct {
	Type     string
	Perm     uint32
	UID, GID uint32
	Size     int64  // regular files and symlinks
	SHA256   string // regular files
	Target   string // symlinks
}

func (n fsNode) String() string {
	return fmt.Sprintf("%s %04o %d:%d size=%d sha256=%.12s target=%q", n.Type, n.Perm, n.UID, n.GID, n.Size, n.SHA256, n.Target)
}

// reduceTree projects a walked tree onto the fields fsNode has.
func reduceTree(tr Tree) map[string]fsNode {
	out := make(map[string]fsNode, len(tr.Nodes))
	for p, n := range tr.Nodes {
		out[p] = fsNode{Type: n.Type, Perm: n.Perm, UID: n.UID, GID: n.GID, Size: n.Size, SHA256: n.SHA256, Target: n.Target}
	}
	return out
}

// walkFS records every object of fsys, without FUSE: fs.WalkDir for the
// names, Lstat and ReadLink of fs.ReadLinkFS for attributes and symlink
// targets, fs.ReadFile for content. Owners come from FileInfo.Sys (the
// union's *branches.Entry).
func walkFS(t testing.TB, fsys fs.FS) map[string]fsNode {
	t.Helper()
	rl, ok := fsys.(fs.ReadLinkFS)
	require.True(t, ok, "the union's io/fs view must implement fs.ReadLinkFS")
	out := map[string]fsNode{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := rl.Lstat(p)
		if err != nil {
			return err
		}
		if d.Type() != info.Mode().Type() {
			return fmt.Errorf("%s: ReadDir type %v, Lstat type %v", p, d.Type(), info.Mode().Type())
		}
		n := fsNode{Type: fsTypeName(info.Mode()), Perm: fsPerm(info.Mode())}
		if e, ok := info.Sys().(*branches.Entry); ok {
			n.UID, n.GID = e.St.Uid, e.St.Gid
		} else {
			return fmt.Errorf("%s: FileInfo.Sys is %T, want *branches.Entry", p, info.Sys())
		}
		switch n.Type {
		case "file":
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			if int64(len(data)) != info.Size() {
				return fmt.Errorf("%s: read %d bytes, Lstat says %d", p, len(data), info.Size())
			}
			n.Size, n.SHA256 = info.Size(), sha256Hex(string(data))
		case "symlink":
			target, err := rl.ReadLink(p)
			if err != nil {
				return err
			}
			n.Size, n.Target = info.Size(), target
		}
		out[p] = n
		return nil
	})
	require.NoError(t, err, "walking the union through io/fs")
	return out
}

// fsTypeName names m's type in branches.TypeName's words.
func fsTypeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "char device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsRegular():
		return "file"
	}
	return fmt.Sprintf("type(%v)", m.Type())
}

// fsPerm turns an fs.FileMode back into stat's 07777 bits.
func fsPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}

// branchObject is one object found by scanBranch.
type branchObject struct {
	Path string // slash-separated, relative to the branch root
	Mode uint32
	Rdev uint64
}

// scanBranch lists every object under root (root excluded), sorted by path,
// reading the branch directly (no union in between).
func scanBranch(t testing.TB, root string) []branchObject {
	t.Helper()
	var out []branchObject
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out = append(out, branchObject{Path: filepath.ToSlash(rel), Mode: st.Mode, Rdev: st.Rdev})
		return nil
	})
	require.NoError(t, err, "walking %s", root)
	return out
}

// isOverlayWhiteout reports whether o is a char device 0/0.
func (o branchObject) isOverlayWhiteout() bool {
	return o.Mode&unix.S_IFMT == unix.S_IFCHR && o.Rdev == 0
}

// isAufsMarker reports whether o's name is an aufs whiteout or marker.
func (o branchObject) isAufsMarker() bool {
	return strings.HasPrefix(path.Base(o.Path), aufsWhiteoutPrefix)
}
