package integration

import (
	"os"
	"path"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A declarative description of layer directories. A Layer is a list of
// entries created in order; parent directories that no entry names are
// created with mode 0755, owned by root. Paths are slash-separated and
// relative to the layer root.
//
//	layers := []Layer{
//		{File("a.txt", "top"), Whiteout("gone"), Dir("etc", Opaque())},
//		{File("a.txt", "bottom"), File("gone", "x"), File("etc/passwd", "root")},
//	}
//	dirs := buildLayers(t, t.TempDir(), layers) // dirs[0] is the top

type entryKind int

const (
	kindFile entryKind = iota
	kindDir
	kindSymlink
	kindHardlink
	kindFifo
	kindWhiteout // overlay form: char device 0/0
	kindDevice   // a real char or block device (Mode carries S_IFCHR or S_IFBLK)
	kindSocket
)

// Entry is one object of a layer.
type Entry struct {
	Path    string
	Kind    entryKind
	Content string // regular files
	Target  string // symlink target, or the path (in the same layer) a hard link joins
	Mode    uint32 // permission bits, setuid/setgid/sticky included
	UID     int
	GID     int
	Rdev    uint64            // devices
	Xattrs  map[string]string // set with lsetxattr, names in full ("user.test")
	Opaque  bool              // directories: trusted.overlay.opaque=y
}

// Layer is one branch directory's content.
type Layer []Entry

// Opt adjusts an Entry.
type Opt func(*Entry)

// Mode sets the permission bits (e.g. 0o4755).
func Mode(m uint32) Opt { return func(e *Entry) { e.Mode = m } }

// Owner sets uid and gid.
func Owner(uid, gid int) Opt { return func(e *Entry) { e.UID, e.GID = uid, gid } }

// Xattr adds an extended attribute.
func Xattr(name, value string) Opt {
	return func(e *Entry) {
		if e.Xattrs == nil {
			e.Xattrs = map[string]string{}
		}
		e.Xattrs[name] = value
	}
}

// Opaque marks a directory opaque in the overlay form.
func Opaque() Opt { return func(e *Entry) { e.Opaque = true } }

func newEntry(p string, k entryKind, mode uint32, opts []Opt) Entry {
	e := Entry{Path: p, Kind: k, Mode: mode}
	for _, o := range opts {
		o(&e)
	}
	return e
}

// File is a regular file (default mode 0644).
func File(p, content string, opts ...Opt) Entry {
	e := newEntry(p, kindFile, 0o644, opts)
	e.Content = content
	return e
}

// Dir is a directory (default mode 0755).
func Dir(p string, opts ...Opt) Entry { return newEntry(p, kindDir, 0o755, opts) }

// Symlink is a symbolic link to target.
func Symlink(p, target string, opts ...Opt) Entry {
	e := newEntry(p, kindSymlink, 0o777, opts)
	e.Target = target
	return e
}

// Hardlink is a second name for existing, an earlier entry of the same layer.
func Hardlink(p, existing string) Entry {
	return Entry{Path: p, Kind: kindHardlink, Target: existing}
}

// Fifo is a named pipe (default mode 0644).
func Fifo(p string, opts ...Opt) Entry { return newEntry(p, kindFifo, 0o644, opts) }

// CharDev is a character device major:minor (not 0:0, which is a whiteout).
func CharDev(p string, major, minor uint32, opts ...Opt) Entry {
	e := newEntry(p, kindDevice, 0o644, opts)
	e.Mode |= unix.S_IFCHR
	e.Rdev = unix.Mkdev(major, minor)
	return e
}

// BlockDev is a block device major:minor.
func BlockDev(p string, major, minor uint32, opts ...Opt) Entry {
	e := newEntry(p, kindDevice, 0o644, opts)
	e.Mode |= unix.S_IFBLK
	e.Rdev = unix.Mkdev(major, minor)
	return e
}

// Socket is a unix domain socket (bound, then closed).
func Socket(p string, opts ...Opt) Entry { return newEntry(p, kindSocket, 0o755, opts) }

// Whiteout is an overlay whiteout: a char device 0/0 named p.
func Whiteout(p string) Entry { return Entry{Path: p, Kind: kindWhiteout} }

// Names of the aufs dialect (see whiteout/format.go; repeated here so that
// the tests state the on-disk format independently of the code under test).
const (
	aufsWhiteoutPrefix = ".wh."
	aufsOpaqueName     = ".wh..wh..opq"
	overlayOpaqueXattr = "trusted.overlay.opaque"
)

// buildLayers creates parent/0, parent/1, ... from layers (top first) and
// returns their paths in the same order.
func buildLayers(t testing.TB, parent string, layers []Layer) []string {
	t.Helper()
	dirs := make([]string, len(layers))
	for i, l := range layers {
		dirs[i] = filepath.Join(parent, strconv.Itoa(i))
		buildLayer(t, dirs[i], l)
	}
	return dirs
}

// buildLayer creates root (mode 0755) and every entry of layer in it.
func buildLayer(t testing.TB, root string, layer Layer) {
	t.Helper()
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.Chmod(root, 0o755))
	for _, e := range layer {
		p := filepath.Join(root, filepath.FromSlash(e.Path))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755), "parent of %s", e.Path)
		var err error
		switch e.Kind {
		case kindFile:
			err = os.WriteFile(p, []byte(e.Content), 0o600)
		case kindDir:
			err = os.Mkdir(p, 0o700)
			if os.IsExist(err) {
				err = nil // created earlier as a parent
			}
		case kindSymlink:
			err = os.Symlink(e.Target, p)
		case kindHardlink:
			err = os.Link(filepath.Join(root, filepath.FromSlash(e.Target)), p)
		case kindFifo:
			err = unix.Mkfifo(p, 0o600)
		case kindWhiteout:
			err = unix.Mknod(p, unix.S_IFCHR|0o000, int(unix.Mkdev(0, 0)))
		case kindDevice:
			err = unix.Mknod(p, e.Mode&unix.S_IFMT|0o600, int(e.Rdev))
		case kindSocket:
			err = bindSocket(p)
		}
		require.NoError(t, err, "creating %s in %s", e.Path, root)
		if e.Kind == kindHardlink || e.Kind == kindWhiteout {
			continue
		}
		// chown before chmod: chown clears setuid and setgid.
		require.NoError(t, os.Lchown(p, e.UID, e.GID), "chown %s", e.Path)
		if e.Kind != kindSymlink {
			require.NoError(t, unix.Chmod(p, e.Mode&0o7777), "chmod %s", e.Path)
		}
		for name, value := range e.Xattrs {
			require.NoError(t, unix.Lsetxattr(p, name, []byte(value), 0), "setxattr %s on %s", name, e.Path)
		}
		if e.Opaque {
			require.Equal(t, kindDir, e.Kind, "only directories can be opaque: %s", e.Path)
			require.NoError(t, unix.Lsetxattr(p, overlayOpaqueXattr, []byte("y"), 0), "opaque marker on %s", e.Path)
		}
	}
}

