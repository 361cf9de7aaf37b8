package integration

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/internal/testutil"
)

// oracleLayers is a 4-layer stack in the overlay dialect (top first) that
// exercises every rule of docs/UNION-SEMANTICS.md, "Lookup". The kernel
// decides what it must look like; the comments say what the kernel shows.
func oracleLayers() []Layer {
	return []Layer{
		// Layer 0, the top.
		{
			File("a.txt", "top a\n"),            // hides 1:a.txt and 3:a.txt
			Whiteout("gone.txt"),                // whiteout of a file (1 and 3 have it)
			Whiteout("gonedir"),                 // whiteout of a whole dir (2 has it)
			File("merged/top.txt", "top\n"),     // merged with 1, 2, 3
			Whiteout("merged/wh-in-merged.txt"), // whiteout inside a merged dir
			Dir("opq", Opaque()),                // opaque: 1:opq and 2:opq are hidden
			File("opq/only-top.txt", "only top\n"),
			// No whiteout inside opq: the kernel reads a non-merged directory
			// as it is, so its readdir would list the whiteout that its lookup
			// then hides (a kernel quirk, not a union rule).
			Whiteout("never-existed"),              // a whiteout with nothing below it
			File("was-dir", "a file over a dir\n"), // 1 has was-dir/ with children
			Dir("was-file", Mode(0o750)),           // 1 has a file was-file
			File("was-file/inner.txt", "inner\n"),
			Dir("stack"), // 1 has a file "stack", 2 a dir: merge stops at the file
			File("stack/top.txt", "stack top\n"),
			File("reborn.txt", "reborn\n"), // 1 whites it out, 2 has it
			Dir("reborn-dir"),              // 1 whites it out, 2 has it with children
			File("reborn-dir/new.txt", "new\n"),
			Symlink("link-to-a", "a.txt"),
			Symlink("dangling", "no/such/target"),
			Symlink("abs-link", "/etc/hostname"),
			Symlink("owned-link", "a.txt", Owner(1234, 5678)),
			File("hl1", "hard linked\n", Mode(0o640)),
			Hardlink("hl2", "hl1"),
			Fifo("fifo", Mode(0o620)),
			File("modes/zero", "mode 0000\n", Mode(0)),
			File("modes/suid", "#!/bin/sh\n", Mode(0o4755)),
			File("modes/sgid", "sgid\n", Mode(0o2711)),
			File("modes/owned", "owned\n", Mode(0o600), Owner(1234, 5678)),
			Dir("modes/sticky", Mode(0o1777)),
			Dir("modes/private", Mode(0o700), Owner(1234, 5678)),
			File("xattr-file", "with xattrs\n", Xattr("user.test", "file value"), Xattr("user.other", "x")),
			Dir("xattr-dir", Xattr("user.test", "dir value")),
			File("n/a/b/c/top-deep.txt", "top deep\n"),
			File("empty", ""),
		},
		// Layer 1.
		{
			File("a.txt", "layer 1 a\n"),
			File("gone.txt", "layer 1 gone\n"),
			File("merged/l1.txt", "l1\n", Mode(0o600)),
			File("merged/wh-in-merged.txt", "whited out\n"),
			File("merged/sub/l1sub.txt", "l1 sub\n"),
			File("opq/lower1.txt", "hidden by opaque\n"),
			File("was-dir/child.txt", "hidden by file\n"),
			File("was-file", "hidden by dir\n"),
			File("stack", "a file between two dirs\n"),
			Whiteout("reborn.txt"),
			Whiteout("reborn-dir"),
			Dir("l1-opq", Opaque(), Mode(0o711)), // opaque in a middle layer
			File("l1-opq/l1.txt", "l1 opaque child\n"),
			Whiteout("l2dir-gone"), // whiteout of a dir in a middle layer
			File("l1hl/x", "l1 hard link\n"),
			Hardlink("l1hl/y", "l1hl/x"),
			Symlink("dirlink", "merged"),
			File("n/a/b/mid.txt", "mid\n"),
			File("n/a/b/c/l1-deep.txt", "l1 deep\n"),
			Dir("xattr-dir", Xattr("user.test", "lower dir value")), // top copy's xattrs win
		},
		// Layer 2.
		{
			File("gonedir/f", "whited out dir's file\n"),
			File("gonedir/inner/file", "deeper\n"),
			File("merged/l2.txt", "l2\n"),
			File("merged/dir-or-file/x", "a dir in layer 2 over a file in layer 3\n"),
			Dir("merged/sub", Xattr("user.test", "sub in l2")),
			File("merged/sub/l2sub.txt", "l2 sub\n"),
			File("opq/sub/hidden.txt", "hidden by opaque\n"),
			File("stack/deep.txt", "below the file: hidden\n"),
			File("reborn.txt", "old reborn\n"),
			File("reborn-dir/old.txt", "old\n"),
			File("l1-opq/l2.txt", "hidden by the layer 1 opaque dir\n"),
			File("l2dir-gone/x", "whited out in layer 1\n"),
			File("n/a/l2.txt", "l2 in nested\n"),
			File("base-only.txt", "only in layer 2\n", Owner(1234, 5678)),
			Dir("merged", Mode(0o700)),                     // the top copy's mode wins
			Dir("not-opq", Xattr(overlayOpaqueXattr, "n")), // only "y" makes a dir opaque
			File("not-opq/l2.txt", "l2\n"),
		},
		// Layer 3, the bottom.
		{
			File("a.txt", "bottom a\n"),
			File("gone.txt", "bottom gone\n"),
			File("merged/l3.txt", "l3\n"),
			File("merged/dir-or-file", "a file in layer 3\n"),
			File("n/a/b/c/d/bottom.txt", "bottom deep\n"),
			File("rootfile", "bottom root file\n", Owner(1234, 5678), Mode(0o444)),
			Fifo("bottom-fifo"),
			Dir("bottom-opq", Opaque()), // opaque in the bottom layer: nothing to hide
			File("bottom-opq/kept.txt", "kept\n"),
			Dir("not-opq"),
			File("not-opq/bottom.txt", "bottom\n"),
		},
	}
}

