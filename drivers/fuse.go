package drivers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/whiteout"
)

// strataTimeout bounds one "strata mount" or "strata umount": the mount
// command returns once the daemon reports the mount ready, so anything
// longer is a hang, not a slow disk.
const strataTimeout = 2 * time.Minute

// fuseBackend mounts a layer chain through strata itself: "strata mount"
// with the chain as lowerdirs (and the layer's diff dir as upperdir when
// it is writable) starts a daemon that serves the mount and returns once
// it is ready; the mount outlives the process that asked for it. strata
// has no fixed depth limit.
type fuseBackend struct {
	s      *Store
	binary string
	format whiteout.Format
}

func openFuse(s *Store) (backend, error) {
	bin := s.opts.StrataBinary
	if bin == "" {
		return nil, notSupported("no strata binary configured to run the FUSE daemon")
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, notSupported("strata binary: %v", err)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, notSupported("/dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			return nil, notSupported("not root and no fusermount3 on PATH")
		}
	}
	f := &fuseBackend{s: s, binary: bin, format: whiteout.Aufs}
	if os.Geteuid() == 0 {
		// Overlay markers need mknod (a char 0/0 device).
		f.format = whiteout.Overlay
	}
	if err := f.probe(); err != nil {
		return nil, notSupported("test mount failed: %v", err)
	}
	return f, nil
}

// probe mounts a one-layer union in the store's root and reads it back.
func (f *fuseBackend) probe() error {
	dir, remove, err := f.s.probeDir("fuse", "lower", "mnt")
	if err != nil {
		return err
	}
	defer remove()
	if err := os.WriteFile(dir+"/lower/probe", []byte("strata"), 0o644); err != nil {
		return err
	}
	if err := f.run(dir, "mount", "-o", "lowerdir=lower", dir+"/mnt"); err != nil {
		return err
	}
	got, readErr := os.ReadFile(dir + "/mnt/probe")
	if err := f.run(dir, "umount", dir+"/mnt"); err != nil {
		f.run(dir, "umount", "-l", dir+"/mnt")
		return err
	}
	if readErr != nil || string(got) != "strata" {
		return fmt.Errorf("reading through the test mount: %q, %v", got, readErr)
	}
	return nil
}

func (f *fuseBackend) name() string                { return "fuse" }
func (f *fuseBackend) kind() contentKind           { return layered }
func (f *fuseBackend) markers() whiteout.Format    { return f.format }
func (f *fuseBackend) tracksMounts() bool          { return true }
func (f *fuseBackend) create(*layer, *layer) error { return nil }
func (f *fuseBackend) remove(*layer) error         { return nil }
func (f *fuseBackend) close() error                { return nil }

func (f *fuseBackend) mountDir(l *layer) string { return f.s.abs(layerPath(dirMnt, l.ID)) }

func (f *fuseBackend) contentDir(l *layer) (string, func() error, error) {
	return f.s.abs(layerPath(dirDiff, l.ID)), func() error { return nil }, nil
}

func (f *fuseBackend) status() [][2]string {
	return [][2]string{
		{"Daemon", f.binary + " mount"},
		{"Whiteouts written", f.format.String()},
		{"Max depth", "no fixed limit (one strata mount option holds about 4400 layers by their l/ short links)"},
	}
}

// mount runs "strata mount" from the store's directory, with the layers
// named by their short links relative to it: the option stays small (the
// kernel caps one argument at 128 KiB), and no path needs escaping.
func (f *fuseBackend) mount(l *layer, chain []*layer) (string, error) {
	target := f.mountDir(l)
	opt := "lowerdir=" + strings.Join(unionLowers(l, chain, 1), ":")
	if l.ReadWrite {
		opt += ",upperdir=" + layerPath(dirDiff, l.ID) + ",workdir=" + layerPath(dirWork, l.ID)
	}
	return target, f.run(f.s.path, "mount", "--whiteout="+f.format.String(), "-o", opt, target)
}

// unmount runs "strata umount", and a lazy one when the plain one fails
// (a mount whose daemon is gone answers every access with ENOTCONN).
func (f *fuseBackend) unmount(l *layer) error {
	err := f.run(f.s.path, "umount", f.mountDir(l))
	if err != nil && f.dead(l) {
		err = f.run(f.s.path, "umount", "-l", f.mountDir(l))
	}
	return err
}

// dead asks the mount for its statfs: a killed daemon's mount stays in
// the mount table and answers ENOTCONN. A daemon that does not answer
// within deadTimeout is busy, not dead.
func (f *fuseBackend) dead(l *layer) bool {
	answer := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		answer <- unix.Statfs(f.mountDir(l), &st)
	}()
	select {
	case err := <-answer:
		return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
	case <-time.After(deadTimeout):
		return false
	}
}

const deadTimeout = 5 * time.Second

// run runs the strata binary in dir and turns a failure into an error
// carrying its one-line message.
func (f *fuseBackend) run(dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), strataTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.binary, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// The daemon's streams are /dev/null, but be safe against a daemon
	// that kept ours: do not wait for pipes forever.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = err.Error()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg += fmt.Sprintf(" (no answer within %v)", strataTimeout)
	}
	return fmt.Errorf("strata %s: %s", args[0], strings.TrimPrefix(msg, "strata: "))
}
