package drivers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/whiteout"
)

// overlayMaxStack is the kernel's OVL_MAX_STACK: the most lower layers one
// overlay mount takes.
const overlayMaxStack = 500

// overlayBackend mounts a layer chain with the kernel's overlayfs, as
// Docker's overlay2 does: diff/<id> is a layer's upper, its ancestors'
// diff dirs (through their l/ short links) are the lowers.
type overlayBackend struct {
	s            *Store
	fs           string // the store's filesystem, for status
	lowerdirPlus bool   // the kernel takes fsconfig "lowerdir+" (6.8+)
}

// Mount options every overlay mount gets. index=off: a rw layer that is
// also a lower of another mounted layer (an image being committed while a
// container runs on it) must not make the second mount fail with EBUSY.
// metacopy=off: a metadata-only copy-up would leave a layer's diff dir
// without the data its diff must carry.
var overlayCommonOpts = [][2]string{{"index", "off"}, {"metacopy", "off"}}

func overlayCommonOptString() string {
	parts := make([]string, len(overlayCommonOpts))
	for i, kv := range overlayCommonOpts {
		parts[i] = kv[0] + "=" + kv[1]
	}
	return strings.Join(parts, ",")
}

func openOverlay(s *Store) (backend, error) {
	if os.Geteuid() != 0 {
		return nil, notSupported("kernel overlay needs root to mount (euid %d)", os.Geteuid())
	}
	fsName, magic, err := fsType(s.top)
	if err != nil {
		return nil, notSupported("%v", err)
	}
	switch magic {
	case unix.OVERLAYFS_SUPER_MAGIC, unix.FUSE_SUPER_MAGIC, unix.NFS_SUPER_MAGIC, unix.ECRYPTFS_SUPER_MAGIC:
		return nil, notSupported("the store %s is itself on %s, which kernel overlay cannot use for its upper layers", s.top, fsName)
	}
	o := &overlayBackend{s: s, fs: fsName}
	if err := o.probe(); err != nil {
		return nil, notSupported("test mount on the store's filesystem (%s) failed: %v", fsName, err)
	}
	return o, nil
}

