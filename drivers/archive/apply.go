package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// ApplyOptions says how Apply writes a layer.
type ApplyOptions struct {
	// Format of the markers written into the layer dir for OCI whiteouts and
	// opaque dirs. Overlay markers need mknod of a char 0/0 (root, or a
	// kernel that allows unprivileged whiteouts); when it is refused, Apply
	// writes the rest in aufs form and logs it once, as the write path does.
	Format whiteout.Format
	// Flatten: the layer dir is a full copy of the parent (vfs backend); a
	// whiteout deletes the path, an opaque marker empties the dir, instead
	// of writing markers.
	Flatten bool
	// AllowDevices: create char/block device nodes (needs CAP_MKNOD); when
	// false they are refused with an error.
	AllowDevices bool
	// Progress, if non-nil, is called with bytes of tar stream consumed so
	// far (for a CLI progress line).
	Progress func(n int64)
	// Logger receives the note that Apply fell back to aufs whiteouts;
	// nil means the standard logger (log.Default()), where it went before.
	Logger *log.Logger
}

// Apply unpacks an OCI image-spec layer tar into dir. Atomic: it builds the
// result in a staging dir beside dir (same filesystem) and swaps it in; any
// error (hostile entry, truncated stream, I/O) leaves dir exactly as before
// and nothing outside dir. Returns the size as DiffSize would report it:
// the bytes of the regular files the tar wrote, hard links counted once.
//
// dir must exist. Entries are applied with OCI semantics: a directory over
// a directory merges (its attributes replaced), anything else replaces what
// was there; ".wh.name" and ".wh..wh..opq" hide what lower layers hold
// (written as markers in opts.Format, or, with Flatten, by deleting), but
// never what the same tar creates. Refused, with an error naming the entry
// (errors.Is(err, ErrRefused)): absolute names, ".." components, entries
// under a symlink or under a ".wh." directory, hard links to anything not
// already in the layer, devices without AllowDevices, char 0/0 entries,
// union-internal xattrs, duplicate entries, sparse and unknown entry types,
// whiteouts naming nothing, "." or "..", names over Linux's limits. A
// stream that ends early (in a header, in content, or before the
// end-of-archive blocks) is an error too.
func Apply(dir string, r io.Reader, opts ApplyOptions) (size int64, err error) {
	st, err := openStage(dir)
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", dir, err)
	}
	defer st.close()
	u := newUnpacker(st, opts)
	if err = u.unpack(r); err == nil {
		err = st.finishDirs()
	}
	if err == nil {
		err = st.commit()
	}
	if err != nil {
		st.abort()
		return 0, fmt.Errorf("apply %s: %w", dir, err)
	}
	return u.size, nil
}

// unpacker applies the entries of one tar into the staging tree.
type unpacker struct {
	st   *stage
	root int // the staging tree
	opts ApplyOptions
	wo   *whiteout.FallbackWriter
	// seen: every entry name met, to refuse duplicates.
	seen map[string]bool
	// created: objects this tar made (its own entries and the parent
	// directories they implied). OCI: a whiteout or opaque marker hides
	// lower layers only, never the same layer's objects.
	created map[string]bool
	// holds: directories with a created object somewhere below them.
	holds map[string]bool
	// opaqued: directories this tar made opaque; whiteouts below them are
	// redundant and not written.
	opaqued map[string]bool
	// plnk: aufs hard-link sources stored under <box>/plnk (legacy Docker
	// aufs tars link to /.wh..wh.plnk/<name>), and whether each was linked
	// into the layer yet (for the size).
	plnk map[string]bool
	size int64
}

// plnkDir is where Docker's aufs driver kept hard-link sources; tars it
// exported link to files in it.
const plnkDir = whiteout.AufsMetaPrefix + "plnk"

func newUnpacker(st *stage, opts ApplyOptions) *unpacker {
	ns := whiteout.WritableNamespace()
	return &unpacker{
		st: st, root: st.treeFD, opts: opts,
		wo:      whiteout.NewFallbackWriter(whiteout.Writer{Format: opts.Format, XattrNamespace: ns}, "for the rest of this layer", opts.Logger),
		seen:    map[string]bool{},
		created: map[string]bool{},
		holds:   map[string]bool{},
		opaqued: map[string]bool{},
		plnk:    map[string]bool{},
	}
}

// byteCount counts the bytes of a tar stream and reports them to an
// optional Progress callback.
type byteCount struct {
	n        int64
	progress func(int64)
}

func (c *byteCount) add(n int) {
	if n > 0 {
		c.n += int64(n)
		if c.progress != nil {
			c.progress(c.n)
		}
	}
}

// countingReader counts the bytes of tar stream consumed, for Progress and
// for telling a complete archive from one cut at an entry boundary.
type countingReader struct {
	r io.Reader
	byteCount
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.add(n)
	return n, err
}

// headerOnly are the entry types whose content the stream does not hold
// after the header: the tar reader ignores their Size, or (PAX global
// headers) has read the content already.
func headerOnly(typ byte) bool {
	switch typ {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo, tar.TypeXGlobalHeader:
		return true
	}
	return false
}

