package drivertest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"
)

// Entry is one member of a layer tar built by Tar.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeFifo, ...
	Mode     int64
	UID, GID int
	Content  string
	Linkname string
	Xattrs   map[string]string
}

// Epoch is the modification time of every entry Tar writes.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Tar builds an OCI layer tar (PAX format) from entries, in order.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			Linkname: e.Linkname, ModTime: Epoch, Format: tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Content))
		}
		if len(e.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := w.Write([]byte(e.Content)); err != nil {
				t.Fatalf("tar content %s: %v", e.Name, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return b.Bytes()
}

// Random is n bytes of deterministic pseudo-random content.
func Random(n int, seed int64) string {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return string(b)
}

// ImageLayers returns three OCI layer tars, base first, that between them
// use what layer tars can say: files with modes (setuid, sticky dirs),
// owners, xattrs, symlinks, hard links, a fifo, modified files, deleted
// files and directories (".wh."), an opaque directory (".wh..wh..opq"),
// a directory turned into a file and a file turned into a symlink.
func ImageLayers(t testing.TB) [][]byte {
	t.Helper()
	base := Tar(t,
		Entry{Name: "etc/", Type: tar.TypeDir},
		Entry{Name: "etc/hostname", Content: "base\n"},
		Entry{Name: "etc/passwd", Content: "root:x:0:0:root:/root:/bin/sh\n"},
		Entry{Name: "etc/secret", Mode: 0o600, UID: 1000, GID: 1000, Content: "owned by 1000\n"},
		Entry{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		Entry{Name: "usr/", Type: tar.TypeDir},
		Entry{Name: "usr/bin/", Type: tar.TypeDir},
		Entry{Name: "usr/bin/tool", Mode: 0o4755, Content: "#!/bin/sh\necho tool\n"},
		Entry{Name: "usr/bin/tool-again", Type: tar.TypeLink, Linkname: "usr/bin/tool"},
		Entry{Name: "usr/lib/", Type: tar.TypeDir},
		Entry{Name: "usr/lib/libx.so.1.0", Content: Random(3000, 1)},
		Entry{Name: "usr/lib/libx.so.1", Type: tar.TypeSymlink, Linkname: "libx.so.1.0"},
		Entry{Name: "usr/share/note", Content: "noted\n", Xattrs: map[string]string{"user.note": "hello"}},
		Entry{Name: "var/", Type: tar.TypeDir},
		Entry{Name: "var/cache/", Type: tar.TypeDir},
		Entry{Name: "var/cache/a", Content: "cache a\n"},
		Entry{Name: "var/cache/b", Content: "cache b\n"},
		Entry{Name: "var/run/", Type: tar.TypeDir},
		Entry{Name: "var/run/ctl", Type: tar.TypeFifo, Mode: 0o600},
		Entry{Name: "opt/app/", Type: tar.TypeDir},
		Entry{Name: "opt/app/one", Content: "1\n"},
		Entry{Name: "opt/app/two", Content: "2\n"},
		Entry{Name: "data/big", Content: Random(256<<10, 2)},
		Entry{Name: "data/dir/inner", Content: "inner\n"},
	)
	middle := Tar(t,
		Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o750},
		Entry{Name: "etc/hostname", Content: "middle\n"},
		Entry{Name: "var/cache/.wh.a"},
		Entry{Name: "opt/app/.wh..wh..opq"},
		Entry{Name: "opt/app/three", Content: "3\n"},
		Entry{Name: "srv/www/index.html", Content: "<p>hi</p>\n"},
		Entry{Name: "usr/lib/.wh.libx.so.1"},
		Entry{Name: "data/.wh.dir"},
		Entry{Name: "data/dir", Content: "a file where a directory was\n"},
	)
	top := Tar(t,
		// A layer tar carries the parent directories of what it changes,
		// with their metadata, as docker and buildkit write them.
		Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o750},
		Entry{Name: "etc/motd", Content: "welcome\n"},
		Entry{Name: "etc/.wh.passwd"},
		Entry{Name: "var/.wh.cache"},
		Entry{Name: "data/big", Type: tar.TypeSymlink, Linkname: "../usr/lib/libx.so.1.0"},
		Entry{Name: "usr/bin/tool", Mode: 0o755, Content: "#!/bin/sh\necho tool v2\n"},
	)
	return [][]byte{base, middle, top}
}

func tarListing(b []byte) ([]string, error) {
	var out []string
	r := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, r); err != nil {
			return out, err
		}
		var pax []string
		for k, v := range h.PAXRecords {
			if k != "mtime" && k != "atime" && k != "ctime" {
				pax = append(pax, fmt.Sprintf("%s=%q", k, v))
			}
		}
		sort.Strings(pax)
		out = append(out, fmt.Sprintf("%s %c %04o %d:%d size=%d link=%q mtime=%d pax{%s} sha=%.12x",
			h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size, h.Linkname, h.ModTime.UnixNano(), strings.Join(pax, " "), sum.Sum(nil)))
	}
}
