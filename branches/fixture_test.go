package branches_test

// Fixture helpers shared by the branches tests: a small tree builder (mk),
// whiteout dialects that turn generic markers into on-disk ones, stack
// openers and a tree snapshot to prove that Open writes nothing.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// mk builds a tree under root. Each spec line makes one object, parents
// included, in order:
//
//	"d/"          directory
//	"f", "f=text" regular file, empty or with content
//	"l -> tgt"    symlink
//	"b => a"      hard link b to the existing a
//	"c:p"         overlay whiteout p (char 0/0; needs root)
//	"x:p"         xattr whiteout p (empty file, user.overlay.whiteout; its
//	              directory gets user.overlay.opaque=x)
//	"tx:p"        the same with trusted.* xattrs (needs root)
//	"o:d"         directory d, opaque by trusted.overlay.opaque=y (needs root)
//	"uo:d"        directory d, opaque by user.overlay.opaque=y
//
// "WH:p" and "OPQ:d" are dialect-neutral; expand them with a dialect first.
func mk(t testing.TB, root string, spec ...string) {
	t.Helper()
	for _, line := range spec {
		mkOne(t, root, line)
	}
}

func mkOne(t testing.TB, root, line string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("mk %q: %v", line, err)
		}
	}
	abs := func(p string) string { return filepath.Join(root, p) }
	parent := func(p string) {
		t.Helper()
		must(os.MkdirAll(filepath.Dir(abs(p)), 0o755))
	}
	setx := func(p, attr, val string) {
		t.Helper()
		must(unix.Lsetxattr(abs(p), attr, []byte(val), 0))
	}
	xwh := func(p, ns string) {
		t.Helper()
		parent(p)
		must(os.WriteFile(abs(p), nil, 0o644))
		setx(p, ns+"overlay.whiteout", "y")
		setx(filepath.Dir(p), ns+"overlay.opaque", "x")
	}
	switch {
	case strings.HasPrefix(line, "WH:"), strings.HasPrefix(line, "OPQ:"):
		t.Fatalf("mk %q: dialect-neutral marker; expand it with a dialect", line)
	case strings.HasPrefix(line, "c:"):
		testutil.NeedRoot(t, "mknod of a char device 0/0")
		p := line[2:]
		parent(p)
		must(unix.Mknod(abs(p), unix.S_IFCHR|0o600, 0))
	case strings.HasPrefix(line, "x:"):
		xwh(line[2:], "user.")
	case strings.HasPrefix(line, "tx:"):
		testutil.NeedRoot(t, "trusted.* xattrs")
		xwh(line[3:], "trusted.")
	case strings.HasPrefix(line, "o:"):
		testutil.NeedRoot(t, "trusted.* xattrs")
		p := line[2:]
		must(os.MkdirAll(abs(p), 0o755))
		setx(p, "trusted.overlay.opaque", "y")
	case strings.HasPrefix(line, "uo:"):
		p := line[3:]
		must(os.MkdirAll(abs(p), 0o755))
		setx(p, "user.overlay.opaque", "y")
	case strings.Contains(line, " -> "):
		p, target, _ := strings.Cut(line, " -> ")
		parent(p)
		must(os.Symlink(target, abs(p)))
	case strings.Contains(line, " => "):
		p, old, _ := strings.Cut(line, " => ")
		parent(p)
		must(os.Link(abs(old), abs(p)))
	case strings.HasSuffix(line, "/"):
		must(os.MkdirAll(abs(line), 0o755))
	default:
		p, content, _ := strings.Cut(line, "=")
		parent(p)
		must(os.WriteFile(abs(p), []byte(content), 0o644))
	}
}

// dialect writes the dialect-neutral markers "WH:p" (p is whited out) and
// "OPQ:d" (directory d is opaque) in one on-disk form.
type dialect struct {
	name string
	root bool   // needs root
	wh   string // mk prefix for a whiteout, "" for the aufs .wh. file
	opq  string // mk prefix for an opaque dir, "" for .wh..wh..opq
}

