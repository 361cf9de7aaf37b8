package drivers_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers"
	"github.com/strata-fs/strata/drivers/drivertest"
)

// openStore opens a store for backend on a fresh root, skipping (or
// failing under CI) when the backend cannot run here.
func openStore(t *testing.T, backend string) *drivers.Store {
	t.Helper()
	root := t.TempDir()
	s, err := drivers.New(drivers.Options{Root: root, Backend: backend, StrataBinary: strataBin})
	if err != nil {
		skipUnsupported(t, backend, err)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		require.NoError(t, s.Cleanup())
		drivertest.RequireNoMounts(t, root)
	})
	return s
}

// deepChain creates n read-only layers, each holding file-<i> with its
// index, written straight into its diff dir (fast: no tar, no mount).
func deepChain(t *testing.T, s *drivers.Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	parent := ""
	for i := range ids {
		ids[i] = fmt.Sprintf("l%04d", i)
		require.NoError(t, s.Create(ids[i], parent, nil))
		m, err := s.GetMetadata(ids[i])
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(m["DiffDir"], fmt.Sprintf("file-%d", i)), []byte(ids[i]), 0o644))
		parent = ids[i]
	}
	return ids
}

// readChain checks, through a writable layer on top of ids, that the
// bottom, middle and top layers' files are there, and that it writes.
func readChain(t *testing.T, s *drivers.Store, ids []string) {
	t.Helper()
	top := "rw-" + ids[len(ids)-1]
	require.NoError(t, s.CreateReadWrite(top, ids[len(ids)-1], nil))
	dir, err := s.Get(top, "")
	require.NoError(t, err, "mounting %d layers", len(ids)+1)
	for _, i := range []int{0, len(ids) / 2, len(ids) - 1} {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("file-%d", i)))
		require.NoError(t, err)
		require.Equal(t, ids[i], string(b))
	}
	require.NoError(t, os.WriteFile(dir+"/written", []byte("x"), 0o644))
	require.NoError(t, s.Put(top))
}

// TestOverlayDepth mounts chains long enough for each of the overlay
// backend's ways to pass the layers: one mount(2) page of absolute paths
// (10 layers), short relative links from the store directory (100), and
// fsconfig lowerdir+ (499 + the writable layer = the kernel's 500), and
// the 501st layer is refused with the reason.
func TestOverlayDepth(t *testing.T) {
	s := openStore(t, "overlay")
	ids := deepChain(t, s, 501)
	for _, n := range []int{10, 100, 499} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { readChain(t, s, ids[:n]) })
	}
	require.NoError(t, s.CreateReadWrite("too-deep", ids[500], nil))
	_, err := s.Get("too-deep", "")
	require.ErrorIs(t, err, drivers.ErrNotSupported)
	require.ErrorContains(t, err, "501 lower layers; kernel overlay stacks at most 500")
	users, err := s.GetMetadata("too-deep")
	require.NoError(t, err)
	require.Equal(t, "0", users["Users"], "a refused Get counts nothing")
}

// TestFuseDepth: the fuse backend has no depth limit; 1000 layers and a
// writable one on top mount and read back.
func TestFuseDepth(t *testing.T) {
	s := openStore(t, "fuse")
	start := time.Now()
	ids := deepChain(t, s, 1000)
	t.Logf("1000 layers created in %v", time.Since(start).Round(time.Millisecond))
	readChain(t, s, ids)
}

// TestStaleMountCount: a mount that went away behind the store's back (an
// admin's umount), or whose FUSE daemon was killed (the kernel keeps that
// mount, answering ENOTCONN), leaves a count that is not believed: the
// next Get mounts again, and the counts balance.
func TestStaleMountCount(t *testing.T) {
	for _, c := range []struct {
		backend, how string
		breakIt      func(t *testing.T, dir string)
	}{
		{"fuse", "unmounted", unmountBehind},
		{"overlay", "unmounted", unmountBehind},
		{"fuse", "daemon killed", killDaemon},
	} {
		t.Run(c.backend+" "+c.how, func(t *testing.T) {
			s := openStore(t, c.backend)
			require.NoError(t, s.Create("base", "", nil))
			_, err := s.ApplyDiff("base", "", bytes.NewReader(drivertest.Tar(t, drivertest.Entry{Name: "f", Content: "data"})))
			require.NoError(t, err)
			dir, err := s.Get("base", "")
			require.NoError(t, err)
			c.breakIt(t, dir)
			again, err := drivers.New(drivers.Options{Root: filepath.Dir(s.Path()), StrataBinary: strataBin})
			require.NoError(t, err)
			_, err = os.Stat(filepath.Join(s.Path(), "refs", "base"))
			require.ErrorIs(t, err, os.ErrNotExist, "opening the store dropped the stale count")
			require.False(t, drivertest.IsMountPoint(t, dir), "opening the store detached the dead mount")
			m, err := again.GetMetadata("base")
			require.NoError(t, err)
			require.Equal(t, "0", m["Users"], "a count for a mount that is %s", c.how)
			dir2, err := again.Get("base", "")
			require.NoError(t, err)
			require.Equal(t, dir, dir2)
			b, err := os.ReadFile(dir2 + "/f")
			require.NoError(t, err, "reading through the new mount")
			require.Equal(t, "data", string(b))
			require.NoError(t, again.Put("base"))
			require.ErrorIs(t, again.Put("base"), drivers.ErrNotMounted)
		})
	}
}