func (u *unpacker) unpack(r io.Reader) error {
	cr := &countingReader{r: r, byteCount: byteCount{progress: u.opts.Progress}}
	tr := tar.NewReader(cr)
	last := ""
	var end int64 // where the last entry's content ends in the stream
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// The reader stops at the first zero block, or at EOF where a
			// header should start: only the first is a complete archive.
			if cr.n < end+512 {
				return truncated(last, fmt.Errorf("the stream ends without the end-of-archive blocks"))
			}
			return nil
		}
		if err != nil {
			return truncated(last, err)
		}
		end = cr.n
		if !headerOnly(hdr.Typeflag) {
			end += (hdr.Size + 511) &^ 511
		}
		if err := u.entry(hdr, tr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("layer tar: truncated in the content of entry %s: %w", quoteName(hdr.Name), err)
			}
			if _, ok := errors.AsType[*EntryError](err); !ok {
				err = &EntryError{Entry: hdr.Name, Err: err}
			}
			return err
		}
		last = hdr.Name
	}
}

func truncated(last string, err error) error {
	if last == "" {
		return fmt.Errorf("layer tar: truncated or corrupt at the first entry: %w", err)
	}
	return fmt.Errorf("layer tar: truncated or corrupt after entry %s: %w", quoteName(last), err)
}

// entry applies one tar entry.
func (u *unpacker) entry(hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide PAX defaults; nothing to create
	}
	p, err := parseEntryName(hdr.Name)
	if err != nil {
		return err
	}
	key := p.String()
	if u.seen[key] {
		return refuse("duplicate entry for %q: an OCI layer must not repeat a path", key)
	}
	u.seen[key] = true
	// aufs bookkeeping at the root (.wh..wh.aufs, .wh..wh.plnk/...,
	// .wh..wh.orph): not layer content, as moby and containerd skip it.
	if !p.isRoot() && strings.HasPrefix(p[0], whiteout.AufsMetaPrefix) && key != whiteout.AufsOpaque {
		if p[0] == plnkDir && len(p) == 2 && hdr.Typeflag == tar.TypeReg {
			return u.storePlnk(p.base(), hdr, content)
		}
		return nil
	}
	if err := p.checkDirs(); err != nil {
		return err
	}
	if p.isRoot() {
		if hdr.Typeflag != tar.TypeDir {
			return refuse("the layer root must be a directory")
		}
		return u.object(p, hdr, content)
	}
	base := p.base()
	switch {
	case base == whiteout.AufsOpaque:
		return u.opaque(p.parent())
	case strings.HasPrefix(base, whiteout.AufsMetaPrefix):
		return nil // other aufs bookkeeping names: never content
	case whiteout.IsReserved(base):
		target, ok := whiteout.AufsTarget(base)
		if !ok {
			return refuse("whiteout %q names no entry (want .wh.<name>, not \"\", \".\" or \"..\")", base)
		}
		return u.whiteout(p.parent(), target)
	}
	return u.object(p, hdr, content)
}

// markCreated records that the tar made p.
func (u *unpacker) markCreated(p entryPath) {
	u.created[p.String()] = true
	for q := p.parent(); ; q = q.parent() {
		u.holds[q.String()] = true
		if q.isRoot() {
			return
		}
	}
}

// underOpaque reports whether p or a directory above it was made opaque by
// this tar.
func (u *unpacker) underOpaque(p entryPath) bool {
	for i := len(p); i >= 0; i-- {
		if u.opaqued[p[:i].String()] {
			return true
		}
	}
	return false
}

