package drivers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-fs/strata/drivers/archive"
)

// Options configure a Store.
type Options struct {
	// Root is the store's directory; it is created if missing.
	Root string
	// Backend is "fuse", "overlay", "devicemapper", "vfs", or "auto" (the
	// first of overlay, fuse, devicemapper, vfs that works here). Empty
	// means the store's own backend, or fuse for a new store. A store
	// remembers the backend it was created with, and refuses to be opened
	// with another one.
	Backend string
	// StrataBinary is the strata executable the fuse backend runs as its
	// mount daemon ("strata mount"). Without it the fuse backend is not
	// usable.
	StrataBinary string
	// DeviceMapper configures the devicemapper backend.
	DeviceMapper DeviceMapperOptions
}

// Store is a layer store on disk, driven by one backend. It implements
// Driver. Several Stores (in one process or several) may work on the same
// root at once: every change is made under a lock file, and the state that
// must be shared (which layers exist, how many users a mount has) is on
// disk, not in memory.
type Store struct {
	opts   Options
	top    string   // the root, canonical
	topFS  *os.Root // the root
	path   string   // <root>/<backend>, canonical
	root   *os.Root // <root>/<backend>
	be     backend
	choice choice
	locks  *lockTable
	bootID string
}

// LayerInfo is one row of List.
type LayerInfo struct {
	ID        string
	Parent    string
	ReadWrite bool
	// Users is the number of outstanding Gets (0: not mounted).
	Users int
}

func (s *Store) String() string { return s.be.name() }

// Path is the backend's subtree of the store, <root>/<backend>.
func (s *Store) Path() string { return s.path }

func (s *Store) abs(rel string) string { return s.path + "/" + rel }

// lockStore takes the store-wide lock (creation, removal, registration).
func (s *Store) lockStore() (*heldLock, error) {
	return s.locks.lock(s.topFS, storeLock)
}

// lockLayer takes one layer's lock (its mount count, mounting, applying).
// The caller has validated id.
func (s *Store) lockLayer(id string) (*heldLock, error) {
	return s.locks.lock(s.root, layerPath(dirLocks, id))
}

// Create makes a read-only layer.
func (s *Store) Create(id, parent string, opts *CreateOpts) error {
	return s.create(id, parent, false, opts)
}

// CreateReadWrite makes a writable layer.
func (s *Store) CreateReadWrite(id, parent string, opts *CreateOpts) error {
	return s.create(id, parent, true, opts)
}

func (s *Store) create(id, parent string, rw bool, opts *CreateOpts) (err error) {
	if err := ValidateID(id); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if opts != nil && len(opts.StorageOpt) > 0 {
		keys := make([]string, 0, len(opts.StorageOpt))
		for k := range opts.StorageOpt {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Errorf("create %s: storage options are not supported by %s (got %s)", id, s.be.name(), strings.Join(keys, ", "))
	}
	lk, err := s.lockStore()
	if err != nil {
		return err
	}
	defer lk.unlock()
	if s.Exists(id) {
		return fmt.Errorf("create %s: %w", id, ErrExists)
	}
	l := &layer{ID: id, Parent: parent, ReadWrite: rw, Link: newLink()}
	var p *layer
	if parent != "" {
		if p, err = readLayer(s.root, parent); err != nil {
			return fmt.Errorf("create %s: parent: %w", id, err)
		}
		l.Ancestors = append([]string{parent}, p.Ancestors...)
	}
	// Pieces of an earlier attempt that crashed before registering.
	if err := s.removeLeftovers(id); err != nil {
		return fmt.Errorf("create %s: clearing an unregistered leftover: %w", id, err)
	}
	backendMade := false
	defer func() {
		if err != nil {
			if backendMade {
				s.be.remove(l) // a thin snapshot, for devicemapper
			}
			s.removePieces(id, l.Link)
		}
	}()
	dirs := []string{layerPath(dirDiff, id), layerPath(dirMnt, id)}
	if rw && s.be.kind() == layered {
		dirs = append(dirs, layerPath(dirWork, id))
	}
	for _, d := range dirs {
		if err := s.root.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", id, err)
		}
		// Mkdir is subject to the umask; a layer's root is 0755 as in Docker.
		if err := s.root.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", id, err)
		}
	}
	if err := s.root.Symlink("../"+layerPath(dirDiff, id), layerPath(dirLinks, l.Link)); err != nil {
		return fmt.Errorf("create %s: short link: %w", id, err)
	}
	if err := s.be.create(l, p); err != nil {
		return fmt.Errorf("create %s: %w", id, err)
	}
	backendMade = true
	return registerLayer(s.root, l)
}

