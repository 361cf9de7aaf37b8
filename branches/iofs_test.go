package branches_test

import (
	"errors"
	"io/fs"
	"slices"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// iofsLayers is a three-layer stack with whiteouts (in the dialect under
// test, plus an aufs one in every dialect), an opaque directory, symlinks
// and nested directories.
var iofsLayers = [][]string{
	{ // 0: upper
		"etc/hostname=upper-host",
		"WH:etc/passwd",
		"OPQ:opt",
		"opt/new=new",
		"link -> etc/hostname",
		"a/b/c/deep.txt=deep",
		"a/b/rel -> ../../etc/group",
		"top.txt=top",
	},
	{ // 1
		"etc/passwd=root:x:0:0",
		"etc/group=g1",
		"etc/shadow=secret",
		"opt/old=old",
		".wh.gone",
		"a/b/mid.txt=mid",
		"WH:a/b/dead",
		"dirlink -> a/b",
		"empty/",
	},
	{ // 2
		"etc/group=g2",
		"etc/passwd=bottom-passwd",
		"gone=x",
		"a/bottom.txt=bottom",
		"a/b/dead=dead",
		"opt/older=older",
		"empty/.wh..wh..opq",
	},
}

// iofsVisible is every path the union shows, sorted as fs.WalkDir walks.
var iofsVisible = []string{
	".",
	"a", "a/b", "a/b/c", "a/b/c/deep.txt", "a/b/mid.txt", "a/b/rel", "a/bottom.txt",
	"dirlink", "empty",
	"etc", "etc/group", "etc/hostname", "etc/shadow",
	"link",
	"opt", "opt/new",
	"top.txt",
}

// iofsHidden are names that exist in some branch but must not show.
var iofsHidden = []string{
	"etc/passwd", "opt/old", "opt/older", "gone", ".wh.gone", "a/b/dead",
	"a/b/.wh.dead", "etc/.wh.passwd", "opt/.wh..wh..opq", ".wh..wh..opq", "empty/.wh..wh..opq",
}

func TestFS(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			d.skipUnlessAble(t)
			s := stackOf(t, d, iofsLayers...)
			fsys := s.FS()

			var files []string
			for _, p := range iofsVisible {
				if p != "." {
					files = append(files, p)
				}
			}
			if err := fstest.TestFS(fsys, files...); err != nil {
				t.Fatal(err)
			}

			// Exactly the visible paths, nothing more.
			var walked []string
			err := fs.WalkDir(fsys, ".", func(p string, _ fs.DirEntry, err error) error {
				walked = append(walked, p)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(walked, iofsVisible) {
				t.Errorf("walk = %q\nwant   %q", walked, iofsVisible)
			}

			for _, p := range iofsHidden {
				if f, err := fsys.Open(p); !errors.Is(err, fs.ErrNotExist) {
					if f != nil {
						f.Close()
					}
					t.Errorf("Open(%q): %v, want ErrNotExist", p, err)
				}
				if _, err := fs.Stat(fsys, p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Stat(%q): %v, want ErrNotExist", p, err)
				}
			}
			for dir, want := range map[string][]string{
				".":     {"a", "dirlink", "empty", "etc", "link", "opt", "top.txt"},
				"etc":   {"group", "hostname", "shadow"},
				"opt":   {"new"},
				"a/b":   {"c", "mid.txt", "rel"},
				"empty": nil,
			} {
				ents, err := fs.ReadDir(fsys, dir)
				if err != nil {
					t.Fatalf("ReadDir(%s): %v", dir, err)
				}
				var got []string
				for _, e := range ents {
					got = append(got, e.Name())
				}
				if !slices.Equal(got, want) {
					t.Errorf("ReadDir(%s) = %q, want %q", dir, got, want)
				}
			}

			// Content comes from the right layer.
			for _, c := range []struct {
				path, want string
				branch     int
			}{
				{"etc/hostname", "upper-host", 0},
				{"etc/group", "g1", 1},
				{"etc/shadow", "secret", 1},
				{"opt/new", "new", 0},
				{"top.txt", "top", 0},
				{"a/b/mid.txt", "mid", 1},
				{"a/b/c/deep.txt", "deep", 0},
				{"a/bottom.txt", "bottom", 2},
				{"link", "upper-host", 0},     // through a symlink
				{"a/b/rel", "g1", 1},          // through a symlink with ..
				{"dirlink/mid.txt", "mid", 1}, // through a symlink to a dir
				{"dirlink/rel", "g1", 1},      // .. after a symlink to a dir
			} {
				b, err := fs.ReadFile(fsys, c.path)
				if err != nil {
					t.Errorf("ReadFile(%s): %v", c.path, err)
					continue
				}
				if string(b) != c.want {
					t.Errorf("ReadFile(%s) = %q, want %q", c.path, b, c.want)
				}
				info, err := fs.Stat(fsys, c.path)
				if err != nil {
					t.Fatal(err)
				}
				e, ok := info.Sys().(*branches.Entry)
				if !ok {
					t.Fatalf("Stat(%s).Sys() is %T", c.path, info.Sys())
				}
				if e.Top().Branch.Index != c.branch {
					t.Errorf("%s served by branch %d, want %d", c.path, e.Top().Branch.Index, c.branch)
				}
				if info.Size() != int64(len(c.want)) || !info.Mode().IsRegular() {
					t.Errorf("Stat(%s) = size %d mode %v", c.path, info.Size(), info.Mode())
				}
			}

			// Symlinks: Lstat and ReadLink see the link itself.
			rl := fsys.(fs.ReadLinkFS)
			for p, target := range map[string]string{"link": "etc/hostname", "a/b/rel": "../../etc/group", "dirlink": "a/b"} {
				got, err := rl.ReadLink(p)
				if err != nil || got != target {
					t.Errorf("ReadLink(%s) = %q, %v; want %q", p, got, err, target)
				}
				info, err := rl.Lstat(p)
				if err != nil || info.Mode().Type() != fs.ModeSymlink {
					t.Errorf("Lstat(%s) = %v, %v", p, info, err)
				}
			}
			if info, err := fs.Stat(fsys, "dirlink"); err != nil || !info.IsDir() {
				t.Errorf("Stat(dirlink) = %v, %v; want a directory", info, err)
			}
			if _, err := rl.ReadLink("etc/hostname"); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("ReadLink of a file: %v, want ErrInvalid", err)
			}

			// The directory inode numbers and link counts of the union.
			info, err := fs.Stat(fsys, "a")
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if st, err = s.Attr(info.Sys().(*branches.Entry)); err != nil || st.Nlink != 3 {
				t.Errorf("a: Nlink %d, %v; want 3", st.Nlink, err)
			}
		})
	}
}

