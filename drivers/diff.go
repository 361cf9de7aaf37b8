package drivers

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// The diff side works in one of two ways, chosen per layer:
//
//   - native: a layered backend's diff/<id> already is the layer's
//     changes, markers included; archive reads it directly (Diff, Size)
//     or against the union of its ancestors (Changes).
//   - trees: compare two complete trees, the parent's and the layer's.
//     That is the only way for full-tree backends (vfs, devicemapper),
//     and the fallback for a layered layer whose directory was renamed
//     through a mount (an overlay.redirect xattr: its lower content is
//     not in diff/<id>), as Docker's overlay2 falls back to its naive
//     diff when redirect_dir is on.

// loadForDiff reads the layer and checks parent against its registered one.
func (s *Store) loadForDiff(op, id, parent string) (*layer, error) {
	l, err := readLayer(s.root, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return l, checkParent(op, l, parent)
}

// checkParent accepts "" or the layer's registered parent: every backend
// keeps a layer relative to that one only.
func checkParent(op string, l *layer, parent string) error {
	if parent != "" && parent != l.Parent {
		return fmt.Errorf("%s %s: %q is %w (its parent is %q)", op, l.ID, parent, ErrWrongParent, l.Parent)
	}
	return nil
}

// native reports whether l's diff dir can be read as its diff directly.
func (s *Store) native(l *layer) (bool, error) {
	if s.be.kind() != layered {
		return false, nil
	}
	renamed, err := hasRedirects(s.abs(layerPath(dirDiff, l.ID)))
	return !renamed, err
}

// Diff streams the layer's OCI layer tar. The stream is produced while it
// is read; an error ends it with that error.
func (s *Store) Diff(id, parent string) (io.ReadCloser, error) {
	l, err := s.loadForDiff("diff", id, parent)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(s.writeDiff(pw, l))
	}()
	return pr, nil
}

func (s *Store) writeDiff(w io.Writer, l *layer) error {
	native, err := s.native(l)
	if err != nil {
		return fmt.Errorf("diff %s: %w", l.ID, err)
	}
	if native {
		return archive.Diff(w, s.abs(layerPath(dirDiff, l.ID)), archive.DiffOptions{})
	}
	return s.withTrees(l, func(parentDir, dir string) error {
		return archive.DiffTrees(w, parentDir, dir, archive.DiffOptions{})
	})
}

// Changes lists the layer's changes, as docker diff does.
func (s *Store) Changes(id, parent string) ([]archive.Change, error) {
	l, err := s.loadForDiff("changes", id, parent)
	if err != nil {
		return nil, err
	}
	native, err := s.native(l)
	if err != nil {
		return nil, fmt.Errorf("changes %s: %w", id, err)
	}
	if !native {
		var out []archive.Change
		err := s.withTrees(l, func(parentDir, dir string) (err error) {
			out, err = archive.ChangesTrees(parentDir, dir)
			return err
		})
		return out, err
	}
	var parentFS fs.FS
	if l.Parent != "" {
		stack, err := s.parentStack(l)
		if err != nil {
			return nil, fmt.Errorf("changes %s: %w", id, err)
		}
		defer stack.Close()
		parentFS = stack.FS()
	}
	return archive.Changes(s.abs(layerPath(dirDiff, l.ID)), parentFS)
}

// parentStack opens, without mounting, the union of l's ancestors.
func (s *Store) parentStack(l *layer) (*branches.Stack, error) {
	lowers := make([]string, len(l.Ancestors))
	for i, a := range l.Ancestors {
		lowers[i] = escapeOption(s.abs(layerPath(dirDiff, a)))
	}
	opts, err := branches.ParseOptions([]string{"lowerdir=" + strings.Join(lowers, ":")})
	if err != nil {
		return nil, err
	}
	return branches.Open(opts, "")
}

// escapeOption protects the characters strata's option syntax gives a
// meaning to inside one path.
func escapeOption(p string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`, `"`, `\"`).Replace(p)
}

