package integration

// POSIX ACLs (docs/UNION-SEMANTICS.md, "Access control") through strata and
// through kernel overlay, each over its own copy of the same branches:
// unprivileged users get the same answers, objects created through the union
// get the same modes and ACLs, and both leave the same ACLs in their upper
// branch.

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// aclUser is who runs a command: a uid, a gid and supplementary groups.
type aclUser struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

var (
	aclRoot   = aclUser{name: "root"}
	aclNobody = aclUser{name: "nobody", uid: 65534, gid: 65534}
	// alice is named in the fixture's ACLs, and so is her group 4343.
	aclAlice = aclUser{name: "alice", uid: 4242, gid: 4242, groups: []uint32{4343}}
)

// aclLowerScript builds the lower branch (run as root in it).
const aclLowerScript = `set -e
umask 022
echo secret > secret; chmod 644 secret; setfacl -m u:65534:--- secret
echo group > grp; chmod 640 grp; setfacl -m g:4343:r-- grp
echo masked > masked; chmod 660 masked; setfacl -m g:4343:rw-,m::r-- masked
mkdir shared; chmod 755 shared
setfacl -m u:65534:rwx,u:4242:rwx shared
setfacl -d -m u::rwx,u:4242:rw-,g::r-x,g:4343:rwx,m::rwx,o::r-x shared
mkdir open; chmod 777 open
mkdir cu; setfacl -d -m g:4343:r-x cu
echo chm > cu/chm; chmod 664 cu/chm; setfacl -m u:4242:rw- cu/chm
echo wr > cu/wr; chmod 644 cu/wr; setfacl -m u:4242:rw-,u:65534:--- cu/wr
echo private > sf; chmod 600 sf
mkdir sd; chmod 777 sd
`

// can prints yes or no for each command: whether it succeeded.
const aclCan = `can() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
`

// aclUnion is one union under test: its mountpoint and branches.
type aclUnion struct {
	name              string
	mnt, lower, upper string
}

// runAs runs the shell script as u in dir and returns its output; the
// script itself must succeed.
func runAs(t testing.TB, u aclUser, dir, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if u.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "as %s in %s: %s\n%s", u.name, dir, script, out)
	return string(out)
}

// aclState is, for every object under root, its type and mode, owner and
// both ACLs as getfacl prints them (numeric, no header).
func aclState(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		acl, err := exec.Command("getfacl", "-n", "--omit-header", "--", p).CombinedOutput()
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%s\nmode=%o owner=%d:%d", strings.TrimSpace(string(acl)), st.Mode, st.Uid, st.Gid)
		return nil
	})
	require.NoError(t, err, "walking %s", root)
	return out
}

// assertSameACLs compares two aclStates.
func assertSameACLs(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		assert.Equal(t, want[p], got[p], "%s: %s (kernel overlay, then strata)", what, p)
	}
}

// requireACLTools skips (or fails under CI=true) without getfacl/setfacl.
func requireACLTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"setfacl", "getfacl"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, tool+" not installed (Debian package acl; make deps installs it)")
		}
	}
}

