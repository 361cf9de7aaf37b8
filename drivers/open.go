package drivers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/sys"
)

// choiceFile records, in the store root, which backend the store belongs
// to and how it was chosen.
const choiceFile = "backend"

// choice is the content of <root>/backend.
type choice struct {
	Backend string `json:"backend"`
	// ChosenBy is "default", "auto" or "option" (--backend NAME).
	ChosenBy string      `json:"chosen_by"`
	Rejected []rejection `json:"rejected,omitempty"`
}

type rejection struct {
	Backend string `json:"backend"`
	Reason  string `json:"reason"`
}

// defaultBackend is what a new store gets when no backend is asked for.
const defaultBackend = "fuse"

func (c choice) describe() string {
	switch c.ChosenBy {
	case "auto":
		return "auto: the first of " + strings.Join(backendNames, ", ") + " that works here (recorded in the store root)"
	case "default":
		return "the default for a new store (recorded in the store root)"
	}
	return "--backend " + c.Backend + " (recorded in the store root)"
}

func errUnknownBackend(name string) error {
	return fmt.Errorf("unknown backend %q: want auto, %s", name, strings.Join(backendNames, ", "))
}

// New opens the store at opts.Root, creating it if needed. A new store
// takes the backend opts.Backend names: fuse when it is empty, or with
// "auto" the first of overlay, fuse, devicemapper, vfs whose probe
// succeeds. The choice is recorded in the root, and a store is always
// reopened with the backend it was created with: an empty Backend or
// "auto" means that one, and asking for another fails with
// ErrBackendMismatch, so layers are never silently read by the wrong
// backend.
func New(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("graph store: no root directory given")
	}
	want := opts.Backend
	if want != "" && want != "auto" && !contains(backendNames, want) {
		return nil, errUnknownBackend(want)
	}
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("graph store %s: %w", opts.Root, err)
	}
	top, err := canonical(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("graph store %s: %w", opts.Root, err)
	}
	topFS, err := os.OpenRoot(top)
	if err != nil {
		return nil, fmt.Errorf("graph store %s: %w", top, err)
	}
	s := &Store{opts: opts, top: top, topFS: topFS, locks: newLockTable()}
	ok := false
	defer func() {
		if !ok {
			if s.be != nil {
				s.be.close()
			}
			if s.root != nil {
				s.root.Close()
			}
			topFS.Close()
		}
	}()
	if s.bootID, err = readBootID(); err != nil {
		return nil, err
	}
	lk, err := s.lockStore()
	if err != nil {
		return nil, err
	}
	defer lk.unlock()

	recorded, err := readChoice(topFS)
	if err != nil {
		return nil, fmt.Errorf("graph store %s: %w", top, err)
	}
	switch {
	case recorded != nil && want != "" && want != "auto" && want != recorded.Backend:
		return nil, fmt.Errorf("graph store %s: %w: it was created with backend %q; open it with --backend %s (or auto), or use another root", top, ErrBackendMismatch, recorded.Backend, recorded.Backend)
	case recorded != nil:
		s.choice = *recorded
		if err := s.start(recorded.Backend); err != nil {
			return nil, fmt.Errorf("graph store %s (backend %s): %w", top, recorded.Backend, err)
		}
	case want == "auto":
		s.choice = choice{ChosenBy: "auto"}
		for _, name := range backendNames {
			err := s.start(name)
			if err == nil {
				break
			}
			s.choice.Rejected = append(s.choice.Rejected, rejection{Backend: name, Reason: err.Error()})
		}
		if s.be == nil {
			return nil, fmt.Errorf("graph store %s: no backend works here: %s", top, s.choice.rejectedSummary())
		}
	default:
		s.choice = choice{ChosenBy: "option"}
		if want == "" {
			want, s.choice.ChosenBy = defaultBackend, "default"
		}
		if err := s.start(want); err != nil {
			if errors.Is(err, ErrNotSupported) {
				return nil, err // the reason alone ("device-mapper not available: ...")
			}
			return nil, fmt.Errorf("graph store %s: backend %s: %w", top, want, err)
		}
	}
	s.choice.Backend = s.be.name()
	if recorded == nil {
		raw, _ := json.MarshalIndent(s.choice, "", "  ")
		if err := writeFileAtomic(topFS, choiceFile, append(raw, '\n')); err != nil {
			return nil, fmt.Errorf("graph store %s: recording the backend: %w", top, err)
		}
	}
	if err := s.cleanOrphans(); err != nil {
		return nil, fmt.Errorf("graph store %s: %w", top, err)
	}
	ok = true
	return s, nil
}

func (c choice) rejectedSummary() string {
	parts := make([]string, len(c.Rejected))
	for i, r := range c.Rejected {
		parts[i] = r.Backend + ": " + r.Reason
	}
	return strings.Join(parts, "; ")
}

