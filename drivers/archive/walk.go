package archive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// object is one file, directory, symlink, fifo, socket or device of a
// layer, ready to be written as a tar entry or compared with a parent.
type object struct {
	rel    string      // path in the layer, "a/b"
	st     unix.Stat_t // its lstat
	xattrs []xattr     // sorted, the union's own left out
	target string      // a symlink's target
	// open returns a regular file's content.
	open func() (io.ReadCloser, error)
}

// layerEvents receives a layer's content in tar order: for each directory,
// its opaque marker, then its whiteouts, then its entries by name, each
// directory before what it holds.
type layerEvents interface {
	// opaque: dir ("." for the root) hides everything lower layers hold
	// in it; present are the names the layer itself has there.
	opaque(dir string, present map[string]bool) error
	// whiteout: name in dir is deleted.
	whiteout(dir, name string) error
	object(o *object) error
}

// layerWalker reads one layer's own directory: markers in every dialect
// package whiteout reads become OCI whiteouts and opaque markers, in one
// canonical form whatever the dialect (a ".wh.x" beside an x of the same
// layer is dropped, or, for a directory x, said as "x is opaque").
type layerWalker struct {
	// parent is the merged view of the layer's parents, read for the
	// lower content of renamed directories (overlay.redirect); nil when
	// there is none.
	parent fs.FS
	ev     layerEvents
}

// walkLayer sends the content of the layer directory dir to ev.
func walkLayer(dir string, parent fs.FS, ev layerEvents) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("layer %s: %w", dir, err)
	}
	defer unix.Close(fd)
	markers, err := whiteout.ReadDirMarkers(fd, ".")
	if err != nil {
		return fmt.Errorf("layer %s: %w", dir, err)
	}
	w := &layerWalker{parent: parent, ev: ev}
	if err := w.dir(".", fd, markers, false); err != nil {
		return fmt.Errorf("layer %s: %w", dir, err)
	}
	return nil
}

// listing is one layer directory's names and what it hides below.
type listing struct {
	names   []sys.DirEntry  // real entries, by name
	present map[string]bool // names, as a set
	hidden  []string        // names whited out (and not present), sorted
	opaque  map[string]bool // present directories that also carry a whiteout: opaque
	markers whiteout.DirMarkers
}

