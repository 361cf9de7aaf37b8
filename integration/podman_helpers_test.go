package integration

// Helpers of the podman end-to-end test (podman_test.go): what it needs
// from the machine, the unprivileged user of the rootless run, a busybox
// image built here (no registry is reachable), and the argv capture.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/internal/testutil"
	"golang.org/x/sys/unix"
)

const (
	// podmanTimeout bounds every podman call: the test must never hang.
	podmanTimeout = 3 * time.Minute
	// rootlessUser runs the rootless half; created (and deleted again)
	// when missing, under CI as root.
	rootlessUser = "strata-e2e"
	busyboxPath  = "/bin/busybox"
)

// podmanDirs are made in base for each run, owned by its user.
var podmanDirs = []string{"home", "xdg", "tmp", "root", "runroot", "net"}

// requirePodman skips (fails under CI) unless podman, runc and a static
// busybox are installed; scripts/install-deps installs them as root.
func requirePodman(t *testing.T) {
	t.Helper()
	testutil.NeedFUSE(t)
	for _, prog := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(prog); err != nil {
			testutil.SkipOrFail(t, prog+" is not installed (run 'make test' as root, or apt-get install podman runc)")
		}
	}
	f, err := elf.Open(busyboxPath)
	if err != nil {
		testutil.SkipOrFail(t, busyboxPath+" is missing (apt-get install busybox-static): "+err.Error())
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			testutil.SkipOrFail(t, busyboxPath+" is dynamically linked; the test image needs busybox-static")
		}
	}
}

// podmanEnv is one podman setup: its own store, run root and tmp dir,
// run as root or as an unprivileged user.
type podmanEnv struct {
	base    string // everything of this run lives below
	user    *user.User
	wrapper string // the mount_program: logs its argv, then execs strata
	argvLog string
}

// newPodmanEnv prepares base (readable by u when given), a copy of the
// strata binary there, and the argv-logging wrapper. Its cleanup removes
// every container, unmounts what podman left mounted below base, stops
// the processes this run started (by PID) and deletes base.
func newPodmanEnv(t *testing.T, u *user.User) *podmanEnv {
	t.Helper()
	base, err := os.MkdirTemp("", "strata-podman-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	e := &podmanEnv{base: base, user: u, argvLog: filepath.Join(base, "argv.log")}
	for _, d := range podmanDirs {
		require.NoError(t, os.Mkdir(filepath.Join(base, d), 0o700))
	}
	strata := filepath.Join(base, "strata")
	data, err := os.ReadFile(strataBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(strata, data, 0o755))
	require.NoError(t, os.WriteFile(e.argvLog, nil, 0o666))
	e.wrapper = filepath.Join(base, "strata-argv")
	script := fmt.Sprintf("#!/bin/sh\n{ printf '%%s\\n' \"$@\"; echo; } >> %s\nexec %s \"$@\"\n", e.argvLog, strata)
	require.NoError(t, os.WriteFile(e.wrapper, []byte(script), 0o755))
	require.NoError(t, os.Chmod(e.argvLog, 0o666)) // umask
	if u != nil {
		uid, gid := ids(t, u)
		for _, d := range podmanDirs {
			require.NoError(t, os.Chown(filepath.Join(base, d), uid, gid))
		}
	}
	if u == nil {
		// Rootful podman makes /run/containers/networks whatever
		// --network-config-dir says; remove it again if it is new.
		if _, err := os.Stat("/run/containers"); errors.Is(err, os.ErrNotExist) {
			t.Cleanup(func() { os.RemoveAll("/run/containers") })
		}
	}
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

func ids(t *testing.T, u *user.User) (int, int) {
	t.Helper()
	uid, err := strconv.Atoi(u.Uid)
	require.NoError(t, err)
	gid, err := strconv.Atoi(u.Gid)
	require.NoError(t, err)
	return uid, gid
}

// podmanResult is what one podman call did.
type podmanResult struct {
	args           []string
	stdout, stderr string
	exit           int
}

// podman runs podman with this environment's global options, as the
// environment's user, within podmanTimeout.
func (e *podmanEnv) podman(t *testing.T, args ...string) podmanResult {
	t.Helper()
	global := []string{
		"--root", filepath.Join(e.base, "root"), "--runroot", filepath.Join(e.base, "runroot"),
		"--tmpdir", filepath.Join(e.base, "tmp"), "--network-config-dir", filepath.Join(e.base, "net"),
		"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"--storage-driver", "overlay", "--storage-opt", "overlay.mount_program=" + e.wrapper,
	}
	argv := append(global, args...)
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(e.base, "home"),
		"XDG_RUNTIME_DIR=" + filepath.Join(e.base, "xdg"),
		"XDG_CONFIG_HOME=" + filepath.Join(e.base, "home", ".config"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if e.user != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", e.user.Username, "--", "env"}, append(env, append([]string{"podman"}, argv...)...)...)...)
	} else {
		cmd = exec.CommandContext(ctx, "podman", argv...)
		cmd.Env = env
	}
	cmd.Dir = e.base
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := podmanResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.exit = exitErr.ExitCode()
	default:
		t.Fatalf("podman %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("podman %q did not finish within %v (stderr: %s)", args, podmanTimeout, res.stderr)
	}
	return res
}

// mustPodman is podman that fails the test on a non-zero exit.
func (e *podmanEnv) mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	res := e.podman(t, args...)
	if res.exit != 0 {
		t.Fatalf("podman %q: exit %d\nstdout: %s\nstderr: %s", args, res.exit, res.stdout, res.stderr)
	}
	return res.stdout
}

// cleanup removes the containers, then whatever is still mounted below
// base (podman makes its store a private bind mount of itself), stops
// this run's leftover processes (rootless podman's pause process, a
// daemon podman failed to unmount), and deletes base.
func (e *podmanEnv) cleanup(t *testing.T) {
	if res := e.podman(t, "rm", "--all", "--force", "--time", "0"); res.exit != 0 {
		t.Logf("podman rm --all: %s", res.stderr)
	}
	for _, pid := range e.processes(t) {
		t.Logf("stopping leftover process %d: %s", pid, cmdline(pid))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	mounts := mountsBelow(t, e.base)
	for i := len(mounts) - 1; i >= 0; i-- { // deepest (newest) first
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			t.Errorf("umount -l %s: %v", mounts[i], err)
		}
	}
	if m := mountsBelow(t, e.base); len(m) > 0 {
		t.Errorf("still mounted below %s: %v", e.base, m)
	}
	if err := os.RemoveAll(e.base); err != nil {
		t.Errorf("removing %s: %v", e.base, err)
	}
}

// processes lists the processes this run started that are still alive:
// anything whose command line names base, and rootless podman's pause
// process (its PID file is in our tmp dir).
func (e *podmanEnv) processes(t *testing.T) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if strings.Contains(cmdline(pid), e.base) {
			pids = append(pids, pid)
		}
	}
	for _, f := range []string{filepath.Join(e.base, "tmp", "pause.pid"), filepath.Join(e.base, "xdg", "libpod", "tmp", "pause.pid")} {
		if data, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 && !slices.Contains(pids, pid) {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(data), "\x00", " ")
}

