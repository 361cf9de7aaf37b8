package whiteout_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// --- helpers ---------------------------------------------------------------

// charWhiteout makes an overlay whiteout (char 0/0) at p.
func charWhiteout(t *testing.T, p string) {
	t.Helper()
	testutil.NeedRoot(t, "mknod of a char device 0/0")
	testutil.MknodWhiteout(t, p, 0o600)
}

// devNull makes a char device 1/3 at p: a real device, not a whiteout.
func devNull(t *testing.T, p string) {
	t.Helper()
	testutil.NeedRoot(t, "mknod of a char device")
	if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
}

// xattrWhiteout makes a kernel 6.7+ xattr whiteout: an empty regular file
// with <ns>overlay.whiteout, in a directory marked <ns>overlay.opaque=x.
func xattrWhiteout(t *testing.T, dir, name, ns string) {
	t.Helper()
	testutil.WriteFile(t, filepath.Join(dir, name), "")
	testutil.SetxattrNeedRoot(t, filepath.Join(dir, name), ns+"overlay.whiteout", "y")
	testutil.SetxattrNeedRoot(t, dir, ns+"overlay.opaque", "x")
}

func markers(t *testing.T, dir string) whiteout.DirMarkers {
	t.Helper()
	m, err := whiteout.ReadDirMarkers(testutil.OpenDir(t, dir), ".")
	if err != nil {
		t.Fatalf("ReadDirMarkers(%s): %v", dir, err)
	}
	return m
}

func lookup(t *testing.T, dir, name string) whiteout.Lookup {
	t.Helper()
	l, err := whiteout.LookupName(testutil.OpenDir(t, dir), name, markers(t, dir))
	if err != nil {
		t.Fatalf("LookupName(%s, %q): %v", dir, name, err)
	}
	return l
}