// Remove deletes a layer that is neither mounted nor a parent.
func (s *Store) Remove(id string) error {
	if err := ValidateID(id); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	lk, err := s.lockStore()
	if err != nil {
		return err
	}
	defer lk.unlock()
	h, err := s.hold("remove", id)
	if err != nil {
		return err
	}
	defer h.release()
	if err := h.refuseMounted("remove", "unmount it (Put) first"); err != nil {
		return err
	}
	children, err := s.children(id)
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if len(children) > 0 {
		return fmt.Errorf("remove %s: %w: %s", id, ErrHasChildren, strings.Join(children, ", "))
	}
	if err := s.be.remove(h.layer); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	// What an interrupted ApplyDiff left beside diff/<id>; it can only
	// be found while diff/<id> is there.
	if err := archive.RemoveStaging(s.abs(layerPath(dirDiff, id))); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	// Unregistering is the commit point; the rest is cleanup that
	// cleanOrphans finishes if we crash in the middle of it.
	if err := s.root.Remove(layerPath(dirLayers, id)); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := syncDir(s.root, dirLayers); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := s.removePieces(id, h.Link); err != nil {
		return fmt.Errorf("remove %s: unregistered, but cleaning up: %w", id, err)
	}
	// Deleted only while held: flockFile sees the change and a waiter
	// starts over on a new file.
	return ignoreNotExist(s.root.Remove(layerPath(dirLocks, id)))
}

// heldLayer is a layer under its lock, with its reference count as it
// really is (see users).
type heldLayer struct {
	*layer
	users   int
	mounted bool
	lock    *heldLock
	s       *Store
}

