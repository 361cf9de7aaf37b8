package archive_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-fs/strata/internal/testutil"
)

// ent is one entry of a tar built in a test.
type ent struct {
	hdr  tar.Header
	body string
}

var testTime = time.Unix(1700000000, 123456789)

func file(name, body string) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: testTime}, body}
}

func dir(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: testTime}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: testTime}}
}

func device(name string, typ byte, major, minor int64) ent {
	return ent{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o600, Devmajor: major, Devminor: minor, ModTime: testTime}}
}

// withXattr adds an xattr PAX record to e.
func withXattr(e ent, name, value string) ent {
	if e.hdr.PAXRecords == nil {
		e.hdr.PAXRecords = map[string]string{}
	}
	e.hdr.PAXRecords["SCHILY.xattr."+name] = value
	return e
}

// mkTar builds a PAX tar of entries, in order.
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("building tar: %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("building tar: %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listTar renders a tar as one line per entry, for comparing and for
// readable failures.
func listTar(t *testing.T, b []byte) string {
	t.Helper()
	var out strings.Builder
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out.String()
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		body, _ := io.ReadAll(tr)
		fmt.Fprintf(&out, "%c %s mode=%o %d:%d", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid)
		if h.Linkname != "" {
			fmt.Fprintf(&out, " -> %s", h.Linkname)
		}
		if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
			fmt.Fprintf(&out, " dev=%d:%d", h.Devmajor, h.Devminor)
		}
		if len(body) > 0 {
			fmt.Fprintf(&out, " %q", body)
		}
		var keys []string
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&out, " %s=%q", strings.TrimPrefix(k, "SCHILY.xattr."), h.PAXRecords[k])
		}
		out.WriteString("\n")
	}
}

// tarNames lists the entry names of a tar.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

// fingerprint describes a tree completely, markers and every xattr
// included: one line per object with type, mode, owner, mtime (but the
// root's), device, symlink target, content hash, xattrs, and which
// hard-link group it belongs to. Two trees with equal fingerprints are
// the same to any reader of layers.
func fingerprint(t *testing.T, root string) string {
	t.Helper()
	return testutil.Snapshot(t, root, testutil.WithOwner|testutil.WithContent|testutil.WithRdev|testutil.WithMtime|
		testutil.WithLinkGroups|testutil.WithXattrs)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// siblings lists the names beside dir (to see a staging dir left over).
func siblings(t *testing.T, dir string) []string {
	t.Helper()
	return testutil.ReadDirNames(t, filepath.Dir(dir))
}