// openDir opens the directory p of the staging tree (O_PATH), creating
// missing directories on the way when create is set (an entry whose parent
// the tar does not list, as moby and containerd allow). It never passes
// through a symlink, and a directory created where the layer held a
// whiteout is made opaque, so the lower copy it replaces stays hidden.
// With create unset a missing directory returns ENOENT.
func (u *unpacker) openDir(p entryPath, create bool) (int, error) {
	fd, err := sys.OpenDirBeneath(u.root, p.String())
	if err == nil || (errors.Is(err, unix.ENOENT) && !create) {
		return fd, err
	}
	cur, err := unix.Dup(u.root)
	if err != nil {
		return -1, err
	}
	for i, c := range p {
		next, err := sys.OpenDirBeneath(cur, c)
		if errors.Is(err, unix.ENOENT) && create {
			err = u.implicitDir(cur, p[:i+1])
			if err == nil {
				next, err = sys.OpenDirBeneath(cur, c)
			}
		}
		if err != nil && (errors.Is(err, unix.ENOENT) || sys.IsNotDir(err)) {
			err = u.explainParent(cur, p[:i+1], err)
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// implicitDir makes the directory p (missing, or a whiteout) in dirFD.
func (u *unpacker) implicitDir(dirFD int, p entryPath) error {
	wasWhiteout, err := u.clearWhiteout(dirFD, p.base())
	if err != nil {
		return err
	}
	if err := unix.Mkdirat(dirFD, p.base(), 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", p, err)
	}
	u.markCreated(p)
	if wasWhiteout {
		return u.makeOpaque(dirFD, p)
	}
	return nil
}

// explainParent turns a failure to open a parent directory into a refusal
// that says what is in the way.
func (u *unpacker) explainParent(dirFD int, p entryPath, err error) error {
	st, ok, serr := lstatAt(dirFD, p.base())
	switch {
	case serr != nil || !ok:
		return fmt.Errorf("parent %s: %w", p, err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return refuse("parent %q is a symlink: entries are never written through symlinks", p.String())
	case !isDir(&st):
		return refuse("parent %q is not a directory", p.String())
	}
	return fmt.Errorf("parent %s: %w", p, err)
}

// clearWhiteout removes the markers that say name is deleted in the
// directory dirFD (a char 0/0 or xattr whiteout at name, a .wh.name file),
// before an object of the same layer takes the name. It reports whether
// there was one. With Flatten there are no markers to find.
func (u *unpacker) clearWhiteout(dirFD int, name string) (bool, error) {
	if u.opts.Flatten {
		return false, nil
	}
	found := false
	st, ok, err := lstatAt(dirFD, name)
	if err != nil {
		return false, err
	}
	if ok && (whiteout.IsCharWhiteout(&st) || whiteout.IsXattrWhiteout(dirFD, name, &st)) {
		if err := unix.Unlinkat(dirFD, name, 0); err != nil {
			return false, fmt.Errorf("remove whiteout %s: %w", name, err)
		}
		found = true
	}
	aufs := whiteout.AufsName(name)
	if len(aufs) <= maxNameLen {
		err := unix.Unlinkat(dirFD, aufs, 0)
		if err == nil {
			found = true
		} else if !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("remove whiteout %s: %w", aufs, err)
		}
	}
	return found, nil
}

// makeOpaque marks the directory name in dirFD (p in the tree) opaque.
func (u *unpacker) makeOpaque(dirFD int, p entryPath) error {
	fd, err := sys.OpenDirBeneath(dirFD, p.base())
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return u.wo.Writer().MakeOpaque(fd)
}

// whiteout applies ".wh.name" in the directory dir.
func (u *unpacker) whiteout(dir entryPath, name string) error {
	p := dir.child(name)
	if u.opts.Flatten {
		fd, err := u.openDir(dir, false)
		if errors.Is(err, unix.ENOENT) {
			return nil // nothing there to delete
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if u.created[p.String()] {
			return nil // the same layer's object: a whiteout hides lower ones only
		}
		return sys.RemoveAll(fd, name)
	}
	if u.underOpaque(dir) {
		return nil // everything below is hidden already
	}
	fd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	st, ok, err := lstatAt(fd, name)
	if err != nil {
		return err
	}
	switch {
	case ok && u.created[p.String()]:
		// The same layer made name: it stays, and the lower copies are
		// hidden by it; a directory must also stop merging with them.
		if isDir(&st) {
			return u.makeOpaque(fd, p)
		}
		return nil
	case ok && whiteout.IsCharWhiteout(&st):
		return nil // already a whiteout
	case ok:
		// Content the layer held before this tar: the tar deletes it.
		if err := sys.RemoveAll(fd, name); err != nil {
			return err
		}
	}
	_, err = u.wo.Whiteout(fd, name)
	return err
}

// opaque applies ".wh..wh..opq" in the directory dir: everything lower
// layers (and, for a non-empty layer dir, the layer's earlier content)
// hold below dir goes; what this tar creates stays, in whatever order the
// entries come.
func (u *unpacker) opaque(dir entryPath) error {
	fd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := u.clearBelow(fd, dir); err != nil {
		return err
	}
	u.opaqued[dir.String()] = true
	if u.opts.Flatten {
		return nil
	}
	return u.wo.Writer().MakeOpaque(fd)
}

// clearBelow removes what the directory dirFD (dir in the tree) holds that
// this tar did not create. Directories the tar created or that lead to
// created objects stay, emptied of everything else the same way; opaque
// markers stay (they say the same thing again).
func (u *unpacker) clearBelow(dirFD int, dir entryPath) error {
	entries, err := sys.ReadDir(dirFD, ".")
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := dir.child(e.Name).String()
		keep := u.holds[child] || u.created[child]
		switch {
		case e.Name == whiteout.AufsOpaque:
			continue
		case keep && isDirEntry(dirFD, e):
			fd, err := sys.OpenDirBeneath(dirFD, e.Name)
			if err != nil {
				return err
			}
			err = u.clearBelow(fd, dir.child(e.Name))
			unix.Close(fd)
			if err != nil {
				return err
			}
		case keep:
		default:
			if err := sys.RemoveAll(dirFD, e.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// isDirEntry reports whether a raw directory entry is a directory.
func isDirEntry(dirFD int, e sys.DirEntry) bool {
	if e.Type != unix.DT_UNKNOWN {
		return e.Type == unix.DT_DIR
	}
	st, ok, err := lstatAt(dirFD, e.Name)
	return err == nil && ok && isDir(&st)
}