// TestACLAgainstKernelOverlay runs the same steps on strata and on kernel
// overlay, each over its own copy of one fixture, and compares every
// answer, mode and ACL.
func TestACLAgainstKernelOverlay(t *testing.T) {
	requireKernelOverlay(t)
	requireACLTools(t)
	tmp := t.TempDir()
	// The users under test must reach the mounts.
	require.NoError(t, os.Chmod(filepath.Dir(tmp), 0o755))
	require.NoError(t, os.Chmod(tmp, 0o755))
	unions := []*aclUnion{{name: "kernel overlay"}, {name: "strata"}}
	for _, u := range unions {
		base := filepath.Join(tmp, strings.ReplaceAll(u.name, " ", "-"))
		dirs := testutil.Mkdirs(t, base+"/lower", base+"/upper", base+"/work", base+"/mnt")
		u.lower, u.upper, u.mnt = dirs[0], dirs[1], dirs[3]
		runAs(t, aclRoot, u.lower, aclLowerScript)
		require.NoError(t, os.Chmod(u.upper, 0o755))
	}
	lowerBefore := snapshotBranches(t, []string{unions[0].lower, unions[1].lower})
	mountKernelOverlayRW(t, unions[0].mnt, []string{unions[0].lower}, unions[0].upper, filepath.Join(filepath.Dir(unions[0].upper), "work"))
	mountStrata(t, unions[1].mnt, writableOpt([]string{unions[1].lower}, unions[1].upper, filepath.Join(filepath.Dir(unions[1].upper), "work")))

	// same runs script as u on both unions, checks that they answer
	// alike and, when want is not empty, that the answer is want.
	same := func(t *testing.T, u aclUser, script, want string) {
		t.Helper()
		k := runAs(t, u, unions[0].mnt, aclCan+script)
		s := runAs(t, u, unions[1].mnt, aclCan+script)
		assert.Equal(t, k, s, "as %s: %s\n(kernel overlay's answer, then strata's)", u.name, script)
		if want != "" {
			assert.Equal(t, want, k, "as %s on kernel overlay: %s (the test's expectation)", u.name, script)
		}
	}
	// sameUppers compares the objects of both upper branches.
	sameUppers := func(t *testing.T) {
		t.Helper()
		assertSameACLs(t, "upper branch", aclState(t, unions[0].upper), aclState(t, unions[1].upper))
	}

	t.Run("named user deny", func(t *testing.T) {
		same(t, aclNobody, "can cat secret", "no\n")
		same(t, aclAlice, "can cat secret", "yes\n")
	})
	t.Run("named group allow", func(t *testing.T) {
		same(t, aclAlice, "can cat grp", "yes\n")
		same(t, aclNobody, "can cat grp", "no\n")
	})
	t.Run("mask narrows a group entry", func(t *testing.T) {
		same(t, aclAlice, "can cat masked; can sh -c 'echo x >> masked'", "yes\nno\n")
		same(t, aclRoot, "getfacl -n --omit-header masked", "")
	})
	t.Run("default ACL inherited", func(t *testing.T) {
		// With a default ACL the umask plays no part; mkdir -m narrows.
		same(t, aclNobody, `umask 022; echo n > shared/nf; mkdir shared/nd; mkdir -m 700 shared/nd7; mkfifo shared/np
umask 077; echo n > shared/nf77; mkdir shared/nd77
stat -c '%n %a %u:%g' shared/nf shared/nd shared/nd7 shared/np shared/nf77 shared/nd77`,
			"shared/nf 664 65534:65534\nshared/nd 775 65534:65534\nshared/nd7 700 65534:65534\n"+
				"shared/np 664 65534:65534\nshared/nf77 664 65534:65534\nshared/nd77 775 65534:65534\n")
		same(t, aclRoot, "getfacl -n --omit-header shared/nf shared/nd shared/nd7 shared/np shared/nf77 shared/nd77", "")
		// The inherited entries are enforced: u:4242:rw- on the file and
		// the directory (no search, so nothing made in it).
		same(t, aclAlice, "can sh -c 'echo a >> shared/nf'; can cat shared/nf; can mkdir shared/nd/a", "yes\nyes\nno\n")
		same(t, aclAlice, "umask 077; can mkdir shared/ad; can mkdir shared/ad/b", "yes\nyes\n")
		same(t, aclRoot, "getfacl -n --omit-header shared/ad shared/ad/b; stat -c '%a' shared/ad shared/ad/b", "")
		sameUppers(t)
	})
	t.Run("umask without a default ACL", func(t *testing.T) {
		same(t, aclNobody, `umask 022; echo n > open/f22; mkdir open/d22; mkfifo open/p22
umask 077; echo n > open/f77; mkdir open/d77
umask 002; mkdir -m 777 open/d777; mkdir open/d002
stat -c '%n %a' open/f22 open/d22 open/p22 open/f77 open/d77 open/d777 open/d002`,
			"open/f22 644\nopen/d22 755\nopen/p22 644\nopen/f77 600\nopen/d77 700\nopen/d777 777\nopen/d002 775\n")
		same(t, aclAlice, "can cat open/f22; can cat open/f77", "yes\nno\n")
		same(t, aclRoot, "getfacl -n --omit-header open/f22 open/d22 open/f77", "")
		sameUppers(t)
	})
	t.Run("copy-up keeps ACLs", func(t *testing.T) {
		// chmod through the union copies up, and narrows the mask.
		same(t, aclRoot, "chmod 644 cu/chm; getfacl -n --omit-header cu/chm", "")
		same(t, aclAlice, "can cat cu/chm; can sh -c 'echo x >> cu/chm'", "yes\nno\n")
		// A write copies up; the copy keeps the named entries.
		same(t, aclAlice, "can sh -c 'echo x >> cu/wr'; can cat cu/wr", "yes\nyes\n")
		same(t, aclNobody, "can cat cu/wr", "no\n")
		for _, u := range unions {
			for _, p := range []string{"cu", "cu/wr"} {
				want := runAs(t, aclRoot, u.lower, "getfacl -n --omit-header "+p)
				got := runAs(t, aclRoot, u.upper, "getfacl -n --omit-header "+p)
				assert.Equal(t, want, got, "%s: %s: the upper copy's ACLs are the lower's", u.name, p)
			}
			got := runAs(t, aclRoot, u.upper, "getfacl -n --omit-header cu/chm")
			assert.Contains(t, got, "user:4242:rw-\t#effective:r--\n", "%s: the chmod narrowed the upper copy's mask", u.name)
		}
		sameUppers(t)
	})
	t.Run("setfacl lands on the upper copy", func(t *testing.T) {
		same(t, aclNobody, "can cat sf", "no\n")
		same(t, aclRoot, "setfacl -m u:65534:r-- sf && getfacl -n --omit-header sf", "")
		same(t, aclNobody, "can cat sf", "yes\n")
		same(t, aclRoot, "setfacl -x u:65534 secret; setfacl -b grp; getfacl -n --omit-header secret grp", "")
		same(t, aclNobody, "can cat secret", "yes\n")
		same(t, aclAlice, "can cat grp", "no\n")
		// A default ACL set through the union is inherited (setfacl makes
		// it from sd's mode 777 and the entry given).
		same(t, aclRoot, "setfacl -d -m u:4242:rwx sd", "")
		same(t, aclNobody, "umask 022; echo n > sd/x; mkdir sd/y; stat -c '%n %a' sd/x sd/y", "sd/x 666\nsd/y 777\n")
		same(t, aclAlice, "can sh -c 'echo a >> sd/x'", "yes\n")
		for _, u := range unions {
			for _, p := range []string{"sf", "secret", "grp", "sd", "sd/x", "sd/y"} {
				through := runAs(t, aclRoot, u.mnt, "getfacl -n --omit-header "+p)
				upper := runAs(t, aclRoot, u.upper, "getfacl -n --omit-header "+p)
				assert.Equal(t, through, upper, "%s: %s: getfacl through the union shows the upper copy", u.name, p)
			}
		}
		sameUppers(t)
	})
	t.Run("merged views", func(t *testing.T) {
		assertSameACLs(t, "merged view", aclState(t, unions[0].mnt), aclState(t, unions[1].mnt))
	})
	assertBranchesUnchanged(t, lowerBefore)
}