// mountsBelow lists the mount points at or below dir in this mount
// namespace, in mountinfo order (parents before children).
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := sys.Mounts()
	require.NoError(t, err)
	var out []string
	for _, m := range mounts {
		if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
			out = append(out, m.MountPoint)
		}
	}
	return out
}

// captured reads the argv log: one argument per line, an empty line
// after each call.
func (e *podmanEnv) captured(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile(e.argvLog)
	require.NoError(t, err)
	var calls [][]string
	var cur []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			if len(cur) > 0 {
				calls = append(calls, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return calls
}

var (
	layerID = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	linkID  = regexp.MustCompile(`/l/[A-Z0-9]{26}\b`)
)

// normalizeArgv replaces what changes from run to run (the store's path,
// layer ids, l/ link names) by placeholders, and returns the distinct
// calls, sorted, one per line with arguments joined by " | ".
func (e *podmanEnv) normalizeArgv(calls [][]string) []string {
	seen := map[string]bool{}
	for _, c := range calls {
		line := strings.Join(c, " | ")
		line = strings.ReplaceAll(line, filepath.Join(e.base, "root"), "<store>")
		line = layerID.ReplaceAllString(line, "<id>")
		line = linkID.ReplaceAllString(line, "/l/<link>")
		seen[line] = true
	}
	out := make([]string, 0, len(seen))
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// --- the test image ---------------------------------------------------

// tarEntry is one entry of a layer tar.
type tarEntry struct {
	name, content, link string
	mode                int64
	typ                 byte
}

func dirEntry(name string) tarEntry { return tarEntry{name: name, mode: 0o755, typ: tar.TypeDir} }
func fileEntry(name, content string, mode int64) tarEntry {
	return tarEntry{name: name, content: content, mode: mode, typ: tar.TypeReg}
}
func linkEntry(name, target string) tarEntry {
	return tarEntry{name: name, link: target, mode: 0o777, typ: tar.TypeSymlink}
}

// layerTar writes entries as an uncompressed tar.
func layerTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, Size: int64(len(e.content)), ModTime: mtime, Format: tar.FormatPAX}
		require.NoError(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := io.WriteString(tw, e.content)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// busyboxRootfs is a minimal image: busybox and the applets the test
// runs, the files podman would otherwise create in the container (so
// that podman diff shows only the test's own changes), and /opq/old for
// the opaque-directory cases.
func busyboxRootfs(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile(busyboxPath)
	require.NoError(t, err)
	entries := []tarEntry{dirEntry("bin/"), dirEntry("etc/"), dirEntry("run/"), dirEntry("tmp/"), dirEntry("proc/"),
		dirEntry("sys/"), dirEntry("dev/"), dirEntry("opq/"), fileEntry("bin/busybox", string(bb), 0o755)}
	for _, applet := range []string{"sh", "cat", "chown", "echo", "ls", "mkdir", "rm", "stat", "test", "mv", "true"} {
		entries = append(entries, linkEntry("bin/"+applet, "busybox"))
	}
	entries = append(entries,
		fileEntry("etc/passwd", "root:x:0:0:root:/:/bin/sh\n", 0o644),
		fileEntry("etc/group", "root:x:0:\n", 0o644),
		fileEntry("etc/hosts", "", 0o644), fileEntry("etc/hostname", "", 0o644), fileEntry("etc/resolv.conf", "", 0o644),
		linkEntry("etc/mtab", "/proc/mounts"),
		fileEntry("run/.containerenv", "", 0o644),
		fileEntry("opq/old", "old\n", 0o644))
	return layerTar(t, entries)
}

// dockerArchive builds a `podman load` archive of an image with the
// given layers (bottom first) tagged tag. The second layer of the test
// carries a .wh..wh..opq marker, which only a layer tar can express.
func dockerArchive(t *testing.T, tag string, layers ...[]byte) []byte {
	t.Helper()
	var diffIDs, paths []string
	var files []tarEntry
	for i, l := range layers {
		sum := sha256.Sum256(l)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
		p := fmt.Sprintf("layer%d.tar", i)
		paths = append(paths, p)
		files = append(files, fileEntry(p, string(l), 0o644))
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	require.NoError(t, err)
	manifest, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{tag}, "Layers": paths}})
	require.NoError(t, err)
	files = append(files, fileEntry("config.json", string(config), 0o644), fileEntry("manifest.json", string(manifest), 0o644))
	return layerTar(t, files)
}

// --- the rootless user ------------------------------------------------

// rootlessSetup returns the unprivileged user of the rootless run. Under
// CI as root it creates the user (with subordinate id ranges) when
// missing, and opens /dev/fuse to every user as udev does on Debian
// (a rootless mount program opens it inside podman's user namespace,
// where fusermount3's setuid bit does not apply); both are undone at the
// end. Elsewhere it skips when either is missing.
func rootlessSetup(t *testing.T) *user.User {
	t.Helper()
	if _, err := exec.LookPath("newuidmap"); err != nil {
		testutil.SkipOrFail(t, "newuidmap is not installed (apt-get install uidmap): rootless podman needs it")
	}
	ci := os.Getenv("CI") == "true"
	var st unix.Stat_t
	require.NoError(t, unix.Stat("/dev/fuse", &st))
	if st.Mode&0o006 != 0o006 {
		if !ci {
			testutil.SkipOrFail(t, fmt.Sprintf("/dev/fuse is mode %04o: rootless mounts need it world read-write (udev's default); CI=true lets the test open it for its run", st.Mode&0o7777))
		}
		require.NoError(t, unix.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { unix.Chmod("/dev/fuse", st.Mode&0o7777) })
	}
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		if !ci {
			testutil.SkipOrFail(t, "user "+rootlessUser+" does not exist; CI=true lets the test create it (with /etc/subuid and /etc/subgid ranges)")
		}
		out, err := exec.Command("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", rootlessUser).CombinedOutput()
		require.NoError(t, err, "useradd: %s", out)
		t.Cleanup(func() {
			if out, err := exec.Command("userdel", rootlessUser).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v: %s", rootlessUser, err, out)
			}
		})
		u, err = user.Lookup(rootlessUser)
		require.NoError(t, err)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, _ := os.ReadFile(f)
		if !regexp.MustCompile(`(?m)^(` + regexp.QuoteMeta(u.Username) + `|` + u.Uid + `):`).Match(data) {
			if !ci {
				testutil.SkipOrFail(t, f+" has no range for "+u.Username)
			}
			flag := "--add-subuids"
			if strings.HasSuffix(f, "subgid") {
				flag = "--add-subgids"
			}
			out, err := exec.Command("usermod", flag, "300000-365535", u.Username).CombinedOutput()
			require.NoError(t, err, "usermod %s: %s", flag, out)
		}
	}
	return u
}
