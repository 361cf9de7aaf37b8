package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// The union matrix for explain, in three branches (upper, lower1 in aufs
// form, lower2): every case side by side. The write workload then adds a
// copy-up, a directory rename and a removal through the mount.
var (
	explainUpper = Layer{
		File("up", "U"), File("both", "U"),
		Whiteout("wc"), File(".wh.wa", ""), // overlay and aufs whiteouts
		File("xd/w", "", Xattr("trusted.overlay.whiteout", "y")), Dir("xd", Xattr("trusted.overlay.opaque", "x")), // xattr whiteout
		Dir("od", Opaque()), Dir("oa"), File("oa/"+aufsOpaqueName, ""), // opaque dirs
		File("nd", "U"), Dir("dn"), // non-dir over dir, dir over non-dir
		File("m/a", "U"), Whiteout("m/gone"), // a merged directory
		File("re", "U"), File(".wh.re", ""), // aufs "deleted, then created again"
	}
	explainLower1 = Layer{File("m/b", "L1"), File("m/.wh.z", ""), File("wa", "L1")}
	explainLower2 = Layer{
		File("lo", "L2"), File("both", "L2"), File("wc", "L2"), File("wa", "L2"), File("xd/w", "L2"),
		File("od/f", "L2"), File("oa/f", "L2"), File("nd/f", "L2"), File("dn", "L2"),
		File("m/a", "L2"), File("m/gone", "L2"), File("m/z", "L2"), File("m/c", "L2"),
		File("cu", "L2"), File("old/f", "L2"), File("rmme", "L2"), Symlink("ln", "lo"), Fifo("pipe"),
	}
)

// explainExpect is what the report must say at one path: who serves it,
// or a phrase of why it is missing.
type explainExpect struct {
	path, servedBy, why string
}

var explainExpects = []explainExpect{
	{path: "."},
	{path: "lo", servedBy: "lower2"},
	{path: "up", servedBy: "upper"},
	{path: "both", servedBy: "upper"},
	{path: "wc", why: "wc is whited out in upper (overlay whiteout (char 0/0))"},
	{path: "wa", why: "wa is whited out in upper (aufs whiteout (.wh. file))"},
	{path: "xd/w", why: "xd/w is whited out in upper (overlay whiteout (xattr))"},
	{path: "od", servedBy: "upper"},
	{path: "od/f", why: "lower2's by opaque dir (overlay.opaque xattr) at od in upper"},
	{path: "oa/f", why: "lower2's by opaque dir (.wh..wh..opq) at oa in upper"},
	{path: "nd", servedBy: "upper"},
	{path: "nd/f", why: "nd is a file, not a directory"},
	{path: "dn", servedBy: "upper"},
	{path: "m", servedBy: "upper"},
	{path: "m/gone", why: "whited out in upper"},
	{path: "m/z", why: "m/z is whited out in lower1 (aufs"},
	{path: "re", servedBy: "upper"},
	{path: "cu", servedBy: "upper"},     // after copy-up
	{path: "new", servedBy: "upper"},    // after dir rename
	{path: "new/f", servedBy: "lower2"}, // found through the redirect
	{path: "old", why: "old is whited out in upper (overlay whiteout (char 0/0))"},
	{path: "old/f", why: "old is whited out in upper"},
	{path: "rmme", why: "rmme is whited out in upper"},
	{path: "ln", servedBy: "lower2"},
	{path: "pipe", servedBy: "lower2"},
	{path: "nothere", why: "no branch has nothere"},
}