// TestACLIDMapping: under uidmapping=/gidmapping= the ids a named ACL
// entry holds are mapped as owners are: the kernel checks them against
// the caller's id on the mount, getfacl shows the mount's ids, and
// setfacl stores the branch's. (Kernel overlay has no such options.)
func TestACLIDMapping(t *testing.T) {
	testutil.NeedFUSE(t)
	requireACLTools(t)
	tmp := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(tmp), 0o755))
	require.NoError(t, os.Chmod(tmp, 0o755))
	dirs := testutil.Mkdirs(t, tmp+"/lower", tmp+"/upper", tmp+"/work", tmp+"/mnt")
	lower, upper, mnt := dirs[0], dirs[1], dirs[3]
	runAs(t, aclRoot, lower, `set -e
echo f > f; chmod 600 f; setfacl -m u:1000:r--,g:2000:r-- f
mkdir d; chmod 777 d; setfacl -d -m u:1000:rwx d
`)
	require.NoError(t, os.Chmod(upper, 0o755))
	before := snapshotBranches(t, []string{lower})
	mountStrata(t, mnt, writableOpt([]string{lower}, upper, dirs[2])+
		",uidmapping=0:100000:65536,gidmapping=0:100000:65536")

	named := aclUser{name: "uid 101000", uid: 101000, gid: 101000}
	group := aclUser{name: "gid 102000", uid: 105000, gid: 102000}
	branchID := aclUser{name: "uid 1000", uid: 1000, gid: 1000}
	assert.Equal(t, "yes\n", runAs(t, named, mnt, aclCan+"can cat f"), "the entry for branch uid 1000 names mount uid 101000")
	assert.Equal(t, "yes\n", runAs(t, group, mnt, aclCan+"can cat f"), "the entry for branch gid 2000 names mount gid 102000")
	assert.Equal(t, "no\n", runAs(t, branchID, mnt, aclCan+"can cat f"), "uid 1000 on the mount is not the entry's user")
	assert.Equal(t, "user::rw-\nuser:101000:r--\ngroup::---\ngroup:102000:r--\nmask::r--\nother::---\n\n",
		runAs(t, aclRoot, mnt, "getfacl -n --omit-header f"))

	runAs(t, aclRoot, mnt, "setfacl -m u:103000:rw- f")
	assert.Equal(t, "user::rw-\nuser:1000:r--\nuser:3000:rw-\ngroup::---\ngroup:2000:r--\nmask::rw-\nother::---\n\n",
		runAs(t, aclRoot, upper, "getfacl -n --omit-header f"), "setfacl through the mount stores the branch's ids")

	// An inherited default ACL keeps the branch's ids, and shows mapped.
	runAs(t, named, mnt, "umask 022; echo n > d/n")
	assert.Contains(t, runAs(t, aclRoot, upper, "getfacl -n --omit-header d/n"), "user:1000:rwx")
	assert.Contains(t, runAs(t, aclRoot, mnt, "getfacl -n --omit-header d/n"), "user:101000:rwx")
	assertBranchesUnchanged(t, before)
}
