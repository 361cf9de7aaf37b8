package archive_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/testutil"
)

// hostileFixture is a layer dir with content of every kind, beside a
// sentinel dir that no tar may reach, both fingerprinted.
type hostileFixture struct {
	root, layer, sentinel string
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	root := t.TempDir()
	f := &hostileFixture{root: root, layer: filepath.Join(root, "layer"), sentinel: filepath.Join(root, "sentinel")}
	testutil.WriteFile(t, filepath.Join(f.sentinel, "victim"), "do not touch")
	testutil.WriteFile(t, filepath.Join(f.layer, "etc/passwd"), "root:x:0:0")
	testutil.WriteFile(t, filepath.Join(f.layer, "data/big"), strings.Repeat("d", 70000))
	testutil.Setxattr(t, filepath.Join(f.layer, "data/big"), "user.tag", "v")
	if err := os.Link(filepath.Join(f.layer, "data/big"), filepath.Join(f.layer, "data/big.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(f.layer, "rootlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(f.layer, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		testutil.MknodWhiteout(t, filepath.Join(f.layer, "deleted"), 0)
		testutil.Setxattr(t, filepath.Join(f.layer, "data"), "trusted.overlay.opaque", "y")
	}
	return f
}

func (f *hostileFixture) state(t *testing.T) string {
	return fingerprint(t, f.layer) + "\n--- sentinel\n" + fingerprint(t, f.sentinel) + "\n--- root\n" + strings.Join(siblings(t, f.layer), " ")
}

// cut returns the first n bytes of b.
func cut(b []byte, n int) []byte { return append([]byte{}, b[:n]...) }

// offsetOf finds where a header naming name starts in a tar.
func offsetOf(t *testing.T, b []byte, name string) int {
	t.Helper()
	for off := 0; off+512 <= len(b); off += 512 {
		if bytes.HasPrefix(b[off:], append([]byte(name), 0)) {
			return off
		}
	}
	t.Fatalf("no ustar header for %q in the tar", name)
	return 0
}

// TestHostileTars: every hostile input is refused with an error naming the
// entry, the layer dir is left exactly as it was (content, modes, owners,
// times, xattrs, markers, links), nothing appears beside it, and the
// sentinel dir beside it is untouched. Good entries come first in each tar,
// so a refusal must also undo them.
func TestHostileTars(t *testing.T) {
	good := []ent{dir("etc/"), file("etc/hostname", "box"), file(".wh.passwd", ""), file("data/.wh..wh..opq", "")}
	long := strings.Repeat("n", 300)
	deep := strings.Repeat("d/", 2100) + "f"
	okTar := mkTar(t, append(good, file("last", strings.Repeat("c", 5000)))...)
	tests := []struct {
		name    string
		tar     func(t *testing.T) []byte
		opts    archive.ApplyOptions
		entry   string // the error must name it
		refused bool   // errors.Is(err, ErrRefused)
		want    string // and say this
	}{
		{"absolute path", func(t *testing.T) []byte { return mkTar(t, append(good, file("/etc/shadow", "x"))...) },
			archive.ApplyOptions{}, "/etc/shadow", true, "absolute"},
		{"dotdot escaping", func(t *testing.T) []byte { return mkTar(t, append(good, file("../sentinel/victim", "x"))...) },
			archive.ApplyOptions{}, "../sentinel/victim", true, `".."`},
		{"dotdot inside", func(t *testing.T) []byte { return mkTar(t, append(good, file("etc/../../sentinel/x", "x"))...) },
			archive.ApplyOptions{}, "etc/../../sentinel/x", true, `".."`},
		{"symlinked parent to /", func(t *testing.T) []byte {
			return mkTar(t, append(good, symlink("evil", "/"), file("evil/tmp/owned", "x"))...)
		}, archive.ApplyOptions{}, "evil/tmp/owned", true, "symlink"},
		{"symlinked parent outside", func(t *testing.T) []byte {
			return mkTar(t, append(good, symlink("evil", "../sentinel"), file("evil/victim", "x"))...)
		}, archive.ApplyOptions{}, "evil/victim", true, "symlink"},
		{"symlinked parent from before", func(t *testing.T) []byte {
			return mkTar(t, append(good, file("rootlink/tmp/owned", "x"))...)
		}, archive.ApplyOptions{}, "rootlink/tmp/owned", true, "symlink"},
		{"symlinked parent inside", func(t *testing.T) []byte {
			return mkTar(t, append(good, symlink("alias", "etc"), file("alias/x", "x"))...)
		}, archive.ApplyOptions{}, "alias/x", true, "symlink"},
		{"whiteout under a symlink", func(t *testing.T) []byte {
			return mkTar(t, append(good, symlink("evil", "../sentinel"), file("evil/.wh.victim", ""))...)
		}, archive.ApplyOptions{Flatten: true}, "evil/.wh.victim", true, "symlink"},
		{"hard link outside", func(t *testing.T) []byte {
			return mkTar(t, append(good, hardlink("l", "../sentinel/victim"))...)
		}, archive.ApplyOptions{}, "l", true, `".."`},
		{"hard link absolute", func(t *testing.T) []byte { return mkTar(t, append(good, hardlink("l", "/etc/passwd"))...) },
			archive.ApplyOptions{}, "l", true, "absolute"},
		{"hard link absent", func(t *testing.T) []byte { return mkTar(t, append(good, hardlink("l", "nothere"))...) },
			archive.ApplyOptions{}, "l", true, "not in the layer"},
		{"hard link through a symlink", func(t *testing.T) []byte {
			return mkTar(t, append(good, symlink("s", f0(t)), hardlink("l", "s/victim"))...)
		}, archive.ApplyOptions{}, "l", true, "symlink"},
		{"hard link to a directory", func(t *testing.T) []byte { return mkTar(t, append(good, hardlink("l", "etc"))...) },
			archive.ApplyOptions{}, "l", true, "directory"},
		{"char device not allowed", func(t *testing.T) []byte {
			return mkTar(t, append(good, device("dev/mem", tar.TypeChar, 1, 1))...)
		}, archive.ApplyOptions{}, "dev/mem", true, "AllowDevices"},
		{"block device not allowed", func(t *testing.T) []byte {
			return mkTar(t, append(good, device("dev/sda", tar.TypeBlock, 8, 0))...)
		}, archive.ApplyOptions{}, "dev/sda", true, "AllowDevices"},
		{"char 0/0 entry", func(t *testing.T) []byte { return mkTar(t, append(good, device("etc/x", tar.TypeChar, 0, 0))...) },
			archive.ApplyOptions{AllowDevices: true}, "etc/x", true, "whiteout"},
		{"duplicate file", func(t *testing.T) []byte { return mkTar(t, append(good, file("dup", "1"), file("./dup", "2"))...) },
			archive.ApplyOptions{}, "./dup", true, "duplicate"},
		{"duplicate dir", func(t *testing.T) []byte { return mkTar(t, append(good, dir("etc"))...) },
			archive.ApplyOptions{}, "etc", true, "duplicate"},
		{"duplicate whiteout", func(t *testing.T) []byte {
			return mkTar(t, append(good, file("etc//.wh.x", ""), file("etc/.wh.x", ""))...)
		},
			archive.ApplyOptions{}, "etc/.wh.x", true, "duplicate"},
		{"whiteout of ..", func(t *testing.T) []byte { return mkTar(t, append(good, file("etc/.wh...", ""))...) },
			archive.ApplyOptions{Flatten: true}, "etc/.wh...", true, "names no entry"},
		{"whiteout of .", func(t *testing.T) []byte { return mkTar(t, append(good, file(".wh..", ""))...) },
			archive.ApplyOptions{Flatten: true}, ".wh..", true, "names no entry"},
		{"empty whiteout", func(t *testing.T) []byte { return mkTar(t, append(good, file("etc/.wh.", ""))...) },
			archive.ApplyOptions{}, "etc/.wh.", true, "names no entry"},
		{"whiteout slash trick", func(t *testing.T) []byte { return mkTar(t, append(good, file(".wh./../sentinel/victim", ""))...) },
			archive.ApplyOptions{Flatten: true}, ".wh./../sentinel/victim", true, `".."`},
		{"whiteout as a directory", func(t *testing.T) []byte { return mkTar(t, append(good, file("etc/.wh.dir/passwd", "x"))...) },
			archive.ApplyOptions{}, "etc/.wh.dir/passwd", true, "reserved"},
		{"union xattr", func(t *testing.T) []byte {
			return mkTar(t, append(good, withXattr(dir("opaque/"), "trusted.overlay.opaque", "y"))...)
		}, archive.ApplyOptions{}, "opaque/", true, "trusted.overlay.opaque"},
		{"name component too long", func(t *testing.T) []byte { return mkTar(t, append(good, file("etc/"+long, "x"))...) },
			archive.ApplyOptions{}, long[:50], true, "longer than a Linux name"},
		{"path too long", func(t *testing.T) []byte { return mkTar(t, append(good, file(deep, "x"))...) },
			archive.ApplyOptions{}, "d/d/d/d/d/d/", true, "longer than a Linux path"},
		{"sparse (PAX 1.0)", func(t *testing.T) []byte {
			records := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
				paxRecord("GNU.sparse.name", "holes") + paxRecord("GNU.sparse.realsize", "10")
			sparseMap := "1\n0\n10\n"
			return rawTar(mkTar(t, good...),
				rawEntry{'x', "PaxHeaders/holes", records},
				rawEntry{'0', "GNUSparseFile.0/holes", sparseMap + strings.Repeat("\x00", 512-len(sparseMap)) + "0123456789"})
		}, archive.ApplyOptions{}, "holes", true, "sparse"},
		{"sparse (old GNU)", func(t *testing.T) []byte {
			return rawTar(mkTar(t, good...), rawEntry{'S', "holes", ""})
		}, archive.ApplyOptions{}, "holes", true, "sparse"},
		{"unknown type", func(t *testing.T) []byte {
			return rawTar(mkTar(t, good...), rawEntry{'Z', "zed", ""})
		}, archive.ApplyOptions{}, "zed", true, "unsupported entry type"},
		{"root not a directory", func(t *testing.T) []byte { return mkTar(t, append(good, file(".", "x"))...) },
			archive.ApplyOptions{}, `"."`, true, "root"},
		{"cut mid-header", func(t *testing.T) []byte { return cut(okTar, offsetOf(t, okTar, "last")+100) },
			archive.ApplyOptions{}, "data/.wh..wh..opq", false, "truncated"},
		{"cut mid-content", func(t *testing.T) []byte { return cut(okTar, offsetOf(t, okTar, "last")+512+2000) },
			archive.ApplyOptions{}, "last", false, "truncated"},
		{"cut at an entry boundary", func(t *testing.T) []byte { return cut(okTar, len(okTar)-1024) },
			archive.ApplyOptions{}, "last", false, "end-of-archive"},
		{"empty stream", func(t *testing.T) []byte { return nil },
			archive.ApplyOptions{}, "", false, "end-of-archive"},
		{"garbage", func(t *testing.T) []byte { return bytes.Repeat([]byte("garbage!"), 200) },
			archive.ApplyOptions{}, "", false, "corrupt"},
	}
	for _, tc := range tests {
		for _, flatten := range []bool{false, true} {
			opts := tc.opts
			if flatten && opts.Flatten {
				continue
			}
			opts.Flatten = opts.Flatten || flatten
			t.Run(tc.name+map[bool]string{false: "", true: "/flatten"}[flatten && !tc.opts.Flatten], func(t *testing.T) {
				f := newHostileFixture(t)
				hostileSentinel = f.sentinel
				before := f.state(t)
				_, err := archive.Apply(f.layer, bytes.NewReader(tc.tar(t)), opts)
				if err == nil {
					t.Fatalf("Apply succeeded; the layer is now:\n%s", fingerprint(t, f.layer))
				}
				msg := err.Error()
				t.Log(msg)
				if strings.Contains(msg, "\n") {
					t.Errorf("error is not one line: %q", msg)
				}
				if tc.entry != "" && !strings.Contains(msg, tc.entry) {
					t.Errorf("error does not name the entry %q: %v", tc.entry, err)
				}
				if !strings.Contains(msg, tc.want) {
					t.Errorf("error does not say %q: %v", tc.want, err)
				}
				if tc.refused != errors.Is(err, archive.ErrRefused) {
					t.Errorf("errors.Is(err, ErrRefused) = %v, want %v (%v)", !tc.refused, tc.refused, err)
				}
				if after := f.state(t); after != before {
					t.Errorf("the refused Apply changed something.\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
	}
	// The same fixture takes a good tar, so the refusals above were the
	// entries', not the fixture's.
	f := newHostileFixture(t)
	if _, err := archive.Apply(f.layer, bytes.NewReader(okTar), archive.ApplyOptions{}); err != nil {
		t.Fatalf("the good part alone: %v", err)
	}
}

// hostileSentinel is the sentinel dir of the running hostile case, for
// tars that name it by absolute path.
var hostileSentinel string

func f0(t *testing.T) string { return hostileSentinel }

// rawEntry is a tar entry written by hand, for types archive/tar will not
// write.
type rawEntry struct {
	typ  byte
	name string
	body string
}

// rawTar appends entries to a tar (dropping its end-of-archive blocks)
// and ends it again.
func rawTar(tb []byte, entries ...rawEntry) []byte {
	out := append([]byte{}, tb[:len(tb)-1024]...)
	for _, e := range entries {
		var h [512]byte
		copy(h[0:100], e.name)
		copy(h[100:108], "0000644\x00")
		copy(h[108:116], "0000000\x00")
		copy(h[116:124], "0000000\x00")
		copy(h[124:136], fmt.Sprintf("%011o\x00", len(e.body)))
		copy(h[136:148], "00000000000\x00")
		h[156] = e.typ
		copy(h[257:265], "ustar\x0000")
		if e.typ == 'S' {
			copy(h[257:265], "ustar  \x00") // a GNU-only type
		}
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		out = append(out, h[:]...)
		out = append(out, e.body...)
		if pad := len(e.body) % 512; pad != 0 {
			out = append(out, make([]byte, 512-pad)...)
		}
	}
	return append(out, make([]byte, 1024)...)
}

// paxRecord formats one PAX record ("len key=value\n").
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(fmt.Sprint(n))+len(body) != n {
		n++
	}
	return fmt.Sprint(n) + body
}