// explainFixture builds the matrix, mounts it writable, runs the workload
// through the mount, and returns the mountpoint and the -o value.
func explainFixture(t *testing.T, parent string) (mnt, opt string) {
	t.Helper()
	lowers := buildLayers(t, filepath.Join(parent, "lower"), []Layer{explainLower1, explainLower2})
	upper := filepath.Join(parent, "upper")
	buildLayer(t, upper, explainUpper)
	dirs := testutil.Mkdirs(t, filepath.Join(parent, "work"), filepath.Join(parent, "mnt"))
	mnt, opt = dirs[1], writableOpt(lowers, upper, dirs[0])
	mountStrata(t, mnt, opt)
	f, err := os.OpenFile(filepath.Join(mnt, "cu"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("appended")
	require.NoError(t, errors.Join(err, f.Close()))
	require.NoError(t, os.Rename(filepath.Join(mnt, "old"), filepath.Join(mnt, "new")))
	require.NoError(t, os.Remove(filepath.Join(mnt, "rmme")))
	return mnt, opt
}

// TestExplainMountedMatchesOffline explains every path of the matrix
// twice: through the mount's daemon, and offline from the branches
// (-o OPTIONS, no mount). The two JSON documents must be identical, and
// say what the union does at that path.
func TestExplainMountedMatchesOffline(t *testing.T) {
	testutil.NeedFUSE(t)
	mnt, opt := explainFixture(t, t.TempDir())
	for _, want := range explainExpects {
		t.Run(strings.ReplaceAll(want.path, "/", "_"), func(t *testing.T) {
			mounted := runStrata(t, "explain", "--json", filepath.Join(mnt, want.path))
			require.Equal(t, 0, mounted.ExitCode, "mounted explain: %s", mounted.Stderr)
			offline := runStrata(t, "explain", "--json", "-o", opt, want.path)
			require.Equal(t, 0, offline.ExitCode, "offline explain: %s", offline.Stderr)
			require.Equal(t, offline.Stdout, mounted.Stdout, "mounted and offline explain differ")

			var r branches.Report
			require.NoError(t, json.Unmarshal([]byte(mounted.Stdout), &r))
			assert.Len(t, r.Branches, 3)
			if want.why != "" {
				assert.False(t, r.Exists, "%s: %s", want.path, r.Summary)
				assert.Contains(t, r.MissingWhy, want.why)
				_, err := os.Lstat(filepath.Join(mnt, want.path))
				assert.True(t, errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR), "the report says %s is missing; lstat through the mount: %v", want.path, err)
				return
			}
			require.True(t, r.Exists, "%s: %s", want.path, r.Summary)
			if want.servedBy != "" {
				assert.Equal(t, want.servedBy, r.ServedBy.Name)
			}
			var st syscall.Stat_t
			require.NoError(t, syscall.Lstat(filepath.Join(mnt, want.path), &st))
			assert.Equal(t, st.Ino, r.Ino, "the report's inode number is st_ino through the mount")
		})
	}

	// Three cases in detail, as text: what a learner reads.
	text := runStrata(t, "explain", filepath.Join(mnt, "cu"))
	require.Equal(t, 0, text.ExitCode, text.Stderr)
	assert.Contains(t, text.Stdout, "copied up from lower2, where it was cu")
	assert.Regexp(t, `lower2 ro\s+cu\s+file\s+hidden by upper: shadowed by a file`, text.Stdout)
	text = runStrata(t, "explain", filepath.Join(mnt, "new"))
	assert.Contains(t, text.Stdout, "renamed directory: its lower copies are at /old")
	assert.Regexp(t, `lower2 ro\s+old\s+dir\s+merged`, text.Stdout)
	text = runStrata(t, "explain", filepath.Join(mnt, "m"))
	assert.Contains(t, text.Stdout, "hides below: gone (overlay whiteout (char 0/0))")
	assert.Contains(t, text.Stdout, "= a, b, c")
	assert.NotContains(t, text.Stdout, "\x1b[", "no colour when stdout is not a terminal")
}

// TestExplainBadInput: a path outside any strata mount, bad options, and a
// path leaving the union each fail with one line naming the problem.
func TestExplainBadInput(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", tmp}, "is not inside a strata mount"},
		{[]string{"explain", "-o", "lowerdir=" + filepath.Join(tmp, "missing"), "x"}, "does not exist"},
		{[]string{"explain", "-o", "lowerdir=" + tmp, "../etc/passwd"}, "may not contain '..'"},
		{[]string{"explain"}, "needs exactly one PATH"},
	} {
		res := runStrata(t, tc.args...)
		assert.NotEqual(t, 0, res.ExitCode, "%q", tc.args)
		assert.Contains(t, res.Stderr, tc.want, "%q", tc.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(res.Stderr), "\n")+1, "one line: %q", res.Stderr)
	}
}

// TestExplainChannelRefusesOtherUsers: the explain channel of a mount made
// by root answers root, and refuses an unprivileged user (uid 65534, set
// with syscall.Credential on the child), for explain and for the trace
// toggle alike; the refusal comes from the daemon.
func TestExplainChannelRefusesOtherUsers(t *testing.T) {
	testutil.NeedFUSE(t)
	// A directory the unprivileged user can reach, for the binary and the
	// mount (t.TempDir is root's alone).
	shared, err := os.MkdirTemp("", "strata-explain-refuse-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(shared) })
	require.NoError(t, os.Chmod(shared, 0o755))
	bin := filepath.Join(shared, "strata")
	data, err := os.ReadFile(strataBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	lower := filepath.Join(shared, "lower")
	buildLayer(t, lower, Layer{File("f", "hello")})
	mnt := testutil.Mkdirs(t, filepath.Join(shared, "mnt"))[0]
	mountStrata(t, mnt, "lowerdir="+lower)

	asRoot := runStrata(t, "explain", filepath.Join(mnt, "f"))
	require.Equal(t, 0, asRoot.ExitCode, "root is refused: %s", asRoot.Stderr)

	const nobody = 65534
	for _, args := range [][]string{
		{"explain", filepath.Join(mnt, "f")},
		{"explain", filepath.Join(mnt, "whited-out-or-absent")},
		{"trace", "on", mnt, "-"},
		{"trace", "off", mnt},
	} {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "strata %q as uid %d succeeded: %s", args, nobody, out)
		assert.Contains(t, string(out), "refused by the mount's daemon: uid 65534 is neither root nor the owner of this mount (uid 0)", "strata %q", args)
	}
	asRoot = runStrata(t, "explain", "--json", filepath.Join(mnt, "f"))
	require.Equal(t, 0, asRoot.ExitCode, "the channel still answers root: %s", asRoot.Stderr)
}