// --- names -----------------------------------------------------------------

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    whiteout.Format
		wantErr bool
	}{
		{in: "overlay", want: whiteout.Overlay},
		{in: "aufs", want: whiteout.Aufs},
		{in: "oci", want: whiteout.Aufs},
		{in: "", wantErr: true},
		{in: "Overlay", wantErr: true},
		{in: "overlayfs", wantErr: true},
		{in: "xattr", wantErr: true},
		{in: " aufs", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := whiteout.ParseFormat(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseFormat(%q) = %v, want an error", tc.in, got)
				}
				if !strings.Contains(err.Error(), "overlay or aufs") || !strings.Contains(err.Error(), strconv.Quote(tc.in)) {
					t.Errorf("error %q should quote the value and list the choices", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseFormat(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			// The name round-trips (except the "oci" alias).
			if back, err := whiteout.ParseFormat(got.String()); err != nil || back != got {
				t.Errorf("ParseFormat(%v.String()) = %v, %v", got, back, err)
			}
		})
	}
	if s := whiteout.Format(7).String(); s != "Format(7)" {
		t.Errorf("Format(7).String() = %q", s)
	}
}

func TestAufsTarget(t *testing.T) {
	tests := []struct {
		entry  string
		target string
		ok     bool
	}{
		{".wh.foo", "foo", true},
		{".wh..foo", ".foo", true},
		{".wh.foo bar", "foo bar", true},
		{".wh..wh", ".wh", true}, // not the meta prefix: hides ".wh"
		{".wh..wh..opq", "", false},
		{".wh..wh.plnk", "", false},
		{".wh..wh.aufs", "", false},
		{".wh..wh.orph", "", false},
		{".wh..wh.", "", false},
		{".wh.", "", false},
		{".wh..", "", false},
		{".wh...", "", false},
		{"foo", "", false},
		{"wh.foo", "", false},
		{".whfoo", "", false},
		{".WH.foo", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := whiteout.AufsTarget(tc.entry)
		if got != tc.target || ok != tc.ok {
			t.Errorf("AufsTarget(%q) = %q, %v; want %q, %v", tc.entry, got, ok, tc.target, tc.ok)
		}
		if tc.ok && whiteout.AufsName(got) != tc.entry {
			t.Errorf("AufsName(%q) = %q, want %q", got, whiteout.AufsName(got), tc.entry)
		}
	}
}

func TestIsReserved(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{".wh.foo", true},
		{".wh.", true},
		{".wh..wh..opq", true},
		{".wh..wh.plnk", true},
		{".wh", false},
		{".whx", false},
		{"foo.wh.bar", false},
		{"foo", false},
		{"", false},
		{".", false},
		{"..", false},
	}
	for _, tc := range tests {
		if got := whiteout.IsReserved(tc.name); got != tc.want {
			t.Errorf("IsReserved(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsUnionXattr(t *testing.T) {
	tests := []struct {
		attr string
		want bool
	}{
		{"trusted.overlay.opaque", true},
		{"trusted.overlay.whiteout", true},
		{"trusted.overlay.redirect", true},
		{"trusted.overlay.origin", true},
		{"user.overlay.opaque", true},
		{"user.overlay.whiteout", true},
		{"user.fuseoverlayfs.origin", true},
		{"user.strata.ino", true},
		{"trusted.strata.ino", true},
		{"user.overlay", false},
		{"user.overlayfoo", false},
		{"security.overlay.opaque", false},
		{"trusted.overlayfs.x", false},
		{"user.mime_type", false},
		{"security.selinux", false},
		{"system.posix_acl_access", false},
		{"trusted.other", false},
		{"user.stratax", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := whiteout.IsUnionXattr(tc.attr); got != tc.want {
			t.Errorf("IsUnionXattr(%q) = %v, want %v", tc.attr, got, tc.want)
		}
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		k          whiteout.Kind
		isWhiteout bool
		str        string
	}{
		{whiteout.NoMarker, false, "none"},
		{whiteout.OverlayChar, true, "char 0/0"},
		{whiteout.OverlayXattr, true, "xattr"},
		{whiteout.AufsFile, true, ".wh."},
		{whiteout.OpaqueOverlay, false, "overlay.opaque"},
		{whiteout.OpaqueAufs, false, ".wh..wh..opq"},
		{whiteout.Kind(99), false, "unknown"},
	}
	for _, tc := range tests {
		if got := tc.k.IsWhiteout(); got != tc.isWhiteout {
			t.Errorf("%v.IsWhiteout() = %v, want %v", tc.k, got, tc.isWhiteout)
		}
		if !strings.Contains(tc.k.String(), tc.str) {
			t.Errorf("Kind(%d).String() = %q, want it to contain %q", int(tc.k), tc.k.String(), tc.str)
		}
	}
}

func TestDirentType(t *testing.T) {
	tests := []struct {
		mode uint32
		want uint8
	}{
		{unix.S_IFDIR | 0o755, unix.DT_DIR},
		{unix.S_IFREG | 0o644, unix.DT_REG},
		{unix.S_IFLNK | 0o777, unix.DT_LNK},
		{unix.S_IFCHR, unix.DT_CHR},
		{unix.S_IFBLK, unix.DT_BLK},
		{unix.S_IFIFO, unix.DT_FIFO},
		{unix.S_IFSOCK, unix.DT_SOCK},
		{0o644, unix.DT_UNKNOWN},
	}
	for _, tc := range tests {
		if got := whiteout.DirentType(tc.mode); got != tc.want {
			t.Errorf("DirentType(%o) = %d, want %d", tc.mode, got, tc.want)
		}
	}
}

func TestIsCharWhiteout(t *testing.T) {
	tests := []struct {
		name string
		st   unix.Stat_t
		want bool
	}{
		{"char 0/0", unix.Stat_t{Mode: unix.S_IFCHR}, true},
		{"char 0/0 with perms", unix.Stat_t{Mode: unix.S_IFCHR | 0o600}, true},
		{"char 1/3", unix.Stat_t{Mode: unix.S_IFCHR, Rdev: unix.Mkdev(1, 3)}, false},
		{"block 0/0", unix.Stat_t{Mode: unix.S_IFBLK}, false},
		{"regular", unix.Stat_t{Mode: unix.S_IFREG}, false},
		{"fifo", unix.Stat_t{Mode: unix.S_IFIFO}, false},
	}
	for _, tc := range tests {
		if got := whiteout.IsCharWhiteout(&tc.st); got != tc.want {
			t.Errorf("%s: IsCharWhiteout = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// --- reading markers -------------------------------------------------------

func TestReadDirMarkers(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  whiteout.DirMarkers
	}{
		{
			name:  "none",
			setup: func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, "f"), "x") },
			want:  whiteout.DirMarkers{},
		},
		{
			name:  "trusted.overlay.opaque=y",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "trusted.overlay.opaque", "y") },
			want:  whiteout.DirMarkers{Opaque: whiteout.OpaqueOverlay},
		},
		{
			name:  "user.overlay.opaque=y",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "y") },
			want:  whiteout.DirMarkers{Opaque: whiteout.OpaqueOverlay},
		},
		{
			name:  "trusted.overlay.opaque=x",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "trusted.overlay.opaque", "x") },
			want:  whiteout.DirMarkers{XattrWhiteouts: true},
		},
		{
			name:  "user.overlay.opaque=x",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "x") },
			want:  whiteout.DirMarkers{XattrWhiteouts: true},
		},
		{
			name:  "user.overlay.opaque=n is not a marker",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "n") },
			want:  whiteout.DirMarkers{},
		},
		{
			name:  "an unrelated xattr is not a marker",
			setup: func(t *testing.T, dir string) { testutil.SetxattrNeedRoot(t, dir, "user.opaque", "y") },
			want:  whiteout.DirMarkers{},
		},
		{
			name:  ".wh..wh..opq",
			setup: func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "") },
			want:  whiteout.DirMarkers{Opaque: whiteout.OpaqueAufs},
		},
		{
			name:  ".wh..wh..opq as a directory still marks",
			setup: func(t *testing.T, dir string) { testutil.Mkdirs(t, filepath.Join(dir, whiteout.AufsOpaque)) },
			want:  whiteout.DirMarkers{Opaque: whiteout.OpaqueAufs},
		},
		{
			name: "opaque=y in the xattr wins over .wh..wh..opq",
			setup: func(t *testing.T, dir string) {
				testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "y")
				testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "")
			},
			want: whiteout.DirMarkers{Opaque: whiteout.OpaqueOverlay},
		},
		{
			name: "opaque=x with .wh..wh..opq",
			setup: func(t *testing.T, dir string) {
				testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "x")
				testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "")
			},
			want: whiteout.DirMarkers{Opaque: whiteout.OpaqueAufs, XattrWhiteouts: true},
		},
		{
			name: "trusted y and user x",
			setup: func(t *testing.T, dir string) {
				testutil.SetxattrNeedRoot(t, dir, "trusted.overlay.opaque", "y")
				testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "x")
			},
			want: whiteout.DirMarkers{Opaque: whiteout.OpaqueOverlay, XattrWhiteouts: true},
		},
		{
			name:  "a .wh. whiteout is not an opaque marker",
			setup: func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, ".wh.foo"), "") },
			want:  whiteout.DirMarkers{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			// Any descriptor of the directory will do: O_PATH and O_RDONLY.
			for _, flags := range []int{unix.O_PATH, unix.O_RDONLY} {
				fd, err := unix.Open(dir, flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				got, err := whiteout.ReadDirMarkers(fd, ".")
				unix.Close(fd)
				if err != nil {
					t.Fatalf("flags %#x: ReadDirMarkers: %v", flags, err)
				}
				if got != tc.want {
					t.Errorf("flags %#x: ReadDirMarkers = %+v, want %+v", flags, got, tc.want)
				}
			}
		})
	}
}

