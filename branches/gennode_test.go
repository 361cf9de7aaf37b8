package branches_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// fuseNode plays unionfs.Node: one node per union inode number, holding an
// entry resolved at a Generation, re-resolved by its newest name only when
// the Generation has changed, and kept when that name no longer leads to
// its number. names plays go-fuse's parents (newest last).
type fuseNode struct {
	s     *branches.Stack
	entry *branches.Entry
	gen   uint64
	names []string
}

// fuseNodes plays go-fuse's table of nodes by inode number: a lookup that
// finds a known number gets the known node (and its entry, not the new one).
type fuseNodes struct {
	s     *branches.Stack
	byIno map[uint64]*fuseNode
}

func newFuseNodes(s *branches.Stack) *fuseNodes {
	return &fuseNodes{s: s, byIno: map[uint64]*fuseNode{}}
}

// lookup resolves p as unionfs.Node.Lookup does and returns its node.
func (f *fuseNodes) lookup(t *testing.T, p string) *fuseNode {
	t.Helper()
	gen := f.s.Generation()
	e, err := f.s.Resolve(p)
	if err != nil {
		t.Fatalf("lookup %s: %v", p, err)
	}
	n := f.byIno[e.Ino]
	if n == nil {
		n = &fuseNode{s: f.s, entry: e, gen: gen}
		f.byIno[e.Ino] = n
	}
	n.names = append(slices.DeleteFunc(n.names, func(s string) bool { return s == p }), p)
	return n
}

func (n *fuseNode) current() *branches.Entry {
	gen := n.s.Generation()
	if n.gen != gen && len(n.names) > 0 {
		if e, err := n.s.Resolve(n.names[len(n.names)-1]); err == nil && e.Ino == n.entry.Ino {
			n.entry = e
		}
	}
	n.gen = gen
	return n.entry
}

func (n *fuseNode) set(e *branches.Entry, gen uint64) { n.entry, n.gen = e, gen }

func (n *fuseNode) forgetName(p string) {
	n.names = slices.DeleteFunc(n.names, func(s string) bool { return s == p })
}

func (n *fuseNode) renamed(from, to string) {
	n.forgetName(from)
	n.names = append(n.names, to)
}

// read opens the node's entry as unionfs.Node.Open does for O_RDONLY.
func (n *fuseNode) read(t *testing.T) (string, error) {
	t.Helper()
	_, fd, _, err := n.s.Open(n.current(), unix.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	k, err := unix.Read(fd, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:k]), nil
}

// Two lower branches on one filesystem holding hard links of one inode: the
// union gives both names one number, hence one FUSE node. Copying one name
// up (its branch's link map has only that name) makes an upper copy with
// that number and st_nlink 1; unlinking it leaves the Generation alone, so
// the node, still reachable by the other name, keeps the gone copy's entry.
func TestGenerationNodeCrossBranchLinks(t *testing.T) {
	for _, wd := range writeDialects {
		t.Run(wd.name, func(t *testing.T) {
			w := newWStackPrep(t, wd, func(w *wstack) {
				if err := os.Link(filepath.Join(w.lowers[0], "a"), filepath.Join(w.lowers[1], "b")); err != nil {
					t.Fatal(err)
				}
			}, nil, []string{"a=shared"}, []string{})
			nodes := newFuseNodes(w.s)
			x := nodes.lookup(t, "a")
			gen := w.s.Generation()
			m := uint32(0o600)
			up, err := w.s.Setattr(x.current(), branches.SetAttr{Mode: &m}) // chmod a: copy-up
			if err != nil {
				t.Fatal(err)
			}
			x.set(up, gen)
			if _, err := x.read(t); err != nil { // any request: x re-resolves "a"
				t.Fatal(err)
			}
			if y := nodes.lookup(t, "b"); y != x {
				t.Fatalf("a and b have different numbers (%x, %x): no shared node", x.entry.Ino, y.entry.Ino)
			}
			if err := w.s.Remove(w.resolve(t, "."), "a", false); err != nil { // unlink a
				t.Fatal(err)
			}
			x.forgetName("a")
			got, err := x.read(t) // cat b
			if err != nil || got != "shared" {
				t.Errorf("b through its node after unlinking a: %q, %v; want \"shared\" (node entry %s in %s)",
					got, err, x.entry.Layers[0].Path, x.entry.Top().Branch.Name())
			}
		})
	}
}

// The same with the aufs syntax and two rw branches: a hard-link pair in the
// lower rw branch is changed in place, but a rename moves the renamed name
// alone to the top rw branch (a copy with the pair's number, st_nlink 1).
func TestGenerationNodeLinksInLowerRWBranch(t *testing.T) {
	base := t.TempDir()
	top, low := filepath.Join(base, "top"), filepath.Join(base, "low")
	mk(t, base, "top/", "low/a=shared", "low/b => low/a")
	opts, err := branches.ParseOptions([]string{"br=" + top + "=rw:" + low + "=rw"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes := newFuseNodes(s)
	x := nodes.lookup(t, "a")
	root := resolve(t, s, ".")
	if err := s.Rename(root, "a", root, "a2", 0); err != nil {
		t.Fatal(err)
	}
	x.renamed("a", "a2")
	if _, err := x.read(t); err != nil { // any request: x re-resolves "a2"
		t.Fatal(err)
	}
	if y := nodes.lookup(t, "b"); y != x {
		t.Fatalf("a2 and b have different numbers: no shared node")
	}
	if err := s.Remove(resolve(t, s, "."), "a2", false); err != nil {
		t.Fatal(err)
	}
	x.forgetName("a2")
	got, err := x.read(t) // cat b
	if err != nil || got != "shared" {
		t.Errorf("b through its node after unlinking a2: %q, %v; want \"shared\" (node entry %s in %s)",
			got, err, x.entry.Layers[0].Path, x.entry.Top().Branch.Name())
	}
}