// hold validates id, takes the layer's lock, and loads it; op names the
// operation in errors. The caller releases it.
func (s *Store) hold(op, id string) (*heldLayer, error) {
	if err := ValidateID(id); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	lk, err := s.lockLayer(id)
	if err != nil {
		return nil, err
	}
	l, err := readLayer(s.root, id)
	if err != nil {
		lk.unlock()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	users, mounted, dead, err := s.users(l)
	if err == nil && dead {
		err = s.be.unmount(l)
	}
	if err != nil {
		lk.unlock()
		return nil, fmt.Errorf("%s %s: %w", op, id, err)
	}
	return &heldLayer{layer: l, users: users, mounted: mounted, lock: lk, s: s}, nil
}

func (h *heldLayer) release() { h.lock.unlock() }

// refuseMounted is ErrMounted when the layer is in use.
func (h *heldLayer) refuseMounted(op, advice string) error {
	if h.users > 0 || h.mounted {
		return fmt.Errorf("%s %s: %w at %s (%d users); %s", op, h.ID, ErrMounted, h.s.be.mountDir(h.layer), h.users, advice)
	}
	return nil
}

// removePieces deletes everything of an unregistered layer id, and its
// short link when link is not empty. mnt/<id> is removed with rmdir,
// never recursively: if something is still mounted there, the rmdir fails
// instead of deleting the mounted tree's content.
func (s *Store) removePieces(id, link string) error {
	var errs []error
	if link != "" {
		errs = append(errs, ignoreNotExist(s.root.Remove(layerPath(dirLinks, link))))
	}
	for _, d := range []string{dirDiff, dirWork, dirMeta, dirRefs} {
		errs = append(errs, s.root.RemoveAll(layerPath(d, id)))
	}
	errs = append(errs, ignoreNotExist(s.root.Remove(layerPath(dirMnt, id))))
	return errors.Join(errs...)
}

// removeLeftovers removes what a crashed Create of the unregistered id
// left, if anything: its pieces and any short link to its diff dir.
func (s *Store) removeLeftovers(id string) error {
	found := false
	for _, d := range []string{dirDiff, dirWork, dirMeta, dirMnt} {
		if _, err := s.root.Lstat(layerPath(d, id)); err == nil {
			found = true
		}
	}
	if !found {
		return nil
	}
	links, err := s.linksTo(id)
	if err != nil {
		return err
	}
	errs := []error{s.removePieces(id, "")}
	for _, link := range links {
		errs = append(errs, ignoreNotExist(s.root.Remove(layerPath(dirLinks, link))))
	}
	return errors.Join(errs...)
}

// linksTo lists the short links in l/ that point at diff/<id>.
func (s *Store) linksTo(id string) ([]string, error) {
	entries, err := readDirNames(s.root, dirLinks)
	if err != nil {
		return nil, err
	}
	want := "../" + layerPath(dirDiff, id)
	var out []string
	for _, name := range entries {
		if target, err := s.root.Readlink(layerPath(dirLinks, name)); err == nil && target == want {
			out = append(out, name)
		}
	}
	return out, nil
}

// children lists the registered layers whose parent is id.
func (s *Store) children(id string) ([]string, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range ids {
		raw, err := s.root.ReadFile(layerPath(dirLayers, c))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if firstOrEmpty(parseAncestors(raw)) == id {
			out = append(out, c)
		}
	}
	return out, nil
}

// ids lists the registered layers, sorted.
func (s *Store) ids() ([]string, error) {
	names, err := readDirNames(s.root, dirLayers)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if ValidateID(n) == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// Exists reports whether id is a registered layer.
func (s *Store) Exists(id string) bool {
	if ValidateID(id) != nil {
		return false
	}
	_, err := s.root.Lstat(layerPath(dirLayers, id))
	return err == nil
}

// chain loads l's ancestors, nearest first.
func (s *Store) chain(l *layer) ([]*layer, error) {
	out := make([]*layer, 0, len(l.Ancestors))
	for _, id := range l.Ancestors {
		a, err := readLayer(s.root, id)
		if err != nil {
			return nil, fmt.Errorf("layer %s: ancestor: %w", l.ID, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Get mounts the layer on the first call and counts a user.
func (s *Store) Get(id, mountLabel string) (string, error) {
	h, err := s.hold("get", id)
	if err != nil {
		return "", err
	}
	defer h.release()
	if h.users == 0 && !h.mounted {
		chain, err := s.chain(h.layer)
		if err != nil {
			return "", err
		}
		if _, err := s.be.mount(h.layer, chain); err != nil {
			return "", fmt.Errorf("get %s: %w", id, err)
		}
	}
	if err := s.setUsers(id, h.users+1); err != nil {
		if h.users == 0 {
			s.be.unmount(h.layer)
		}
		return "", fmt.Errorf("get %s: %w", id, err)
	}
	return s.be.mountDir(h.layer), nil
}

// Put drops a user; the last one unmounts.
func (s *Store) Put(id string) error {
	h, err := s.hold("put", id)
	if err != nil {
		return err
	}
	defer h.release()
	if h.users == 0 {
		return fmt.Errorf("put %s: %w", id, ErrNotMounted)
	}
	if h.users == 1 {
		if err := s.unmount(h); err != nil {
			return fmt.Errorf("put %s: %w", id, err)
		}
	}
	return s.setUsers(id, h.users-1)
}

// unmount unmounts a held layer if it is mounted (for backends that
// mount), or if it has users (vfs, where unmounting is a no-op).
func (s *Store) unmount(h *heldLayer) error {
	if h.mounted || (h.users > 0 && !s.be.tracksMounts()) {
		return s.be.unmount(h.layer)
	}
	return nil
}

// users is the layer's reference count, reconciled with reality: a count
// from before the last boot, or for a mount that is gone (someone
// unmounted it by hand) or dead (its FUSE daemon was killed), is stale and
// reads as 0. mounted says whether the layer is mounted now (for backends
// that mount), which can be true with a count of 0 when a process died
// between mounting and recording it: Get then adopts the mount instead of
// mounting again. dead reports a dead mount, which hold detaches.
func (s *Store) users(l *layer) (users int, mounted, dead bool, err error) {
	users, err = s.readUsers(l.ID)
	if err != nil {
		return 0, false, false, err
	}
	if !s.be.tracksMounts() {
		return users, false, false, nil
	}
	mounted, err = isMountPoint(s.abs(layerPath(dirMnt, l.ID)))
	if err != nil {
		return 0, false, false, err
	}
	if mounted && s.be.dead(l) {
		return 0, false, true, nil
	}
	if !mounted {
		users = 0
	}
	return users, mounted, false, nil
}

// readUsers reads refs/<id> ("<count> <boot id>"); a count written before
// the current boot is 0.
func (s *Store) readUsers(id string) (int, error) {
	raw, err := s.root.ReadFile(layerPath(dirRefs, id))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return 0, fmt.Errorf("%s: malformed reference count %q", layerPath(dirRefs, id), raw)
	}
	if f[1] != s.bootID {
		return 0, nil
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: malformed reference count %q", layerPath(dirRefs, id), raw)
	}
	return n, nil
}

func (s *Store) setUsers(id string, n int) error {
	if n == 0 {
		return ignoreNotExist(s.root.Remove(layerPath(dirRefs, id)))
	}
	return writeFileAtomic(s.root, layerPath(dirRefs, id), []byte(fmt.Sprintf("%d %s\n", n, s.bootID)))
}

// GetMetadata describes a layer's storage.
func (s *Store) GetMetadata(id string) (map[string]string, error) {
	l, err := readLayer(s.root, id)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	users, _, _, err := s.users(l)
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", id, err)
	}
	m := map[string]string{
		"Backend":   s.be.name(),
		"Parent":    l.Parent,
		"ReadWrite": strconv.FormatBool(l.ReadWrite),
		"DiffDir":   s.abs(layerPath(dirDiff, id)),
		"MergedDir": s.be.mountDir(l),
		"Users":     strconv.Itoa(users),
	}
	if s.be.kind() == layered {
		// The names Docker's overlay2 uses, for tools that read them.
		lowers := make([]string, 0, len(l.Ancestors)+1)
		if l.ReadWrite {
			m["UpperDir"] = m["DiffDir"]
			m["WorkDir"] = s.abs(layerPath(dirWork, id))
		} else {
			lowers = append(lowers, m["DiffDir"])
		}
		for _, a := range l.Ancestors {
			lowers = append(lowers, s.abs(layerPath(dirDiff, a)))
		}
		m["LowerDir"] = strings.Join(lowers, ":")
	}
	return m, nil
}

// List describes every layer.
func (s *Store) List() ([]LayerInfo, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []LayerInfo
	for _, id := range ids {
		l, err := readLayer(s.root, id)
		if errors.Is(err, ErrNotFound) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		users, _, _, err := s.users(l)
		if err != nil {
			return nil, err
		}
		out = append(out, LayerInfo{ID: id, Parent: l.Parent, ReadWrite: l.ReadWrite, Users: users})
	}
	return out, nil
}

// Status describes the store and how its backend was chosen.
func (s *Store) Status() [][2]string {
	rows := [][2]string{
		{"Backend", s.be.name()},
		{"Root", s.top},
		{"Chosen by", s.choice.describe()},
	}
	for _, r := range s.choice.Rejected {
		rows = append(rows, [2]string{"Rejected " + r.Backend, r.Reason})
	}
	if infos, err := s.List(); err == nil {
		mounted := 0
		for _, i := range infos {
			if i.Users > 0 {
				mounted++
			}
		}
		rows = append(rows, [2]string{"Layers", strconv.Itoa(len(infos))}, [2]string{"Mounted layers", strconv.Itoa(mounted)})
	}
	return append(rows, s.be.status()...)
}

// Cleanup unmounts every mounted layer (whoever mounted it), forgets
// their reference counts, and releases the backend and the store's
// descriptors. The Store must not be used afterwards; the layers stay.
func (s *Store) Cleanup() error {
	ids, err := readDirNames(s.root, dirRefs)
	errs := []error{err}
	if s.be.tracksMounts() {
		// A mount without a count (adopted) is ours to clean up too.
		mounts, err := mountPoints()
		errs = append(errs, err)
		mnts, err := readDirNames(s.root, dirMnt)
		errs = append(errs, err)
		for _, id := range mnts {
			if _, ok := mounts[s.abs(layerPath(dirMnt, id))]; ok {
				ids = append(ids, id)
			}
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || ValidateID(id) != nil {
			continue
		}
		seen[id] = true
		errs = append(errs, s.releaseForCleanup(id))
	}
	errs = append(errs, s.be.close(), s.root.Close(), s.topFS.Close())
	return errors.Join(errs...)
}

// releaseForCleanup unmounts one layer if it is mounted and clears its
// count.
func (s *Store) releaseForCleanup(id string) error {
	h, err := s.hold("cleanup", id)
	if errors.Is(err, ErrNotFound) {
		return ignoreNotExist(s.root.Remove(layerPath(dirRefs, id)))
	}
	if err != nil {
		return err
	}
	defer h.release()
	if err := s.unmount(h); err != nil {
		return fmt.Errorf("cleanup %s: %w", id, err)
	}
	return s.setUsers(id, 0)
}

// readDirNames lists a directory under root, sorted, without the store's
// own dot-named temp files.
func readDirNames(root *os.Root, dir string) ([]string, error) {
	f, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