func unmountBehind(t *testing.T, dir string) {
	require.NoError(t, unix.Unmount(dir, 0), "unmounting behind the store's back")
}

// killDaemon kills the strata daemon serving dir (this test started it
// through the store): the one process with dir as an argument.
func killDaemon(t *testing.T, dir string) {
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if arg == dir {
				pids = append(pids, pid)
			}
		}
	}
	require.Len(t, pids, 1, "the daemon serving %s", dir)
	require.NoError(t, unix.Kill(pids[0], unix.SIGKILL))
	// statfs, not stat: the kernel answers stat from its attribute cache
	// without asking the daemon, statfs always asks (as fuseBackend.dead).
	var st unix.Statfs_t
	err = unix.Statfs(dir, &st)
	for i := 0; i < 100 && !errors.Is(err, unix.ENOTCONN); i++ {
		time.Sleep(20 * time.Millisecond) // the kernel notices the closed device
		err = unix.Statfs(dir, &st)
	}
	require.ErrorIs(t, err, unix.ENOTCONN, "the mount of a killed daemon")
}

// TestAutoSelection: auto takes the first backend that works and records
// it; the store is reopened with it, never silently with another.
func TestAutoSelection(t *testing.T) {
	root := t.TempDir()
	s, err := drivers.New(drivers.Options{Root: root, Backend: "auto", StrataBinary: strataBin})
	require.NoError(t, err)
	defer s.Cleanup()
	status := statusMap(s.Status())
	require.Contains(t, status["Chosen by"], "auto")
	chosen := s.String()
	t.Logf("auto chose %s; rejected: %v", chosen, rejected(status))
	for _, b := range []string{"overlay", "fuse", "devicemapper", "vfs"} {
		if b == chosen {
			break
		}
		require.NotEmpty(t, status["Rejected "+b], "%s was tried before %s: its reason is shown", b, chosen)
	}
	require.NoError(t, s.Create("kept", "", nil))

	reopened, err := drivers.New(drivers.Options{Root: root, Backend: "auto", StrataBinary: strataBin})
	require.NoError(t, err)
	require.Equal(t, chosen, reopened.String())
	require.True(t, reopened.Exists("kept"))
	require.Equal(t, status["Rejected overlay"], statusMap(reopened.Status())["Rejected overlay"], "the reasons are kept with the choice")
	require.NoError(t, reopened.Cleanup())

	other := "vfs"
	if chosen == "vfs" {
		other = "fuse"
	}
	_, err = drivers.New(drivers.Options{Root: root, Backend: other, StrataBinary: strataBin})
	require.ErrorIs(t, err, drivers.ErrBackendMismatch)
	require.ErrorContains(t, err, fmt.Sprintf("created with backend %q", chosen))

	_, err = drivers.New(drivers.Options{Root: t.TempDir(), Backend: "zfs"})
	require.ErrorContains(t, err, `unknown backend "zfs"`)

	plain, err := drivers.New(drivers.Options{Root: root})
	require.NoError(t, err, "no backend asked for: the store's own")
	require.Equal(t, chosen, plain.String())
	require.NoError(t, plain.Cleanup())
}

// TestDefaultBackend: a new store without a backend asked for is fuse.
func TestDefaultBackend(t *testing.T) {
	s := openStore(t, "")
	require.Equal(t, "fuse", s.String())
	require.Contains(t, statusMap(s.Status())["Chosen by"], "default")
}

// TestAutoSelectionOnFUSE puts the store on a strata FUSE mount: kernel
// overlay is rejected because of what the store sits on (statfs), and the
// reason says so.
func TestAutoSelectionOnFUSE(t *testing.T) {
	host := openStore(t, "fuse")
	require.NoError(t, host.CreateReadWrite("host", "", nil))
	dir, err := host.Get("host", "")
	require.NoError(t, err)
	defer host.Put("host")

	root := filepath.Join(dir, "store")
	s, err := drivers.New(drivers.Options{Root: root, Backend: "auto", StrataBinary: strataBin})
	require.NoError(t, err)
	defer func() {
		require.NoError(t, s.Cleanup())
		drivertest.RequireNoMounts(t, root)
	}()
	status := statusMap(s.Status())
	require.Contains(t, status["Rejected overlay"], "is itself on fuse")
	require.NotEqual(t, "overlay", s.String())
	t.Logf("on a FUSE mount, auto chose %s; rejected: %v", s.String(), rejected(status))
}

// TestDeviceMapperUnavailable: where device-mapper is missing, asking for
// it says so plainly, and auto skips it.
func TestDeviceMapperUnavailable(t *testing.T) {
	if _, err := os.Stat("/dev/mapper/control"); err == nil {
		t.Skip("device-mapper is available here; the conformance suite runs it")
	}
	_, err := drivers.New(drivers.Options{Root: t.TempDir(), Backend: "devicemapper"})
	require.ErrorIs(t, err, drivers.ErrNotSupported)
	require.True(t, strings.HasPrefix(err.Error(), "device-mapper not available: "), "error: %v", err)
}

func statusMap(rows [][2]string) map[string]string {
	m := map[string]string{}
	for _, r := range rows {
		m[r[0]] = r[1]
	}
	return m
}

func rejected(status map[string]string) []string {
	var out []string
	for k, v := range status {
		if strings.HasPrefix(k, "Rejected ") {
			out = append(out, strings.TrimPrefix(k, "Rejected ")+": "+v)
		}
	}
	return out
}