// TestFSSymlinksLeavingTheUnion: absolute targets, targets above the root
// and loops do not open; the links themselves are still there.
func TestFSSymlinksLeavingTheUnion(t *testing.T) {
	s := stackOf(t, dialects[3], []string{
		"abs -> /etc/passwd",
		"up -> ../outside",
		"d/up2 -> ../../outside",
		"loop1 -> loop2",
		"loop2 -> loop1",
		"dangling -> nowhere",
		"through -> abs",
		"f=F",
		"notdir -> f/x",
	}, nil, nil)
	fsys := s.FS()
	tests := []struct {
		path string
		err  error
	}{
		{"abs", fs.ErrNotExist},
		{"up", fs.ErrNotExist},
		{"d/up2", fs.ErrNotExist},
		{"through", fs.ErrNotExist},
		{"dangling", fs.ErrNotExist},
		{"loop1", unix.ELOOP},
		{"notdir", unix.ENOTDIR},
		{"f/x", unix.ENOTDIR},
		{"/f", fs.ErrInvalid},
		{"d/../f", fs.ErrInvalid},
		{"./f", fs.ErrInvalid},
		{"f/", fs.ErrInvalid},
	}
	for _, tc := range tests {
		f, err := fsys.Open(tc.path)
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("Open(%s): %v, want %v", tc.path, err, tc.err)
		}
		var pe *fs.PathError
		if err != nil && (!errors.As(err, &pe) || pe.Path != tc.path) {
			t.Errorf("Open(%s): error %v does not name the path", tc.path, err)
		}
	}
	rl := fsys.(fs.ReadLinkFS)
	for _, p := range []string{"abs", "up", "loop1", "dangling"} {
		if info, err := rl.Lstat(p); err != nil || info.Mode().Type() != fs.ModeSymlink || info.Name() != p {
			t.Errorf("Lstat(%s) = %v, %v", p, info, err)
		}
	}
	if got, err := rl.ReadLink("abs"); err != nil || got != "/etc/passwd" {
		t.Errorf("ReadLink(abs) = %q, %v", got, err)
	}
	// A directory read as a file fails, and a file read as a directory.
	f, err := fsys.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read of a directory succeeded")
	}
	f.Close()
	if _, err := fs.ReadDir(fsys, "f"); err == nil {
		t.Errorf("ReadDir of a file succeeded")
	}
}

func TestFileMode(t *testing.T) {
	tests := []struct {
		mode uint32
		want fs.FileMode
	}{
		{unix.S_IFREG | 0o644, 0o644},
		{unix.S_IFDIR | 0o755, fs.ModeDir | 0o755},
		{unix.S_IFLNK | 0o777, fs.ModeSymlink | 0o777},
		{unix.S_IFIFO | 0o600, fs.ModeNamedPipe | 0o600},
		{unix.S_IFSOCK | 0o600, fs.ModeSocket | 0o600},
		{unix.S_IFCHR | 0o666, fs.ModeDevice | fs.ModeCharDevice | 0o666},
		{unix.S_IFBLK | 0o660, fs.ModeDevice | 0o660},
		{unix.S_IFREG | unix.S_ISUID | 0o755, fs.ModeSetuid | 0o755},
		{unix.S_IFDIR | unix.S_ISGID | 0o775, fs.ModeDir | fs.ModeSetgid | 0o775},
		{unix.S_IFDIR | unix.S_ISVTX | 0o777, fs.ModeDir | fs.ModeSticky | 0o777},
	}
	for _, tc := range tests {
		if got := branches.FileMode(tc.mode); got != tc.want {
			t.Errorf("FileMode(%o) = %v, want %v", tc.mode, got, tc.want)
		}
	}
}