// oracleHardlinks are the hard-link groups oracleLayers leaves visible.
var oracleHardlinks = [][]string{{"hl1", "hl2"}, {"l1hl/x", "l1hl/y"}}

// TestKernelOracle checks that strata shows the same tree as kernel
// overlayfs over the same layers: the layers as they are, their aufs-dialect
// copy (through lowerdir= and br=), and a stack that mixes the two dialects.
// It also checks strata's own identity rules (docs/UNION-SEMANTICS.md,
// "Identity") on each mount. Directory st_nlink is left out of the
// comparison: the kernel reports 1 for merged directories, strata 2 +
// subdirectories.
func TestKernelOracle(t *testing.T) {
	requireKernelOverlay(t)
	tmp := t.TempDir()
	layers := oracleLayers()
	ovl := buildLayers(t, filepath.Join(tmp, "ovl"), layers)
	aufsLayers := make([]Layer, len(layers))
	for i, l := range layers {
		aufsLayers[i] = toAufs(l, true)
	}
	aufs := buildLayers(t, filepath.Join(tmp, "aufs"), aufsLayers)
	// Mixed: layers 0 and 2 in the aufs dialect, 1 and 3 in the overlay one.
	mixed := []string{aufs[0], ovl[1], aufs[2], ovl[3]}

	kmnt := testutil.Mkdirs(t, filepath.Join(tmp, "kernel"))[0]
	mountKernelOverlay(t, kmnt, ovl...)
	// With mtimes: strata over the very same files must report the same
	// times as the kernel. The copies have their own times.
	kernel := walkTree(t, kmnt, walkOptions{times: true})
	checkOracleSanity(t, kernel)

	cases := []struct {
		name      string
		opt       string
		sameFiles bool   // the kernel's own layers: compare mtimes too
		branches  string // mounts of the same branches must agree on st_ino
	}{
		{"overlay-lowerdir", lowerdirOpt(ovl), true, "ovl"},
		{"overlay-br", brOpt(ovl), true, "ovl"},
		{"aufs-lowerdir", lowerdirOpt(aufs), false, "aufs"},
		{"aufs-br", brOpt(aufs), false, "aufs"},
		{"mixed-lowerdir", lowerdirOpt(mixed), false, "mixed"},
		{"mixed-br", brOpt(mixed), false, "mixed"},
	}
	inos := map[string]Tree{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mnt := testutil.Mkdirs(t, filepath.Join(tmp, "strata-"+tc.name))[0]
			before := walkLayers(t, tmp)
			mountStrata(t, mnt, tc.opt)
			got := walkTree(t, mnt, walkOptions{times: tc.sameFiles})
			want := kernel
			if !tc.sameFiles {
				want = kernel.withoutTimes()
			}
			if !assertSameTree(t, want, got, "strata ("+tc.name+") vs kernel overlay") {
				t.Logf("kernel tree:\n%sstrata tree:\n%s", want.dump(), got.dump())
			}
			checkInodes(t, got, oracleHardlinks)
			checkDirNlink(t, got)
			if prev, ok := inos[tc.branches]; ok {
				assert.Equal(t, prev.Inos, got.Inos, "st_ino must be the same on every mount of the same branches (docs/UNION-SEMANTICS.md, Identity)")
			}
			inos[tc.branches] = got
			// A read-only union never writes to its branches.
			unmountAndWait(t, mnt, true)
			for i, after := range walkLayers(t, tmp) {
				assertSameTree(t, before[i], after, "layers before and after mounting strata")
			}
		})
	}
}