// probe mounts a small overlay in the store's root, writes through it (a
// copy-up, a whiteout, an opaque directory), and unmounts it.
func (o *overlayBackend) probe() error {
	dir, remove, err := o.s.probeDir("overlay", "l1", "l2", "upper", "work", "merged")
	if err != nil {
		return err
	}
	defer remove()
	for _, f := range []string{"l1/a", "l2/b", "l2/d/c"} {
		os.MkdirAll(dir+"/"+f[:strings.LastIndex(f, "/")], 0o755)
		if err := os.WriteFile(dir+"/"+f, []byte(f), 0o644); err != nil {
			return err
		}
	}
	data := fmt.Sprintf("lowerdir=%s/l1:%s/l2,upperdir=%s/upper,workdir=%s/work,%s", dir, dir, dir, dir, overlayCommonOptString())
	if err := unix.Mount("overlay", dir+"/merged", "overlay", 0, data); err != nil {
		return fmt.Errorf("mount -t overlay: %w", err)
	}
	err = errors.Join(
		os.WriteFile(dir+"/merged/a", []byte("changed"), 0o644),
		os.Remove(dir+"/merged/b"),
		os.RemoveAll(dir+"/merged/d"),
		os.Mkdir(dir+"/merged/d", 0o755),
	)
	if uerr := unix.Unmount(dir+"/merged", 0); uerr != nil {
		unix.Unmount(dir+"/merged", unix.MNT_DETACH)
		return fmt.Errorf("umount: %w", uerr)
	}
	if err != nil {
		return fmt.Errorf("writing through the test mount: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir+"/upper/b", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		return fmt.Errorf("no char 0/0 whiteout in the upper after a delete (%v)", err)
	}
	o.lowerdirPlus = probeLowerdirPlus(dir + "/l1")
	return nil
}

// probeLowerdirPlus asks the kernel whether it knows fsconfig "lowerdir+".
func probeLowerdirPlus(lower string) bool {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.FsconfigSetString(fd, "lowerdir+", lower) == nil
}

func (o *overlayBackend) name() string                { return "overlay" }
func (o *overlayBackend) kind() contentKind           { return layered }
func (o *overlayBackend) markers() whiteout.Format    { return whiteout.Overlay }
func (o *overlayBackend) tracksMounts() bool          { return true }
func (o *overlayBackend) dead(*layer) bool            { return false }
func (o *overlayBackend) create(*layer, *layer) error { return nil }
func (o *overlayBackend) remove(*layer) error         { return nil }
func (o *overlayBackend) close() error                { return nil }

func (o *overlayBackend) mountDir(l *layer) string { return o.s.abs(layerPath(dirMnt, l.ID)) }

func (o *overlayBackend) contentDir(l *layer) (string, func() error, error) {
	return o.s.abs(layerPath(dirDiff, l.ID)), func() error { return nil }, nil
}

func (o *overlayBackend) status() [][2]string {
	plus := "no (chains whose options exceed a page are refused)"
	if o.lowerdirPlus {
		plus = "yes (chains whose options exceed a page are mounted with it)"
	}
	return [][2]string{
		{"Backing filesystem", o.fs},
		{"Max depth", fmt.Sprintf("%d layers (the kernel's OVL_MAX_STACK)", overlayMaxStack)},
		{"fsconfig lowerdir+", plus},
	}
}

// unionLowers is the lower list (top first, relative to the store's
// subtree) for mounting l: its own diff dir when it is read-only, then its
// ancestors'. A union needs a lower even for a writable base layer, and
// kernel overlay needs two when there is no upper; the store's empty
// directory fills in.
func unionLowers(l *layer, chain []*layer, minLowers int) []string {
	var lowers []string
	if !l.ReadWrite {
		lowers = append(lowers, layerPath(dirLinks, l.Link))
	}
	for _, a := range chain {
		lowers = append(lowers, layerPath(dirLinks, a.Link))
	}
	if l.ReadWrite {
		minLowers = 1
	}
	for len(lowers) < minLowers {
		lowers = append(lowers, dirEmpty)
	}
	return lowers
}

// overlayHow is how one overlay mount passes its layers to the kernel.
type overlayHow int

const (
	// absolutePaths: one mount(2) with absolute paths, within a page.
	absolutePaths overlayHow = iota
	// fromStore: paths relative to the store (short l/ links), mount(2)
	// from a thread whose working directory is the store, as Docker's
	// overlay2 mountFrom does; within a page.
	fromStore
	// lowerdirPlus: the new mount API, one fsconfig "lowerdir+" per layer,
	// no length limit (Linux 6.8+).
	lowerdirPlus
)

// overlayPlan is one mount, worked out.
type overlayPlan struct {
	how         overlayHow
	data        string   // the option string (absolutePaths, fromStore)
	lowers      []string // absolute lower paths, top first (lowerdirPlus)
	upper, work string   // absolute; empty for a read-only layer
	flags       uintptr
}

// plan picks the first way that works for this chain: absolute paths,
// then paths relative to the store, then lowerdir+.
func (o *overlayBackend) plan(l *layer, chain []*layer) (overlayPlan, error) {
	lowers := unionLowers(l, chain, 2)
	if len(lowers) > overlayMaxStack {
		return overlayPlan{}, fmt.Errorf("%w: %d lower layers; kernel overlay stacks at most %d (use the fuse backend for deeper chains)", ErrNotSupported, len(lowers), overlayMaxStack)
	}
	var p overlayPlan
	var upper, work string
	if l.ReadWrite {
		upper, work = layerPath(dirDiff, l.ID), layerPath(dirWork, l.ID)
		p.upper, p.work = o.s.abs(upper), o.s.abs(work)
	} else {
		p.flags = unix.MS_RDONLY
	}
	build := func(prefix string) string {
		var b strings.Builder
		b.WriteString("lowerdir=")
		for i, lower := range lowers {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(prefix + lower)
		}
		if upper != "" {
			b.WriteString(",upperdir=" + prefix + upper + ",workdir=" + prefix + work)
		}
		b.WriteString("," + overlayCommonOptString())
		return b.String()
	}
	page := os.Getpagesize()
	if p.data = build(o.s.path + "/"); len(p.data) < page && !strings.ContainsAny(o.s.path, ",:\\") {
		p.how = absolutePaths
		return p, nil
	}
	if p.data = build(""); len(p.data) < page {
		p.how = fromStore
		return p, nil
	}
	if !o.lowerdirPlus {
		return overlayPlan{}, fmt.Errorf("%w: %d layers need a %d-byte mount option, more than a page, and this kernel has no fsconfig lowerdir+ (Linux 6.8+)", ErrNotSupported, len(lowers), len(p.data))
	}
	p.how, p.data = lowerdirPlus, ""
	for _, lower := range lowers {
		p.lowers = append(p.lowers, o.s.abs(lower))
	}
	return p, nil
}

func (o *overlayBackend) mount(l *layer, chain []*layer) (string, error) {
	target := o.mountDir(l)
	p, err := o.plan(l, chain)
	if err != nil {
		return "", err
	}
	switch p.how {
	case absolutePaths:
		err = wrapMount("mount -t overlay", unix.Mount("overlay", target, "overlay", p.flags, p.data))
	case fromStore:
		err = wrapMount("mount -t overlay (from the store directory)", mountFrom(o.s.path, target, p.flags, p.data))
	default:
		err = mountLowerdirPlus(p.lowers, p.upper, p.work, target)
	}
	return target, err
}

func wrapMount(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// mountFrom runs mount(2) with the working directory at dir, so that
// relative paths in data resolve there. The process's working directory
// is not touched: a locked OS thread unshares its filesystem context and
// changes only its own, and is discarded afterwards (the goroutine exits
// without unlocking it).
func mountFrom(dir, target string, flags uintptr, data string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", flags, data)
	}()
	return <-errc
}

// mountLowerdirPlus mounts with the new mount API: fsopen, one fsconfig
// per layer, fsmount, move_mount.
func mountLowerdirPlus(lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fd, key, value); err != nil {
			return fmt.Errorf("fsconfig %s=%s: %w%s", key, value, err, fsContextLog(fd))
		}
		return nil
	}
	for _, p := range lowers {
		if err := set("lowerdir+", p); err != nil {
			return err
		}
	}
	attrs := unix.MOUNT_ATTR_RDONLY
	if upper != "" {
		attrs = 0
		if err := errors.Join(set("upperdir", upper), set("workdir", work)); err != nil {
			return err
		}
	}
	for _, kv := range overlayCommonOpts {
		if err := set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("fsconfig create: %w%s", err, fsContextLog(fd))
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsContextLog(fd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// fsContextLog reads the kernel's messages about a failed fsconfig (what
// dmesg would show), as ": msg; msg".
func fsContextLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 8; i++ {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(bytes.TrimSpace(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

func (o *overlayBackend) unmount(l *layer) error {
	target := o.mountDir(l)
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}
