package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Walk calls fn for root and every object below it, depth first with the
// names of each directory sorted, never following a symlink. rel is the
// slash path from root ("." for root itself), p the path to use.
func Walk(t testing.TB, root string, fn func(rel, p string, st *unix.Stat_t)) {
	t.Helper()
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		fn(rel, p, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("open directory %s: %v", p, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		sort.Strings(names)
		for _, name := range names {
			walk(path.Join(rel, name))
		}
	}
	walk(".")
}

// HashFile is the hex sha256 of the content of p.
func HashFile(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Fields say what Snapshot records of each object besides its path and
// st_mode (type and permission bits), which it always records. Each test
// package asks for what its checks have always looked at, no more: a
// field one of them leaves out is one that legitimately differs there.
type Fields uint

const (
	// WithOwner is uid:gid.
	WithOwner Fields = 1 << iota
	// WithSize is st_size, of every object (directories included).
	WithSize
	// WithContent is a regular file's sha256 and a symlink's target.
	WithContent
	// WithRdev is the device number of a char or block device.
	WithRdev
	// WithIno is st_ino.
	WithIno
	// WithNlink is st_nlink.
	WithNlink
	// WithMtime is the mtime of every object but the root directory.
	WithMtime
	// WithRootMtime adds the root directory's mtime.
	WithRootMtime
	// WithCtime is the ctime of every object.
	WithCtime
	// WithLinkGroups names, for a non-directory with several links, the
	// first of its paths in walk order (" linkgroup=<path>").
	WithLinkGroups
	// WithXattrs is every attribute, name and value, as Xattrs lists them.
	WithXattrs
	// WithXattrNames is every attribute name, without the values.
	WithXattrNames
)

// Snapshot describes root and every object below it, one line each in
// Walk's order ("<rel> mode=<st_mode in octal> ..."), recording fields:
// two snapshots with the same fields are equal when nothing they record
// changed.
func Snapshot(t testing.TB, root string, fields Fields) string {
	t.Helper()
	var lines []string
	groups := map[[2]uint64]string{}
	Walk(t, root, func(rel, p string, st *unix.Stat_t) {
		t.Helper()
		var b strings.Builder
		ifmt := st.Mode & unix.S_IFMT
		fmt.Fprintf(&b, "%s mode=%o", rel, st.Mode)
		if fields&WithOwner != 0 {
			fmt.Fprintf(&b, " %d:%d", st.Uid, st.Gid)
		}
		if fields&WithSize != 0 {
			fmt.Fprintf(&b, " size=%d", st.Size)
		}
		if fields&WithContent != 0 {
			switch ifmt {
			case unix.S_IFREG:
				b.WriteString(" sha256=" + HashFile(t, p))
			case unix.S_IFLNK:
				target, err := os.Readlink(p)
				if err != nil {
					t.Fatalf("readlink %s: %v", p, err)
				}
				b.WriteString(" -> " + target)
			}
		}
		if fields&WithRdev != 0 && (ifmt == unix.S_IFCHR || ifmt == unix.S_IFBLK) {
			fmt.Fprintf(&b, " rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if fields&WithIno != 0 {
			fmt.Fprintf(&b, " ino=%d", st.Ino)
		}
		if fields&WithNlink != 0 {
			fmt.Fprintf(&b, " nlink=%d", st.Nlink)
		}
		if fields&WithMtime != 0 && (rel != "." || fields&WithRootMtime != 0) {
			fmt.Fprintf(&b, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		if fields&WithCtime != 0 {
			fmt.Fprintf(&b, " ctime=%d.%09d", st.Ctim.Sec, st.Ctim.Nsec)
		}
		if fields&WithLinkGroups != 0 && ifmt != unix.S_IFDIR && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if _, ok := groups[key]; !ok {
				groups[key] = rel
			}
			b.WriteString(" linkgroup=" + groups[key])
		}
		switch {
		case fields&WithXattrs != 0:
			b.WriteString(" xattrs=[" + strings.Join(Xattrs(t, p, ""), " ") + "]")
		case fields&WithXattrNames != 0:
			b.WriteString(" xattrs=[" + strings.Join(XattrNames(t, p), " ") + "]")
		}
		lines = append(lines, b.String())
	})
	return strings.Join(lines, "\n")
}