// TestKernelOracleEdges compares strata with kernel overlayfs on small
// stacks, each about one corner of the format.
func TestKernelOracleEdges(t *testing.T) {
	requireKernelOverlay(t)
	big := make([]byte, 3<<20+17) // several FUSE reads, odd length
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	manyFiles := Layer{File("many/lower-only", "from layer 0\n")}
	for i := 0; i < 3000; i++ { // several getdents calls
		manyFiles = append(manyFiles, File(fmt.Sprintf("many/%s-%04d", strings.Repeat("n", 40), i), ""))
	}
	edges := []struct {
		name      string
		layers    []Layer
		hardlinks [][]string
		dirNames  []string // directory names of the layers (default 0, 1, ...)
	}{
		{name: "root attributes from the top layer", layers: []Layer{
			{Dir(".", Mode(0o750), Owner(1234, 5678), Xattr("user.root", "top")), File("a", "a\n")},
			{Dir(".", Mode(0o700), Xattr("user.root", "lower")), File("b", "b\n")},
		}},
		{name: "opaque root of a lower layer", layers: []Layer{
			{File("a", "a\n")},
			{Dir(".", Opaque()), File("b", "b\n")},
			{File("c", "the kernel ignores opaque on a layer root\n")},
		}},
		{name: "xattr whiteouts", layers: []Layer{
			// Kernel 6.7+: an empty file with overlay.whiteout inside a
			// directory with overlay.opaque=x is a whiteout.
			{Dir("d", Xattr(overlayOpaqueXattr, "x")), File("d/wh", "", Xattr("trusted.overlay.whiteout", "")), File("d/keep", "keep\n")},
			{File("d/wh", "whited out\n"), File("d/other", "other\n")},
		}},
		{name: "devices and sockets", layers: []Layer{
			{CharDev("dev/null", 1, 3, Mode(0o666)), BlockDev("dev/loop0", 7, 0, Mode(0o660), Owner(0, 6)), Socket("run/sock")},
			{CharDev("dev/weird", 0, 1), Socket("run/lower.sock", Mode(0o700))},
		}},
		{name: "big files and directories and odd names", layers: []Layer{
			append(Layer{
				File("big", string(big)),
				File(strings.Repeat("L", 255), "a 255-byte name\n"),
				File("sp ace\nnew line\ttab", "odd name\n"),
				File("ünïcödé-名前", "utf-8 name\n"),
				Symlink("long-link", strings.Repeat("abcdefghi/", 400)),
				File("xattrs", "", Xattr("user.big", strings.Repeat("B", 2000)), Xattr("user.empty", ""),
					Xattr("user.bin", "\x00\x01\xff"), Xattr("user."+strings.Repeat("k", 200), "long name")),
			}, manyFiles...),
			{File(strings.Repeat("M", 255), "another 255-byte name\n"), File("many/lower-too", "from layer 1\n")},
		}},
		{name: "colon in a layer path", dirNames: []string{"top:colon", "bottom"}, layers: []Layer{
			{File("a", "top\n")},
			{File("a", "bottom\n"), File("b", "bottom b\n")},
		}},
	}
	for _, tc := range edges {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			dirs := make([]string, len(tc.layers))
			for i, l := range tc.layers {
				name := strconv.Itoa(i)
				if tc.dirNames != nil {
					name = tc.dirNames[i]
				}
				dirs[i] = filepath.Join(tmp, name)
				buildLayer(t, dirs[i], l)
			}
			kmnt := testutil.Mkdirs(t, filepath.Join(tmp, "kernel"))[0]
			mountKernelOverlay(t, kmnt, dirs...)
			kernel := walkTree(t, kmnt, walkOptions{times: true})
			mnt := testutil.Mkdirs(t, filepath.Join(tmp, "strata"))[0]
			mountStrata(t, mnt, lowerdirOpt(dirs))
			got := walkTree(t, mnt, walkOptions{times: true})
			if !assertSameTree(t, kernel, got, "strata vs kernel overlay") && len(got.Nodes) < 100 {
				t.Logf("kernel tree:\n%sstrata tree:\n%s", kernel.dump(), got.dump())
			}
			checkInodes(t, got, tc.hardlinks)
			checkDirNlink(t, got)
		})
	}
}