func TestLookupName(t *testing.T) {
	type want struct {
		present bool
		typ     uint32 // S_IFMT of St when present
		hides   whiteout.Kind
	}
	tests := []struct {
		name   string
		lookup string
		setup  func(t *testing.T, dir string)
		want   want
	}{
		{
			name:   "absent",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, "other"), "") },
			want:   want{},
		},
		{
			name:   "plain file",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, "x"), "data") },
			want:   want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "empty plain file",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, "x"), "") },
			want:   want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "directory",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { testutil.Mkdirs(t, filepath.Join(dir, "x")) },
			want:   want{present: true, typ: unix.S_IFDIR},
		},
		{
			name:   "dangling symlink is not followed",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				if err := os.Symlink("nowhere", filepath.Join(dir, "x")); err != nil {
					t.Fatal(err)
				}
			},
			want: want{present: true, typ: unix.S_IFLNK},
		},
		{
			name:   "char 0/0 is an overlay whiteout",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { charWhiteout(t, filepath.Join(dir, "x")) },
			want:   want{hides: whiteout.OverlayChar},
		},
		{
			name:   "char 1/3 is a device, not a whiteout",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { devNull(t, filepath.Join(dir, "x")) },
			want:   want{present: true, typ: unix.S_IFCHR},
		},
		{
			name:   "xattr whiteout (trusted) in an opaque=x dir",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { xattrWhiteout(t, dir, "x", "trusted.") },
			want:   want{hides: whiteout.OverlayXattr},
		},
		{
			name:   "xattr whiteout (user) in an opaque=x dir",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { xattrWhiteout(t, dir, "x", "user.") },
			want:   want{hides: whiteout.OverlayXattr},
		},
		{
			name:   "xattr whiteout file in a dir without opaque=x is a plain file",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "x"), "")
				testutil.SetxattrNeedRoot(t, filepath.Join(dir, "x"), "user.overlay.whiteout", "y")
			},
			want: want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "trusted xattr whiteout file in a dir without opaque=x is a plain file",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "x"), "")
				testutil.SetxattrNeedRoot(t, filepath.Join(dir, "x"), "trusted.overlay.whiteout", "y")
			},
			want: want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "non-empty file with overlay.whiteout in an opaque=x dir is a plain file",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				xattrWhiteout(t, dir, "x", "user.")
				testutil.WriteFile(t, filepath.Join(dir, "x"), "data")
			},
			want: want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "empty file without the xattr in an opaque=x dir is a plain file",
			lookup: "y",
			setup: func(t *testing.T, dir string) {
				xattrWhiteout(t, dir, "x", "user.")
				testutil.WriteFile(t, filepath.Join(dir, "y"), "")
			},
			want: want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "directory with overlay.whiteout in an opaque=x dir is a directory",
			lookup: "d",
			setup: func(t *testing.T, dir string) {
				testutil.SetxattrNeedRoot(t, dir, "user.overlay.opaque", "x")
				testutil.Mkdirs(t, filepath.Join(dir, "d"))
				testutil.SetxattrNeedRoot(t, filepath.Join(dir, "d"), "user.overlay.whiteout", "y")
			},
			want: want{present: true, typ: unix.S_IFDIR},
		},
		{
			name:   ".wh.name is an aufs whiteout",
			lookup: "x",
			setup:  func(t *testing.T, dir string) { testutil.WriteFile(t, filepath.Join(dir, ".wh.x"), "") },
			want:   want{hides: whiteout.AufsFile},
		},
		{
			name:   "name and .wh.name: deleted then recreated",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "x"), "new")
				testutil.WriteFile(t, filepath.Join(dir, ".wh.x"), "")
			},
			want: want{present: true, typ: unix.S_IFREG, hides: whiteout.AufsFile},
		},
		{
			name:   "dir and .wh.dir: deleted then recreated",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				testutil.Mkdirs(t, filepath.Join(dir, "x"))
				testutil.WriteFile(t, filepath.Join(dir, ".wh.x"), "")
			},
			want: want{present: true, typ: unix.S_IFDIR, hides: whiteout.AufsFile},
		},
		{
			name:   "char 0/0 beats a .wh. file beside it",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				charWhiteout(t, filepath.Join(dir, "x"))
				testutil.WriteFile(t, filepath.Join(dir, ".wh.x"), "")
			},
			want: want{hides: whiteout.OverlayChar},
		},
		{
			name:   "a .wh. for another name does not hide this one",
			lookup: "x",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, ".wh.xx"), "")
				testutil.WriteFile(t, filepath.Join(dir, ".wh.X"), "")
			},
			want: want{},
		},
		{
			name:   "name of 255 bytes has no room for .wh. and is not an error",
			lookup: strings.Repeat("n", 255),
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, strings.Repeat("n", 255)), "")
			},
			want: want{present: true, typ: unix.S_IFREG},
		},
		{
			name:   "absent name of 255 bytes",
			lookup: strings.Repeat("n", 255),
			setup:  func(t *testing.T, dir string) {},
			want:   want{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			got := lookup(t, dir, tc.lookup)
			if got.Present != tc.want.present || got.Hides != tc.want.hides {
				t.Fatalf("LookupName = {Present:%v Hides:%v}, want {Present:%v Hides:%v}",
					got.Present, got.Hides, tc.want.present, tc.want.hides)
			}
			if !got.Present {
				if got.St != (unix.Stat_t{}) {
					t.Errorf("St of an absent name should be zero, got mode %o", got.St.Mode)
				}
				return
			}
			if typ := got.St.Mode & unix.S_IFMT; typ != tc.want.typ {
				t.Errorf("St type %o, want %o", typ, tc.want.typ)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, tc.lookup), &st); err != nil {
				t.Fatal(err)
			}
			if st.Ino != got.St.Ino || st.Dev != got.St.Dev {
				t.Errorf("St is not the lstat of the name: ino %d, want %d", got.St.Ino, st.Ino)
			}
		})
	}
}