// ApplyDiff unpacks an OCI layer tar into the layer in the backend's
// native form.
func (s *Store) ApplyDiff(id, parent string, diff io.Reader) (int64, error) {
	h, err := s.hold("apply", id)
	if err != nil {
		return 0, err
	}
	defer h.release()
	l := h.layer
	if err := checkParent("apply", l, parent); err != nil {
		return 0, err
	}
	// Swapping the directory under a live mount would leave the mount
	// showing the old one (or, for kernel overlay, undefined results).
	if err := h.refuseMounted("apply", "unmount it first"); err != nil {
		return 0, err
	}
	// The same for the layers on top of it, mounted or not: what they
	// show would change under them.
	children, err := s.children(id)
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", id, err)
	}
	if len(children) > 0 {
		return 0, fmt.Errorf("apply %s: %w: %s; apply to a layer before putting others on it", id, ErrHasChildren, strings.Join(children, ", "))
	}
	dir, release, err := s.be.contentDir(l)
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", id, err)
	}
	size, err := archive.Apply(dir, diff, archive.ApplyOptions{
		Format:       s.be.markers(),
		Flatten:      s.be.kind() == fullTree,
		AllowDevices: os.Geteuid() == 0,
	})
	if rerr := release(); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", id, err)
	}
	return size, nil
}

// DiffSize is the bytes of regular files the layer adds or changes.
func (s *Store) DiffSize(id, parent string) (int64, error) {
	l, err := s.loadForDiff("diff-size", id, parent)
	if err != nil {
		return 0, err
	}
	native, err := s.native(l)
	if err != nil {
		return 0, fmt.Errorf("diff-size %s: %w", id, err)
	}
	if native {
		return archive.Size(s.abs(layerPath(dirDiff, l.ID)))
	}
	var size int64
	err = s.withTrees(l, func(parentDir, dir string) error {
		changes, err := archive.ChangesTrees(parentDir, dir)
		if err != nil {
			return err
		}
		size, err = archive.ChangesSize(dir, changes)
		return err
	})
	return size, err
}

// withTrees runs fn with the complete trees of l's parent (the empty
// directory for a base layer) and of l, each held with Get for the time.
func (s *Store) withTrees(l *layer, fn func(parentDir, dir string) error) error {
	dir, err := s.Get(l.ID, "")
	if err != nil {
		return err
	}
	defer s.Put(l.ID)
	parentDir := s.abs(dirEmpty)
	if l.Parent != "" {
		if parentDir, err = s.Get(l.Parent, ""); err != nil {
			return err
		}
		defer s.Put(l.Parent)
	}
	return fn(parentDir, dir)
}

// hasRedirects reports whether any directory in the layer dir carries an
// overlay.redirect xattr (it was renamed through a mount with lower
// content).
func hasRedirects(dir string) (bool, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	return dirHasRedirects(fd, ".", ".")
}

// dirHasRedirects looks at parentFD/name, which is rel in the layer, and
// below it.
func dirHasRedirects(parentFD int, name, rel string) (bool, error) {
	fd, err := sys.OpenDirBeneath(parentFD, name)
	if err != nil {
		return false, fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(fd)
	m, err := whiteout.ReadDirMarkers(fd, rel)
	if err != nil {
		return false, fmt.Errorf("%s: %w", rel, err)
	}
	if m.Redirect != "" {
		return true, nil
	}
	entries, err := sys.ReadDir(fd, ".")
	if err != nil {
		return false, fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range entries {
		isDir := e.Type == unix.DT_DIR
		if e.Type == unix.DT_UNKNOWN {
			var st unix.Stat_t
			isDir = sys.Lstatat(fd, e.Name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
		}
		if !isDir {
			continue
		}
		if found, err := dirHasRedirects(fd, e.Name, strings.TrimPrefix(rel+"/"+e.Name, "./")); found || err != nil {
			return found, err
		}
	}
	return false, nil
}