// start opens the named backend and its subtree of the store. On failure
// nothing of a fresh subtree is left behind.
func (s *Store) start(name string) error {
	s.path = s.top + "/" + name
	_, statErr := os.Lstat(s.path)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	err := s.openSubtree()
	if err == nil {
		s.be, err = openBackend(name, s)
	}
	if err != nil {
		if s.root != nil {
			s.root.Close()
			s.root = nil
		}
		if mounts, merr := mountPoints(); fresh && merr == nil && !mountedBelow(mounts, s.path) {
			os.RemoveAll(s.path)
		}
		s.path = ""
		return err
	}
	return nil
}

// openSubtree makes <root>/<backend> and its directories, and opens it.
func (s *Store) openSubtree() error {
	if err := os.Mkdir(s.path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	root, err := os.OpenRoot(s.path)
	if err != nil {
		return err
	}
	for _, d := range storeDirs {
		if err := root.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			root.Close()
			return err
		}
	}
	s.root = root
	return nil
}

// cleanOrphans removes what a crash left: pieces of layers that were
// never registered (or whose removal was interrupted), temp files of
// atomic writes, reference counts of layers that are gone, and the
// staging area. It runs under the store lock, so no Create is under way.
// Only failing to list is an error: a leftover that cannot be removed now
// (something mounted on it) harms nothing and is retried at the next open.
func (s *Store) cleanOrphans() error {
	registered := map[string]bool{}
	ids, err := s.ids()
	if err != nil {
		return err
	}
	for _, id := range ids {
		registered[id] = true
	}
	for _, dir := range []string{dirDiff, dirMeta, dirMnt, dirWork, dirRefs, dirLayers} {
		f, err := s.root.Open(dir)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		staging := false
		for _, n := range names {
			switch {
			case archive.IsStagingName(n):
				staging = true
			case strings.HasPrefix(n, ".tmp-"):
				s.root.RemoveAll(layerPath(dir, n))
			case !registered[n]:
				s.removePieces(n, "") // dangling links go below
			}
		}
		if staging {
			// An ApplyDiff's workspace beside diff/<id>, left by a crash
			// (RemoveStaging waits for one that is live). It holds hard
			// links to the layer's files; only archive knows whose it is.
			for _, id := range ids {
				archive.RemoveStaging(s.abs(layerPath(dirDiff, id)))
			}
		}
	}
	if err := s.dropStaleCounts(); err != nil {
		return err
	}
	links, err := readDirNames(s.root, dirLinks)
	if err != nil {
		return err
	}
	for _, link := range links {
		target, err := s.root.Readlink(layerPath(dirLinks, link))
		if err != nil || !registered[strings.TrimPrefix(target, "../"+dirDiff+"/")] {
			s.root.Remove(layerPath(dirLinks, link))
		}
	}
	return s.clearStaging()
}

// dropStaleCounts reconciles every reference count with the mounts (see
// Store.users): a count for a layer that is not mounted, or whose mount is
// dead (detached here), or from an earlier boot, is removed.
func (s *Store) dropStaleCounts() error {
	ids, err := readDirNames(s.root, dirRefs)
	if err != nil {
		return err
	}
	for _, id := range ids {
		h, err := s.hold("open", id)
		if err != nil {
			continue // unregistered: removed with the orphans
		}
		if h.users == 0 {
			s.setUsers(id, 0)
		}
		h.release()
	}
	return nil
}

// clearStaging empties staging/ of what dead processes left. Each entry
// is named after the process using it (see newStaging); entries of live
// processes, and anything with a mount in it, stay.
func (s *Store) clearStaging() error {
	names, err := readDirNames(s.root, dirStaging)
	if err != nil {
		return err
	}
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	for _, n := range names {
		pid, _, _ := strings.Cut(n, ".")
		if processAlive(pid) || mountedBelow(mounts, s.abs(layerPath(dirStaging, n))) {
			continue
		}
		s.root.RemoveAll(layerPath(dirStaging, n))
	}
	return nil
}

// newStaging makes a fresh directory under staging/ for this process and
// returns its path relative to the store's subtree.
func (s *Store) newStaging(purpose string) (string, error) {
	rel := layerPath(dirStaging, fmt.Sprintf("%d.%s.%s", os.Getpid(), purpose, newLink()[:8]))
	if err := s.root.Mkdir(rel, 0o700); err != nil {
		return "", err
	}
	return rel, nil
}

func processAlive(pid string) bool {
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return false
	}
	err = unix.Kill(n, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

func mountedBelow(mounts map[string]bool, dir string) bool {
	for m := range mounts {
		if sys.PathWithin(m, dir) {
			return true
		}
	}
	return false
}

func readChoice(topFS *os.Root) (*choice, error) {
	raw, err := topFS.ReadFile(choiceFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c choice
	if err := json.Unmarshal(raw, &c); err != nil || !contains(backendNames, c.Backend) {
		return nil, fmt.Errorf("%s: not a backend record (%q)", choiceFile, strings.TrimSpace(string(raw)))
	}
	return &c, nil
}

// readBootID identifies this boot, so reference counts written before a
// reboot (when every mount went away) are not believed.
func readBootID() (string, error) {
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the boot id: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

func canonical(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