func TestLookupNameErrors(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteFile(t, filepath.Join(dir, "f"), "")
	// A descriptor that is not a directory: ENOTDIR, not "absent".
	fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := whiteout.LookupName(fd, "x", whiteout.DirMarkers{}); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("LookupName on a file descriptor: err = %v, want ENOTDIR", err)
	}
}

func TestClassify(t *testing.T) {
	type entry struct {
		name string
		typ  uint8
	}
	tests := []struct {
		name       string
		root       bool
		setup      func(t *testing.T, dir string)
		unknown    bool // pretend the filesystem returned DT_UNKNOWN for every entry
		wantNames  []entry
		wantHidden map[string]whiteout.Kind
	}{
		{
			name: "aufs markers and plain entries",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "file"), "data")
				testutil.WriteFile(t, filepath.Join(dir, "empty"), "")
				testutil.Mkdirs(t, filepath.Join(dir, "dir"))
				if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
					t.Fatal(err)
				}
				testutil.WriteFile(t, filepath.Join(dir, ".wh.gone"), "")
				testutil.WriteFile(t, filepath.Join(dir, ".wh.dir"), "") // recreated dir
				testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "")
				testutil.Mkdirs(t, filepath.Join(dir, ".wh..wh.plnk"))
				testutil.WriteFile(t, filepath.Join(dir, ".wh..wh.aufs"), "")
				testutil.WriteFile(t, filepath.Join(dir, ".wh."), "")
				testutil.WriteFile(t, filepath.Join(dir, ".hidden"), "") // a dotfile is a plain name
			},
			wantNames: []entry{
				{".hidden", unix.DT_REG}, {"dir", unix.DT_DIR}, {"empty", unix.DT_REG},
				{"fifo", unix.DT_FIFO}, {"file", unix.DT_REG}, {"link", unix.DT_LNK},
			},
			wantHidden: map[string]whiteout.Kind{"gone": whiteout.AufsFile, "dir": whiteout.AufsFile},
		},
		{
			name:    "aufs markers, DT_UNKNOWN entries are stat'ed",
			unknown: true,
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "file"), "data")
				testutil.Mkdirs(t, filepath.Join(dir, "dir"))
				if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
				testutil.WriteFile(t, filepath.Join(dir, ".wh.gone"), "")
				testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "")
			},
			wantNames:  []entry{{"dir", unix.DT_DIR}, {"file", unix.DT_REG}, {"link", unix.DT_LNK}},
			wantHidden: map[string]whiteout.Kind{"gone": whiteout.AufsFile},
		},
		{
			name: "xattr whiteouts in an opaque=x dir",
			setup: func(t *testing.T, dir string) {
				xattrWhiteout(t, dir, "xwh", "user.")
				testutil.WriteFile(t, filepath.Join(dir, "empty"), "")
				testutil.WriteFile(t, filepath.Join(dir, "full"), "data")
				testutil.SetxattrNeedRoot(t, filepath.Join(dir, "full"), "user.overlay.whiteout", "y")
				testutil.Mkdirs(t, filepath.Join(dir, "dir"))
			},
			wantNames: []entry{{"dir", unix.DT_DIR}, {"empty", unix.DT_REG}, {"full", unix.DT_REG}},
			wantHidden: map[string]whiteout.Kind{
				"xwh": whiteout.OverlayXattr,
			},
		},
		{
			name: "xattr whiteout file without opaque=x is listed",
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "xwh"), "")
				testutil.SetxattrNeedRoot(t, filepath.Join(dir, "xwh"), "user.overlay.whiteout", "y")
			},
			wantNames:  []entry{{"xwh", unix.DT_REG}},
			wantHidden: map[string]whiteout.Kind{},
		},
		{
			name: "mixed: char whiteouts, devices, trusted xattr whiteouts, aufs",
			root: true,
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "file"), "data")
				testutil.Mkdirs(t, filepath.Join(dir, "dir"))
				charWhiteout(t, filepath.Join(dir, "cwh"))
				devNull(t, filepath.Join(dir, "null"))
				xattrWhiteout(t, dir, "xwh", "trusted.")
				testutil.WriteFile(t, filepath.Join(dir, ".wh.awh"), "")
				testutil.WriteFile(t, filepath.Join(dir, whiteout.AufsOpaque), "")
			},
			wantNames: []entry{{"dir", unix.DT_DIR}, {"file", unix.DT_REG}, {"null", unix.DT_CHR}},
			wantHidden: map[string]whiteout.Kind{
				"cwh": whiteout.OverlayChar, "xwh": whiteout.OverlayXattr, "awh": whiteout.AufsFile,
			},
		},
		{
			name:    "mixed, DT_UNKNOWN",
			root:    true,
			unknown: true,
			setup: func(t *testing.T, dir string) {
				testutil.WriteFile(t, filepath.Join(dir, "file"), "")
				charWhiteout(t, filepath.Join(dir, "cwh"))
				devNull(t, filepath.Join(dir, "null"))
			},
			wantNames:  []entry{{"file", unix.DT_REG}, {"null", unix.DT_CHR}},
			wantHidden: map[string]whiteout.Kind{"cwh": whiteout.OverlayChar},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.NeedRoot(t, "char devices and trusted xattrs")
			}
			dir := t.TempDir()
			tc.setup(t, dir)
			root := testutil.OpenDir(t, dir)
			raw, err := sys.ReadDir(root, ".")
			if err != nil {
				t.Fatal(err)
			}
			if tc.unknown {
				for i := range raw {
					raw[i].Type = unix.DT_UNKNOWN
				}
			}
			names, hidden, err := whiteout.Classify(root, raw, markers(t, dir))
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			var got []entry
			for _, e := range names {
				if whiteout.IsReserved(e.Name) {
					t.Errorf("marker %q listed", e.Name)
				}
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(dir, e.Name), &st); err != nil {
					t.Fatal(err)
				}
				if e.Ino != st.Ino {
					t.Errorf("%s: Ino %d, want %d", e.Name, e.Ino, st.Ino)
				}
				got = append(got, entry{e.Name, e.Type})
			}
			slices.SortFunc(got, func(a, b entry) int { return strings.Compare(a.name, b.name) })
			if !slices.Equal(got, tc.wantNames) {
				t.Errorf("names = %v\nwant    %v", got, tc.wantNames)
			}
			if len(hidden) != len(tc.wantHidden) {
				t.Errorf("hidden = %v, want %v", hidden, tc.wantHidden)
			}
			for n, k := range tc.wantHidden {
				if hidden[n] != k {
					t.Errorf("hidden[%q] = %v, want %v", n, hidden[n], k)
				}
			}
		})
	}
}