// bindSocket leaves a unix socket file at p.
func bindSocket(p string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
}

// toAufs converts a layer from the overlay dialect to the aufs one: each
// char 0/0 whiteout "name" becomes an empty file ".wh.name", and each opaque
// directory loses its xattr and gets a ".wh..wh..opq" file. withMeta adds the
// bookkeeping entries a real aufs branch root holds (.wh..wh.aufs,
// .wh..wh.plnk/, .wh..wh.orph/), which the union must hide as well.
func toAufs(l Layer, withMeta bool) Layer {
	var out Layer
	if withMeta {
		out = append(out,
			File(".wh..wh.aufs", "", Mode(0o444)),
			Dir(".wh..wh.plnk", Mode(0o700)),
			Dir(".wh..wh.orph", Mode(0o700)))
	}
	for _, e := range l {
		switch {
		case e.Kind == kindWhiteout:
			out = append(out, File(path.Join(path.Dir(e.Path), aufsWhiteoutPrefix+path.Base(e.Path)), "", Mode(0o444)))
		case e.Kind == kindDir && e.Opaque:
			e.Opaque = false
			out = append(out, e, File(path.Join(e.Path, aufsOpaqueName), "", Mode(0o444)))
		default:
			out = append(out, e)
		}
	}
	return out
}