// escapeLowerdir escapes a path for a lowerdir= or br= list, where a colon
// separates paths (strata and the kernel both read "\:").
func escapeLowerdir(p string) string {
	return strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(p)
}

func lowerdirOpt(dirs []string) string {
	esc := make([]string, len(dirs))
	for i, d := range dirs {
		esc[i] = escapeLowerdir(d)
	}
	return "lowerdir=" + strings.Join(esc, ":")
}

func brOpt(dirs []string) string {
	parts := make([]string, len(dirs))
	for i, d := range dirs {
		parts[i] = escapeLowerdir(d) + "=ro"
	}
	return "br=" + strings.Join(parts, ":")
}

// walkLayers records both copies of the layers, mtimes included.
func walkLayers(t *testing.T, tmp string) []Tree {
	return []Tree{
		walkTree(t, filepath.Join(tmp, "ovl"), walkOptions{times: true}),
		walkTree(t, filepath.Join(tmp, "aufs"), walkOptions{times: true}),
	}
}

// checkOracleSanity spot-checks the kernel's view, so that a broken fixture
// (or a kernel mount that is not what we think) cannot make the comparison
// pass vacuously.
func checkOracleSanity(t *testing.T, k Tree) {
	t.Helper()
	require.Greater(t, len(k.Nodes), 40, "kernel tree:\n%s", k.dump())
	assert.Equal(t, sha256Hex("top a\n"), k.Nodes["a.txt"].SHA256)
	assert.Equal(t, []string{"kept.txt"}, k.children("bottom-opq"))
	assert.Equal(t, []string{"bottom.txt", "l2.txt"}, k.children("not-opq"))
	for _, p := range []string{"never-existed", "gone.txt", "gonedir", "merged/wh-in-merged.txt", "l2dir-gone", "opq/lower1.txt", "stack/deep.txt"} {
		assert.NotContains(t, k.Nodes, p, "kernel shows a hidden name")
	}
	assert.Equal(t, []string{"only-top.txt"}, k.children("opq"))
	assert.Equal(t, []string{"l1.txt"}, k.children("l1-opq"))
	assert.Equal(t, []string{"top.txt"}, k.children("stack"))
	assert.Equal(t, []string{"new.txt"}, k.children("reborn-dir"))
	assert.Equal(t, []string{"dir-or-file", "l1.txt", "l2.txt", "l3.txt", "sub", "top.txt"}, k.children("merged"))
	assert.Equal(t, "file", k.Nodes["was-dir"].Type)
	assert.Equal(t, "dir", k.Nodes["was-file"].Type)
	assert.Equal(t, []string{"x"}, k.children("merged/dir-or-file"))
	assert.Equal(t, uint32(0o4755), k.Nodes["modes/suid"].Perm)
	assert.Equal(t, uint32(0o755), k.Nodes["merged"].Perm, "the top copy's mode")
	assert.Equal(t, "fifo", k.Nodes["fifo"].Type)
	assert.Equal(t, uint64(2), k.Nodes["hl1"].Nlink)
	assert.Equal(t, []string{`user.test="dir value"`}, k.Nodes["xattr-dir"].Xattrs)
	for _, n := range k.Nodes {
		assert.NotEqual(t, "char device", n.Type, "a whiteout leaked into the kernel's view")
	}
}