func TestClassifyVanishedEntry(t *testing.T) {
	// An entry listed by getdents but gone by the time it is stat'ed is
	// skipped, not an error.
	dir := t.TempDir()
	testutil.WriteFile(t, filepath.Join(dir, "here"), "")
	raw := []sys.DirEntry{{Name: "gone", Type: unix.DT_UNKNOWN}, {Name: "here", Type: unix.DT_UNKNOWN}}
	names, hidden, err := whiteout.Classify(testutil.OpenDir(t, dir), raw, whiteout.DirMarkers{})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name != "here" || names[0].Type != unix.DT_REG || len(hidden) != 0 {
		t.Errorf("Classify = %v, %v; want only here (DT_REG)", names, hidden)
	}
}

// --- writing markers -------------------------------------------------------

func TestWriterWhiteout(t *testing.T) {
	tests := []struct {
		name string
		w    whiteout.Writer
		root bool
		want whiteout.Kind
		// onExisting: what Whiteout does when the name already exists.
		existingErr bool
	}{
		{"overlay", whiteout.Writer{Format: whiteout.Overlay}, true, whiteout.OverlayChar, true},
		{"overlay user.", whiteout.Writer{Format: whiteout.Overlay, XattrNamespace: "user."}, true, whiteout.OverlayChar, true},
		{"aufs", whiteout.Writer{Format: whiteout.Aufs}, false, whiteout.AufsFile, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.NeedRoot(t, "mknod of a char device 0/0")
			}
			dir := t.TempDir()
			fd := testutil.OpenDir(t, dir)
			if err := tc.w.Whiteout(fd, "gone"); err != nil {
				t.Fatalf("Whiteout: %v", err)
			}
			// Round trip: the reader sees the marker it wrote.
			l := lookup(t, dir, "gone")
			if l.Present || l.Hides != tc.want {
				t.Errorf("after Whiteout: LookupName = {Present:%v Hides:%v}, want {false %v}", l.Present, l.Hides, tc.want)
			}
			raw, err := sys.ReadDir(fd, ".")
			if err != nil {
				t.Fatal(err)
			}
			names, hidden, err := whiteout.Classify(fd, raw, markers(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 0 || hidden["gone"] != tc.want {
				t.Errorf("Classify after Whiteout = %v, %v", names, hidden)
			}

			// A second whiteout for the same name.
			err = tc.w.Whiteout(fd, "gone")
			if tc.existingErr {
				if !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "gone") {
					t.Errorf("second Whiteout: err = %v, want EEXIST naming the file", err)
				}
			} else if err != nil {
				t.Errorf("second Whiteout: %v, want nil (idempotent)", err)
			}

			// Over an existing object.
			testutil.WriteFile(t, filepath.Join(dir, "kept"), "data")
			err = tc.w.Whiteout(fd, "kept")
			if tc.existingErr {
				if !errors.Is(err, unix.EEXIST) {
					t.Errorf("Whiteout over a file: err = %v, want EEXIST", err)
				}
				if l := lookup(t, dir, "kept"); !l.Present || l.Hides != whiteout.NoMarker {
					t.Errorf("a failed whiteout changed the file: %+v", l)
				}
			} else {
				if err != nil {
					t.Fatalf("Whiteout over a file: %v", err)
				}
				// aufs: deleted then recreated; the object stays.
				l := lookup(t, dir, "kept")
				if !l.Present || l.Hides != whiteout.AufsFile {
					t.Errorf("after Whiteout over a file: {Present:%v Hides:%v}, want {true %v}", l.Present, l.Hides, whiteout.AufsFile)
				}
				if b, _ := os.ReadFile(filepath.Join(dir, "kept")); string(b) != "data" {
					t.Errorf("file content changed to %q", b)
				}
				fi, err := os.Lstat(filepath.Join(dir, ".wh.gone"))
				if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
					t.Errorf(".wh.gone should be an empty regular file: %v, %v", fi, err)
				}
			}
		})
	}
}

