package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/drivers/drivertest"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// userNSApplyEnv, when set to a directory, makes this test binary a child
// that TestUserNamespaceMarkers runs inside a user namespace: it applies
// DIR/0.tar, DIR/1.tar, ... to the layer directories DIR/0, DIR/1, ... as
// the fuse backend of a store does for root (overlay markers), and exits.
const userNSApplyEnv = "STRATA_TEST_USERNS_APPLY"

func init() {
	if dir := os.Getenv(userNSApplyEnv); dir != "" {
		os.Exit(userNSApplyChild(dir))
	}
}

func userNSApplyChild(dir string) int {
	for i := 0; ; i++ {
		f, err := os.Open(filepath.Join(dir, strconv.Itoa(i)+".tar"))
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err == nil {
			_, err = archive.Apply(filepath.Join(dir, strconv.Itoa(i)), f, archive.ApplyOptions{Format: whiteout.Overlay})
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
}

// inUserNamespace runs cmd as root of a new user namespace that maps ids
// 0-65535 to themselves: root there, but not in the initial namespace, so
// trusted.* xattrs are refused (EPERM), as they are for rootless podman's
// mount program. It returns the combined output, and fails the test when
// cmd fails.
func inUserNamespace(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: ids, GidMappings: ids}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("cannot start a process in a new user namespace: %v", err))
	}
	err := cmd.Wait()
	require.NoError(t, err, "%s, run as root of a user namespace:\n%s", strings.Join(cmd.Args, " "), out.String())
	return out.String()
}

// layerDirs makes DIR/0, DIR/1, ... for n layers and returns them, top
// first, as a lowerdir= list.
func layerDirs(t *testing.T, dir string, n int) string {
	t.Helper()
	var lowers []string
	for i := range n {
		p := filepath.Join(dir, strconv.Itoa(i))
		require.NoError(t, os.MkdirAll(p, 0o755))
		lowers = append([]string{p}, lowers...)
	}
	return strings.Join(lowers, ":")
}

// requireUserMarkers checks the overlay xattrs below dir: user.* only
// (root of a user namespace cannot write trusted.*), and at least one
// opaque directory among them.
func requireUserMarkers(t *testing.T, dir string) {
	t.Helper()
	opaque := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		for _, x := range testutil.Xattrs(t, p, "") {
			require.False(t, strings.HasPrefix(x, "trusted."), "%s: %s", p, x)
			if x == `user.overlay.opaque="y"` {
				opaque++
			}
		}
		return err
	}))
	require.NotZero(t, opaque, "no user.overlay.opaque marker below %s", dir)
}

// TestUserNamespaceMarkers: root inside a user namespace (rootless podman,
// a container engine in a container) may not write trusted.* xattrs, so
// the whiteout markers it writes must use user.*, as the mount does there.
// It applies an image's layer tars (drivers/archive, as a store's fuse
// backend does for root), and converts aufs-form layers with strata
// convert, both in a user namespace; then a strata mount over the layers
// must show the same tree as over the same tars applied outside: whiteouts
// and opaque directories hide what they should.
func TestUserNamespaceMarkers(t *testing.T) {
	testutil.NeedFUSE(t)
	layers := drivertest.ImageLayers(t)
	tmp := t.TempDir()

	// The reference: the tars applied by real root (trusted.* markers).
	refLowers := layerDirs(t, filepath.Join(tmp, "ref"), len(layers))
	for i, tarball := range layers {
		_, err := archive.Apply(filepath.Join(tmp, "ref", strconv.Itoa(i)), bytes.NewReader(tarball), archive.ApplyOptions{Format: whiteout.Overlay})
		require.NoError(t, err)
	}
	refMnt := testutil.Mkdirs(t, filepath.Join(tmp, "ref-mnt"))[0]
	mountStrata(t, refMnt, "lowerdir="+refLowers)
	want := drivertest.Snapshot(t, refMnt)
	for _, p := range []string{"etc/passwd", "var/cache", "opt/app/one", "usr/lib/libx.so.1"} {
		require.NotContains(t, want, p, "reference: a whiteout or opaque directory hides %s", p)
	}
	for _, p := range []string{"opt/app/three", "data/dir", "etc/motd"} {
		require.Contains(t, want, p, "reference")
	}

	t.Run("apply", func(t *testing.T) {
		dir := filepath.Join(tmp, "apply")
		lowers := layerDirs(t, dir, len(layers))
		for i, tarball := range layers {
			require.NoError(t, os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".tar"), tarball, 0o644))
		}
		self, err := os.Executable()
		require.NoError(t, err)
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), userNSApplyEnv+"="+dir)
		inUserNamespace(t, cmd)
		requireUserMarkers(t, dir)

		mnt := testutil.Mkdirs(t, filepath.Join(tmp, "apply-mnt"))[0]
		mountStrata(t, mnt, "lowerdir="+lowers)
		drivertest.RequireEqual(t, want, drivertest.Snapshot(t, mnt), "layers applied by real root vs. by root of a user namespace")
	})

	t.Run("convert", func(t *testing.T) {
		dir := filepath.Join(tmp, "convert")
		lowers := layerDirs(t, dir, len(layers))
		for i, tarball := range layers {
			_, err := archive.Apply(filepath.Join(dir, strconv.Itoa(i)), bytes.NewReader(tarball), archive.ApplyOptions{Format: whiteout.Aufs})
			require.NoError(t, err)
		}
		for i := range layers {
			inUserNamespace(t, exec.Command(strataBin, "convert", "--to", "overlay", filepath.Join(dir, strconv.Itoa(i))))
		}
		requireUserMarkers(t, dir)

		mnt := testutil.Mkdirs(t, filepath.Join(tmp, "convert-mnt"))[0]
		mountStrata(t, mnt, "lowerdir="+lowers)
		drivertest.RequireEqual(t, want, drivertest.Snapshot(t, mnt), "layers applied by real root vs. converted by root of a user namespace")
	})
}
