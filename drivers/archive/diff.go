package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/whiteout"
)

// DiffOptions says how Diff and DiffTrees write a layer tar.
type DiffOptions struct {
	// Progress, if non-nil, is called with the bytes of tar written so far.
	Progress func(n int64)
	// Parent is the merged view of the layer's parent chain (B passes
	// branches.Stack.FS() of it). Diff reads it only for a directory the
	// layer renamed (an overlay.redirect xattr, as kernel overlay's
	// redirect_dir and strata's rename write): OCI has no rename, so the
	// tar carries the directory whole, its lower content read from here
	// (without xattrs: an io/fs view has none). Without Parent such a
	// layer is an error. DiffTrees does not use it.
	Parent fs.FS
}

// Diff writes an OCI layer tar of one layer's own directory (its diff dir,
// markers in any dialect that whiteout/ reads) to w: .wh.<name> for
// whiteouts, .wh..wh..opq for opaque dirs, hard links as tar links, xattrs
// (but not union-internal ones) as PAX records, deterministic order and
// headers.
//
// The order is a depth-first walk with names sorted bytewise, and in each
// directory its opaque marker and whiteouts come before its entries (as
// the OCI spec asks). Headers carry mode, owner (numeric; no user names),
// mtime to the nanosecond, xattrs; never atime or ctime. Markers are empty
// regular files, mode 0600, owner 0:0, mtime 0, whatever their dialect
// on disk, so the same layer in overlay or aufs form gives the same tar.
// The layer root itself is not an entry. aufs bookkeeping (.wh..wh.aufs,
// .wh..wh.plnk, .wh..wh.orph) and strata's scratch (.wh..wh.strata) are
// skipped; sockets are skipped (tar has no type for them).
func Diff(w io.Writer, dir string, opts DiffOptions) error {
	e := newTarEmitter(w, opts.Progress)
	if err := walkLayer(dir, opts.Parent, e); err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	return e.close()
}

// DiffTrees writes an OCI layer tar of the difference between two full
// trees (vfs backend): what ChangesTrees lists, added and modified objects
// whole, deletions as .wh.<name>, in Diff's order and header form.
func DiffTrees(w io.Writer, parent, child string, opts DiffOptions) error {
	tc, err := compareTrees(parent, child)
	if err != nil {
		return fmt.Errorf("diff %s against %s: %w", child, parent, err)
	}
	defer tc.close()
	e := newTarEmitter(w, opts.Progress)
	if err := tc.emit(e); err != nil {
		return fmt.Errorf("diff %s against %s: %w", child, parent, err)
	}
	return e.close()
}

// tarEmitter writes layer content as tar entries; it is the layerEvents
// of Diff.
type tarEmitter struct {
	tw *tar.Writer
	// links maps an inode with several names to the first name written,
	// which later names link to.
	links map[devIno]string
}

func newTarEmitter(w io.Writer, progress func(int64)) *tarEmitter {
	if progress != nil {
		w = &countingWriter{w: w, byteCount: byteCount{progress: progress}}
	}
	return &tarEmitter{tw: tar.NewWriter(w), links: map[devIno]string{}}
}

func (e *tarEmitter) close() error { return e.tw.Close() }

// markerTime is the mtime of every marker entry: markers have no content
// of their own, and a fixed time keeps the tar independent of when and in
// which dialect the marker was written.
var markerTime = time.Unix(0, 0)

func (e *tarEmitter) marker(name string) error {
	return e.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: 0o600, ModTime: markerTime, Format: tar.FormatPAX,
	})
}

func (e *tarEmitter) opaque(dir string, _ map[string]bool) error {
	return e.marker(joinRel(dir, whiteout.AufsOpaque))
}

func (e *tarEmitter) whiteout(dir, name string) error {
	return e.marker(joinRel(dir, whiteout.AufsName(name)))
}

func (e *tarEmitter) object(o *object) error {
	typ := o.st.Mode & unix.S_IFMT
	if typ == unix.S_IFSOCK {
		return nil
	}
	hdr := &tar.Header{
		Name:    o.rel,
		Mode:    int64(o.st.Mode & 0o7777),
		Uid:     int(o.st.Uid),
		Gid:     int(o.st.Gid),
		ModTime: time.Unix(o.st.Mtim.Unix()),
		Format:  tar.FormatPAX,
	}
	if typ != unix.S_IFDIR && o.st.Nlink > 1 {
		key := devIno{o.st.Dev, o.st.Ino}
		if first, ok := e.links[key]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return e.write(o, hdr)
		}
		e.links[key] = o.rel
	}
	switch typ {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = o.st.Size
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = o.target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(o.st.Rdev))
		hdr.Devminor = int64(unix.Minor(o.st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("%s: unknown file type %#o", o.rel, typ)
	}
	if len(o.xattrs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for _, x := range o.xattrs {
			hdr.PAXRecords[paxXattr+x.Name] = string(x.Value)
		}
	}
	return e.write(o, hdr)
}

// write writes the header and, for a regular file, its content.
func (e *tarEmitter) write(o *object, hdr *tar.Header) error {
	if err := e.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", o.rel, err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	r, err := o.open()
	if err != nil {
		return fmt.Errorf("%s: %w", o.rel, err)
	}
	defer r.Close()
	if _, err := io.CopyN(e.tw, r, hdr.Size); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("it shrank while being read")
		}
		return fmt.Errorf("%s: %w", o.rel, err)
	}
	return nil
}

// countingWriter reports the bytes written so far.
type countingWriter struct {
	w io.Writer
	byteCount
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.add(n)
	return n, err
}