func TestWriterWhiteoutErrors(t *testing.T) {
	dir := t.TempDir()
	fd := testutil.OpenDir(t, dir)
	w := whiteout.Writer{Format: whiteout.Format(9)}
	if err := w.Whiteout(fd, "x"); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("unknown format: Whiteout err = %v", err)
	}
	if err := w.MakeOpaque(fd); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("unknown format: MakeOpaque err = %v", err)
	}
	// The aufs form in a missing directory names the marker.
	aufs := whiteout.Writer{Format: whiteout.Aufs}
	if err := aufs.Whiteout(fd, "nodir/x"); !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), ".wh.") {
		t.Errorf("aufs whiteout in a missing dir: err = %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := aufs.MakeOpaque(fd); err == nil || !strings.Contains(err.Error(), whiteout.AufsOpaque) {
		t.Errorf("aufs MakeOpaque in a removed dir: err = %v", err)
	}
}

func TestWriterMakeOpaque(t *testing.T) {
	tests := []struct {
		name  string
		w     whiteout.Writer
		root  bool
		xattr string // the attribute that must now be set, "" for aufs
	}{
		{"overlay default namespace", whiteout.Writer{Format: whiteout.Overlay}, true, "trusted.overlay.opaque"},
		{"overlay trusted.", whiteout.Writer{Format: whiteout.Overlay, XattrNamespace: "trusted."}, true, "trusted.overlay.opaque"},
		{"overlay user.", whiteout.Writer{Format: whiteout.Overlay, XattrNamespace: "user."}, false, "user.overlay.opaque"},
		{"aufs", whiteout.Writer{Format: whiteout.Aufs}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.NeedRoot(t, "trusted.* xattrs")
			}
			dir := t.TempDir()
			testutil.WriteFile(t, filepath.Join(dir, "kept"), "")
			if got := markers(t, dir); got.Opaque != whiteout.NoMarker {
				t.Fatalf("fresh dir reads as opaque: %+v", got)
			}
			fd := testutil.OpenDir(t, dir)
			for i := range 2 { // idempotent
				if err := tc.w.MakeOpaque(fd); err != nil {
					t.Fatalf("MakeOpaque #%d: %v", i+1, err)
				}
			}
			want := whiteout.OpaqueOverlay
			if tc.w.Format == whiteout.Aufs {
				want = whiteout.OpaqueAufs
			}
			if got := markers(t, dir); got.Opaque != want || got.XattrWhiteouts {
				t.Errorf("after MakeOpaque: ReadDirMarkers = %+v, want Opaque %v", got, want)
			}
			if tc.xattr != "" {
				buf := make([]byte, 16)
				n, err := unix.Lgetxattr(dir, tc.xattr, buf)
				if err != nil || string(buf[:n]) != "y" {
					t.Errorf("%s = %q, %v; want \"y\"", tc.xattr, buf[:max(n, 0)], err)
				}
				if _, err := os.Lstat(filepath.Join(dir, whiteout.AufsOpaque)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("overlay MakeOpaque wrote an aufs marker too: %v", err)
				}
			}
			// The opaque marker never shows as a name.
			raw, err := sys.ReadDir(fd, ".")
			if err != nil {
				t.Fatal(err)
			}
			names, hidden, err := whiteout.Classify(fd, raw, markers(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0].Name != "kept" || len(hidden) != 0 {
				t.Errorf("Classify after MakeOpaque = %v, %v; want only kept", names, hidden)
			}
		})
	}
}