var dialects = []dialect{
	{name: "overlay", root: true, wh: "c:", opq: "o:"},
	{name: "overlay-xattr-trusted", root: true, wh: "tx:", opq: "o:"},
	{name: "overlay-xattr-user", wh: "x:", opq: "uo:"},
	{name: "aufs", wh: "", opq: ""},
}

// expand rewrites the dialect-neutral lines of spec.
func (d dialect) expand(spec []string) []string {
	out := make([]string, 0, len(spec))
	for _, line := range spec {
		switch {
		case strings.HasPrefix(line, "WH:"):
			p := line[3:]
			if d.wh == "" {
				dir, name := filepath.Split(p)
				out = append(out, dir+".wh."+name)
			} else {
				out = append(out, d.wh+p)
			}
		case strings.HasPrefix(line, "OPQ:"):
			p := strings.TrimSuffix(line[4:], "/")
			if d.opq == "" {
				out = append(out, p+"/", p+"/.wh..wh..opq")
			} else {
				out = append(out, d.opq+p)
			}
		default:
			out = append(out, line)
		}
	}
	return out
}

// skipUnlessAble skips (or fails under CI=true) a dialect that needs root.
func (d dialect) skipUnlessAble(t testing.TB) {
	t.Helper()
	if d.root {
		testutil.NeedRoot(t, d.name+" markers")
	}
}

// trees makes one temp directory per spec (top first), expanded with d.
func trees(t testing.TB, d dialect, specs ...[]string) []string {
	t.Helper()
	base := t.TempDir()
	dirs := make([]string, len(specs))
	for i, spec := range specs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("layer%d", i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		mk(t, dirs[i], d.expand(spec)...)
	}
	return dirs
}

// lowerOpts are the options of a read-only overlay stack over dirs, top
// first, as ParseOptions("lowerdir=d0:d1:...") makes them.
func lowerOpts(dirs ...string) *branches.Options {
	o := &branches.Options{Syntax: branches.SyntaxOverlay, ReadOnly: true}
	for _, d := range dirs {
		o.Branches = append(o.Branches, branches.BranchSpec{Path: d, Perm: branches.RO, Role: branches.RoleLower})
	}
	return o
}

// upperOpts are the options of a writable overlay stack.
func upperOpts(upper, work string, lowers ...string) *branches.Options {
	o := lowerOpts(lowers...)
	o.ReadOnly = false
	o.Workdir = work
	o.Branches = append([]branches.BranchSpec{{Path: upper, Perm: branches.RW, Role: branches.RoleUpper}}, o.Branches...)
	return o
}

// openStack opens a read-only stack over dirs (top first), closed at the
// end of the test.
func openStack(t testing.TB, dirs ...string) *branches.Stack {
	t.Helper()
	s, err := branches.Open(lowerOpts(dirs...), "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stackOf builds the layers (top first) with dialect d and opens them.
func stackOf(t testing.TB, d dialect, specs ...[]string) *branches.Stack {
	t.Helper()
	return openStack(t, trees(t, d, specs...)...)
}

func resolve(t testing.TB, s *branches.Stack, p string) *branches.Entry {
	t.Helper()
	e, err := s.Resolve(p)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", p, err)
	}
	return e
}

// content reads the serving copy of a regular file entry.
func content(t testing.TB, s *branches.Stack, e *branches.Entry) string {
	t.Helper()
	fd, err := s.OpenLayer(e.Top(), unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		t.Fatalf("OpenLayer(%s): %v", e.Path, err)
	}
	f := os.NewFile(uintptr(fd), e.Path)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// layerIndexes lists the branch index of every layer of e.
func layerIndexes(e *branches.Entry) []int {
	out := make([]int, len(e.Layers))
	for i, l := range e.Layers {
		out[i] = l.Branch.Index
	}
	return out
}

// snapshot describes every object under root (mode, size, inode number,
// link count, device, mtime and ctime, content hash or link target,
// xattrs), one line each, to prove that an operation changed nothing.
func snapshot(t testing.TB, root string) string {
	t.Helper()
	return testutil.Snapshot(t, root, testutil.WithSize|testutil.WithContent|testutil.WithRdev|testutil.WithIno|
		testutil.WithNlink|testutil.WithMtime|testutil.WithRootMtime|testutil.WithCtime|testutil.WithXattrs)
}