// list reads the directory dirFD of a layer.
func list(dirFD int, markers whiteout.DirMarkers) (*listing, error) {
	raw, err := sys.ReadDir(dirFD, ".")
	if err != nil {
		return nil, err
	}
	names, hidden, err := whiteout.Classify(dirFD, raw, markers)
	if err != nil {
		return nil, err
	}
	l := &listing{names: names, present: map[string]bool{}, opaque: map[string]bool{}, markers: markers}
	slices.SortFunc(l.names, func(a, b sys.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	for _, n := range names {
		l.present[n.Name] = true
	}
	for _, n := range names {
		if _, ok := hidden[n.Name]; ok && n.Type == unix.DT_DIR {
			l.opaque[n.Name] = true
		}
	}
	for name := range hidden {
		if !l.present[name] {
			l.hidden = append(l.hidden, name)
		}
	}
	slices.Sort(l.hidden)
	return l, nil
}

func (l *listing) isOpaque() bool { return l.markers.Opaque != whiteout.NoMarker }

// dir sends the directory dirFD (rel in the layer) and everything below it.
func (w *layerWalker) dir(rel string, dirFD int, markers whiteout.DirMarkers, opaque bool) error {
	l, err := list(dirFD, markers)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if l.isOpaque() || opaque {
		if err := w.ev.opaque(rel, l.present); err != nil {
			return err
		}
	}
	for _, name := range l.hidden {
		if err := w.ev.whiteout(rel, name); err != nil {
			return err
		}
	}
	for _, e := range l.names {
		childRel := joinRel(rel, e.Name)
		o, err := w.send(dirFD, e.Name, childRel)
		if err != nil {
			return err
		}
		if !isDir(&o.st) {
			continue
		}
		if err := w.childDir(dirFD, e.Name, childRel, l.opaque[e.Name]); err != nil {
			return err
		}
	}
	return nil
}

// send reads the object name in dirFD (rel in the layer) and sends it.
func (w *layerWalker) send(dirFD int, name, rel string) (*object, error) {
	o, err := layerObject(dirFD, name, rel)
	if err == nil {
		err = w.ev.object(o)
	}
	return o, err
}

func (w *layerWalker) childDir(dirFD int, name, rel string, opaque bool) error {
	fd, err := sys.OpenDirBeneath(dirFD, name)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(fd)
	markers, err := whiteout.ReadDirMarkers(fd, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if markers.Redirect == "" {
		return w.dir(rel, fd, markers, opaque)
	}
	// A renamed directory (kernel overlay redirect_dir, or strata's own
	// rename): its lower content is at the redirect path in the parent
	// layers. OCI has no rename, so the tar says "opaque, with all of its
	// content" (the old name's whiteout is in the layer already).
	if w.parent == nil {
		return fmt.Errorf("%s: renamed directory (overlay.redirect to /%s): writing its content needs the parent layers' view (DiffOptions.Parent)", rel, markers.Redirect)
	}
	lower := markers.Redirect
	if markers.Opaque != whiteout.NoMarker || opaque {
		lower = ""
	}
	return w.merged(rel, fd, markers, lower, true)
}

// merged sends the full content of a directory whose lower copy is at
// lower in the parent view ("" for none): the layer's own entries (upperFD,
// -1 for none) over the lower ones, the layer's whiteouts and opaque
// markers applied. top says rel is the renamed directory itself, which is
// sent as opaque.
func (w *layerWalker) merged(rel string, upperFD int, markers whiteout.DirMarkers, lower string, top bool) error {
	up := &listing{present: map[string]bool{}, opaque: map[string]bool{}}
	if upperFD >= 0 {
		var err error
		if up, err = list(upperFD, markers); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if up.isOpaque() {
			lower = ""
		}
	}
	lowerDirs := map[string]bool{}
	names := map[string]bool{}
	for name := range up.present {
		names[name] = true
	}
	if lower != "" {
		entries, err := fs.ReadDir(w.parent, lower)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%s: lower content at /%s: %w", rel, lower, err)
		}
		for _, e := range entries {
			if slices.Contains(up.hidden, e.Name()) || whiteout.IsReserved(e.Name()) {
				continue
			}
			names[e.Name()] = true
			lowerDirs[e.Name()] = e.IsDir()
		}
	}
	if top {
		if err := w.ev.opaque(rel, names); err != nil {
			return err
		}
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range sorted {
		childRel := joinRel(rel, name)
		lowerChild := ""
		if lower != "" && lowerDirs[name] {
			lowerChild = path.Join(lower, name)
		}
		if !up.present[name] {
			if err := w.lowerOnly(childRel, path.Join(lower, name)); err != nil {
				return err
			}
			continue
		}
		o, err := w.send(upperFD, name, childRel)
		if err != nil {
			return err
		}
		if !isDir(&o.st) {
			continue
		}
		fd, err := sys.OpenDirBeneath(upperFD, name)
		if err != nil {
			return fmt.Errorf("%s: %w", childRel, err)
		}
		cm, err := whiteout.ReadDirMarkers(fd, childRel)
		if err == nil {
			switch {
			case cm.Redirect != "":
				lowerChild = cm.Redirect
			case cm.Opaque != whiteout.NoMarker || up.opaque[name]:
				lowerChild = ""
			}
			err = w.merged(childRel, fd, cm, lowerChild, false)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// lowerOnly sends an object of the parent view, at lowerPath there and
// rel in the layer, and everything below it.
func (w *layerWalker) lowerOnly(rel, lowerPath string) error {
	o, err := parentObject(w.parent, lowerPath, rel)
	if err != nil {
		return err
	}
	if err := w.ev.object(o); err != nil {
		return err
	}
	if !isDir(&o.st) {
		return nil
	}
	entries, err := fs.ReadDir(w.parent, lowerPath)
	if err != nil {
		return fmt.Errorf("%s: lower content at /%s: %w", rel, lowerPath, err)
	}
	for _, e := range entries {
		if whiteout.IsReserved(e.Name()) {
			continue
		}
		if err := w.lowerOnly(joinRel(rel, e.Name()), path.Join(lowerPath, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// layerObject reads the object name in dirFD (rel in the layer).
func layerObject(dirFD int, name, rel string) (*object, error) {
	o := &object{rel: rel}
	if err := sys.Lstatat(dirFD, name, &o.st); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if o.st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		return o, nil // no tar type for it; see tarEmitter.object
	}
	var err error
	if o.xattrs, err = readXattrs(dirFD, name); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	switch o.st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		if o.target, err = sys.Readlinkat(dirFD, name); err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
	case unix.S_IFREG:
		o.open = func() (io.ReadCloser, error) {
			fd, err := sys.OpenBeneath(dirFD, name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return nil, err
			}
			return os.NewFile(uintptr(fd), rel), nil
		}
	}
	return o, nil
}

// parentObject reads the object at p in the parent view fsys, as rel in
// the layer. The view gives no xattrs, so none are carried.
func parentObject(fsys fs.FS, p, rel string) (*object, error) {
	fi, err := lstatFS(fsys, p)
	if err != nil {
		return nil, fmt.Errorf("%s: lower content at /%s: %w", rel, p, err)
	}
	o := &object{rel: rel}
	o.st, _ = statOf(fi)
	switch o.st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		if o.target, err = fs.ReadLink(fsys, p); err != nil {
			return nil, fmt.Errorf("%s: lower content at /%s: %w", rel, p, err)
		}
	case unix.S_IFREG:
		o.open = func() (io.ReadCloser, error) { return fsys.Open(p) }
	}
	return o, nil
}

// lstatFS stats name in fsys without following a final symlink when fsys
// can (fs.ReadLinkFS).
func lstatFS(fsys fs.FS, name string) (fs.FileInfo, error) {
	if l, ok := fsys.(fs.ReadLinkFS); ok {
		return l.Lstat(name)
	}
	return fs.Stat(fsys, name)
}

// statOf returns the stat of an fs.FileInfo: exact from the views that
// carry one (os.DirFS, branches.Stack.FS), else built from its mode, size
// and time (owner 0:0). ids says whether owner and device are real.
func statOf(fi fs.FileInfo) (st unix.Stat_t, ids bool) {
	switch s := fi.Sys().(type) {
	case *branches.Entry:
		return s.St, true
	case *unix.Stat_t:
		return *s, true
	case *syscall.Stat_t:
		return unix.Stat_t{
			Dev: s.Dev, Ino: s.Ino, Nlink: s.Nlink, Mode: s.Mode, Uid: s.Uid, Gid: s.Gid,
			Rdev: s.Rdev, Size: s.Size, Atim: unix.Timespec(s.Atim), Mtim: unix.Timespec(s.Mtim),
		}, true
	}
	st.Mode = unixMode(fi.Mode())
	st.Size = fi.Size()
	st.Nlink = 1
	st.Mtim = unix.NsecToTimespec(fi.ModTime().UnixNano())
	return st, false
}

// unixMode turns an fs.FileMode into a stat mode.
func unixMode(m fs.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	switch {
	case m.IsDir():
		mode |= unix.S_IFDIR
	case m&fs.ModeSymlink != 0:
		mode |= unix.S_IFLNK
	case m&fs.ModeNamedPipe != 0:
		mode |= unix.S_IFIFO
	case m&fs.ModeSocket != 0:
		mode |= unix.S_IFSOCK
	case m&fs.ModeCharDevice != 0:
		mode |= unix.S_IFCHR
	case m&fs.ModeDevice != 0:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFREG
	}
	return mode
}
