package branches_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// mountTmpfs mounts a fresh tmpfs on a temp dir (root only) and unmounts it
// at the end of the test.
func mountTmpfs(t testing.TB) string {
	t.Helper()
	testutil.NeedRoot(t, "mount -t tmpfs")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestOpenRefuses(t *testing.T) {
	// Every case starts from base holding the directories a, a/sub, b, u,
	// w (an empty workdir), mnt, the file "file" and a symlink "linkA" to
	// a. build returns the options, the mountpoint, and the path the
	// message must name (the offending one).
	type setup struct {
		opts      *branches.Options
		mnt       string
		offending string
		also      []string // more words the message must contain
	}
	tests := []struct {
		name     string
		root     bool
		build    func(t *testing.T, base string) setup
		sentinel error
		role     string
	}{
		{
			name: "missing lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "nope")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p}
			},
			sentinel: branches.ErrMissing, role: "lowerdir",
		},
		{
			name: "missing upper",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "nope")
				return setup{opts: upperOpts(p, filepath.Join(base, "w"), filepath.Join(base, "a")), offending: p}
			},
			sentinel: branches.ErrMissing, role: "upperdir",
		},
		{
			name: "dangling symlink as a lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "dangling")
				mk(t, base, "dangling -> nowhere")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p}
			},
			sentinel: branches.ErrMissing, role: "lowerdir",
		},
		{
			name: "a file as a lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "file")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p}
			},
			sentinel: branches.ErrNotDir, role: "lowerdir",
		},
		{
			name: "a symlink to a file as a lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "linkFile")
				mk(t, base, "linkFile -> file")
				return setup{opts: lowerOpts(p), offending: p}
			},
			sentinel: branches.ErrNotDir, role: "lowerdir",
		},
		{
			name: "a file as the upper",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "file")
				return setup{opts: upperOpts(p, filepath.Join(base, "w"), filepath.Join(base, "a")), offending: p}
			},
			sentinel: branches.ErrNotDir, role: "upperdir",
		},
		{
			name: "the same lower twice",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a")
				return setup{opts: lowerOpts(p, filepath.Join(base, "b"), p), offending: p, also: []string{"same directory"}}
			},
			sentinel: branches.ErrDuplicate, role: "lowerdir",
		},
		{
			name: "the same lower twice, once through a symlink",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "linkA")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p, also: []string{filepath.Join(base, "a")}}
			},
			sentinel: branches.ErrDuplicate, role: "lowerdir",
		},
		{
			name: "the same lower twice, once spelled with ./ and a trailing slash",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "b") + "/./"
				return setup{opts: lowerOpts(filepath.Join(base, "b"), p), offending: p}
			},
			sentinel: branches.ErrDuplicate, role: "lowerdir",
		},
		{
			name: "upper is also a lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a")
				return setup{opts: upperOpts(p, filepath.Join(base, "w"), p), offending: p, also: []string{"upperdir"}}
			},
			sentinel: branches.ErrDuplicate, role: "lowerdir",
		},
		{
			name: "a lower nested in a higher lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a", "sub")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p, also: []string{"inside", filepath.Join(base, "a")}}
			},
			sentinel: branches.ErrNested, role: "lowerdir",
		},
		{
			name: "a lower nested in a lower below it",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a", "sub")
				return setup{opts: lowerOpts(p, filepath.Join(base, "b"), filepath.Join(base, "a")), offending: p, also: []string{"inside"}}
			},
			sentinel: branches.ErrNested, role: "lowerdir",
		},
		{
			name: "a lower nested through a symlink",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "linkA", "sub")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), offending: p}
			},
			sentinel: branches.ErrNested, role: "lowerdir",
		},
		{
			name: "the upper nested in a lower",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a", "sub")
				return setup{opts: upperOpts(p, filepath.Join(base, "w"), filepath.Join(base, "a")), offending: p}
			},
			sentinel: branches.ErrNested, role: "upperdir",
		},
		{
			name: "a lower nested in the upper",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a", "sub")
				return setup{opts: upperOpts(filepath.Join(base, "a"), filepath.Join(base, "w"), p), offending: p}
			},
			sentinel: branches.ErrNested, role: "lowerdir",
		},
		{
			name: "the workdir inside the upper",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "a", "sub")
				return setup{opts: upperOpts(filepath.Join(base, "a"), p, filepath.Join(base, "b")), offending: p}
			},
			sentinel: branches.ErrNested, role: "workdir",
		},
		{
			name: "the workdir is the upper",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "u")
				return setup{opts: upperOpts(p, p, filepath.Join(base, "b")), offending: p}
			},
			sentinel: branches.ErrDuplicate, role: "workdir",
		},
		{
			name: "a branch inside the mountpoint",
			build: func(t *testing.T, base string) setup {
				mnt := filepath.Join(base, "mnt")
				p := filepath.Join(mnt, "l")
				mk(t, base, "mnt/l/")
				return setup{opts: lowerOpts(filepath.Join(base, "a"), p), mnt: mnt, offending: p, also: []string{"mountpoint", mnt}}
			},
			sentinel: branches.ErrNested, role: "lowerdir",
		},
		{
			name: "the workdir inside the mountpoint",
			build: func(t *testing.T, base string) setup {
				mnt := filepath.Join(base, "mnt")
				p := filepath.Join(mnt, "w")
				mk(t, base, "mnt/w/")
				return setup{opts: upperOpts(filepath.Join(base, "u"), p, filepath.Join(base, "a")), mnt: mnt, offending: p}
			},
			sentinel: branches.ErrNested, role: "workdir",
		},
		{
			name: "the mountpoint inside a lower",
			build: func(t *testing.T, base string) setup {
				mnt := filepath.Join(base, "a", "sub")
				return setup{opts: lowerOpts(filepath.Join(base, "b"), filepath.Join(base, "a")), mnt: mnt, offending: mnt,
					also: []string{filepath.Join(base, "a")}}
			},
			sentinel: branches.ErrNested, role: "mountpoint",
		},
		{
			name: "the mountpoint inside the upper",
			build: func(t *testing.T, base string) setup {
				mk(t, base, "u/m/")
				mnt := filepath.Join(base, "u", "m")
				return setup{opts: upperOpts(filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "a")), mnt: mnt, offending: mnt}
			},
			sentinel: branches.ErrNested, role: "mountpoint",
		},
		{
			name: "missing mountpoint",
			build: func(t *testing.T, base string) setup {
				mnt := filepath.Join(base, "nomnt")
				return setup{opts: lowerOpts(filepath.Join(base, "a")), mnt: mnt, offending: mnt}
			},
			sentinel: branches.ErrMissing, role: "mountpoint",
		},
		{
			name: "missing workdir",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "nowork")
				return setup{opts: upperOpts(filepath.Join(base, "u"), p, filepath.Join(base, "a")), offending: p}
			},
			sentinel: branches.ErrMissing, role: "workdir",
		},
		{
			name: "a file as the workdir",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "file")
				return setup{opts: upperOpts(filepath.Join(base, "u"), p, filepath.Join(base, "a")), offending: p}
			},
			sentinel: branches.ErrNotDir, role: "workdir",
		},
		{
			name: "workdir with foreign content",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "w")
				mk(t, base, "w/work/", "w/precious.txt=keep me")
				return setup{opts: upperOpts(filepath.Join(base, "u"), p, filepath.Join(base, "a")), offending: p, also: []string{"precious.txt"}}
			},
			sentinel: branches.ErrWorkdir, role: "workdir",
		},
		{
			name: "workdir with a foreign directory",
			build: func(t *testing.T, base string) setup {
				p := filepath.Join(base, "w")
				mk(t, base, "w/data/x")
				return setup{opts: upperOpts(filepath.Join(base, "u"), p, filepath.Join(base, "a")), offending: p, also: []string{`"data"`}}
			},
			sentinel: branches.ErrWorkdir, role: "workdir",
		},
		{
			name: "workdir on another filesystem than the upper",
			root: true,
			build: func(t *testing.T, base string) setup {
				p := mountTmpfs(t)
				u := filepath.Join(base, "u")
				return setup{opts: upperOpts(u, p, filepath.Join(base, "a")), offending: p, also: []string{u, "different filesystem"}}
			},
			sentinel: branches.ErrWorkdir, role: "workdir",
		},
		{
			name: "upper on another filesystem than the workdir",
			root: true,
			build: func(t *testing.T, base string) setup {
				u := mountTmpfs(t)
				mk(t, u, "file=upper data")
				p := filepath.Join(base, "w")
				return setup{opts: upperOpts(u, p, filepath.Join(base, "a")), offending: p, also: []string{u}}
			},
			sentinel: branches.ErrWorkdir, role: "workdir",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.NeedRoot(t, "mount -t tmpfs")
			}
			base := t.TempDir()
			mk(t, base, "a/sub/", "a/data=A", "b/", "u/", "w/", "mnt/", "file=F", "linkA -> a")
			s := tc.build(t, base)
			// Every directory the options name, and the whole base.
			roots := []string{base}
			for _, b := range s.opts.Branches {
				roots = append(roots, b.Path)
			}
			roots = append(roots, s.opts.Workdir)
			before := map[string]string{}
			for _, r := range roots {
				if r != "" {
					before[r] = snapshotIfExists(t, r)
				}
			}
			fds := openFDs(t)

			stack, err := branches.Open(s.opts, s.mnt)
			if err == nil {
				stack.Close()
				t.Fatalf("Open succeeded, want %v", tc.sentinel)
			}
			if stack != nil {
				t.Errorf("Open returned a stack with the error")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("Open: %v; want errors.Is %v", err, tc.sentinel)
			}
			var be *branches.BranchError
			if !errors.As(err, &be) {
				t.Fatalf("Open: %T %v, want a *BranchError", err, err)
			}
			if be.Role != tc.role {
				t.Errorf("BranchError.Role = %q, want %q (%v)", be.Role, tc.role, err)
			}
			if be.Path != s.offending {
				t.Errorf("BranchError.Path = %q, want %q", be.Path, s.offending)
			}
			msg := err.Error()
			for _, w := range append([]string{s.offending, tc.role}, s.also...) {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			if got := openFDs(t); got != fds {
				t.Errorf("a refused Open leaks descriptors: %d open before, %d after", fds, got)
			}
			for r, snap := range before {
				if after := snapshotIfExists(t, r); after != snap {
					t.Errorf("a refused Open changed %s:\nbefore:\n%s\nafter:\n%s", r, snap, after)
				}
			}
		})
	}
}

func snapshotIfExists(t testing.TB, p string) string {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		return "absent"
	}
	return snapshot(t, p)
}

func TestOpenAccepts(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, base string) (*branches.Options, string)
	}{
		{
			name: "siblings sharing a name prefix are not nested",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				mk(t, base, "ab/")
				return lowerOpts(filepath.Join(base, "a"), filepath.Join(base, "ab")), ""
			},
		},
		{
			name: "mountpoint over the upper itself",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				u := filepath.Join(base, "u")
				return upperOpts(u, filepath.Join(base, "w"), filepath.Join(base, "a")), u
			},
		},
		{
			name: "mountpoint beside the branches",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				return upperOpts(filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "a")), filepath.Join(base, "mnt")
			},
		},
		{
			name: "workdir left by kernel overlay",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				mk(t, base, "w/work/", "w/index/", "w/incompat/")
				return upperOpts(filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "a")), ""
			},
		},
		{
			name: "workdir left by strata",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				mk(t, base, "w/strata/tmp-1=partial")
				return upperOpts(filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "a")), ""
			},
		},
		{
			name: "a lower given through a symlink",
			build: func(t *testing.T, base string) (*branches.Options, string) {
				return lowerOpts(filepath.Join(base, "linkA"), filepath.Join(base, "b")), ""
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			mk(t, base, "a/sub/", "a/data=A", "b/", "u/", "w/", "mnt/", "linkA -> a")
			opts, mnt := tc.build(t, base)
			before := withoutWorkdir(snapshot(t, base))
			s, err := branches.Open(opts, mnt)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if after := withoutWorkdir(snapshot(t, base)); after != before {
				t.Errorf("Open changed the branches:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// The workdir is the one place an accepted writable Open
			// writes: its scratch directory, emptied of leftovers.
			if s.Writable() {
				if entries, err := os.ReadDir(filepath.Join(base, "w", "strata")); err != nil || len(entries) != 0 {
					t.Errorf("workdir scratch dir: %v entries, err %v; want it empty", len(entries), err)
				}
			}
			if len(s.Branches()) != len(opts.Branches) {
				t.Fatalf("%d branches, want %d", len(s.Branches()), len(opts.Branches))
			}
			for i, b := range s.Branches() {
				spec := opts.Branches[i]
				want, err := filepath.EvalSymlinks(spec.Path)
				if err != nil {
					t.Fatal(err)
				}
				if b.Index != i || b.Given != spec.Path || b.Path != want || b.Perm != spec.Perm || b.Role != spec.Role {
					t.Errorf("branch %d = %+v, want index %d, given %s, path %s", i, *b, i, spec.Path, want)
				}
				if b.FD() < 0 {
					t.Errorf("branch %d has no descriptor", i)
				}
			}
			if opts.Workdir != "" {
				want, _ := filepath.EvalSymlinks(opts.Workdir)
				if s.Workdir() != want {
					t.Errorf("Workdir() = %q, want %q", s.Workdir(), want)
				}
			}
			if _, err := s.Resolve("."); err != nil {
				t.Errorf("Resolve(.): %v", err)
			}
		})
	}
}

// TestOpenNoBranches: options built by hand (not by ParseOptions) with no
// branch are refused, not a panic.
func TestOpenNoBranches(t *testing.T) {
	for _, o := range []*branches.Options{{}, {Syntax: branches.SyntaxOverlay, Workdir: t.TempDir()}} {
		s, err := branches.Open(o, "")
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) succeeded", *o)
		}
		if !errors.Is(err, branches.ErrOption) || !strings.Contains(err.Error(), "no branches") {
			t.Errorf("Open(%+v): %v, want ErrOption naming the missing branches", *o, err)
		}
	}
}

func TestStackAccessors(t *testing.T) {
	base := t.TempDir()
	mk(t, base, "u/", "w/", "l1/", "l2/")
	opts := upperOpts(filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "l1"), filepath.Join(base, "l2"))
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Options() != opts {
		t.Errorf("Options() is not the options given")
	}
	if u := s.Upper(); u == nil || u.Index != 0 || u.Name() != "upper" {
		t.Errorf("Upper() = %+v", u)
	}
	names := []string{}
	for _, b := range s.Branches() {
		names = append(names, b.Name())
	}
	if got := strings.Join(names, ","); got != "upper,lower1,lower2" {
		t.Errorf("branch names %s", got)
	}
	fds := openFDs(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// One per branch, and the workdir's of this writable stack.
	if got := openFDs(t); got != fds-4 {
		t.Errorf("Close released %d descriptors, want 4", fds-got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	ro := openStack(t, filepath.Join(base, "l1"), filepath.Join(base, "l2"))
	if ro.Upper() != nil {
		t.Errorf("read-only stack has an upper: %+v", ro.Upper())
	}
	if ro.Workdir() != "" {
		t.Errorf("read-only stack has a workdir: %q", ro.Workdir())
	}

	aufsOpts, err := branches.ParseOptions([]string{"br=" + filepath.Join(base, "l1") + ":" + filepath.Join(base, "l2")})
	if err != nil {
		t.Fatal(err)
	}
	as, err := branches.Open(aufsOpts, "")
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	if u := as.Upper(); u == nil || u.Name() != "br0" || as.Branches()[1].Name() != "br1" {
		t.Errorf("aufs names: upper %+v", u)
	}
}

// TestOpenThousandBranches: no fixed branch limit. A file that only the
// bottom of 1000 lowers holds resolves, served by that branch.
func TestOpenThousandBranches(t *testing.T) {
	const depth = 1000
	base := t.TempDir()
	var dirs []string
	for i := range depth {
		d := filepath.Join(base, fmt.Sprintf("l%04d", i))
		mk(t, d, "d/", fmt.Sprintf("d/own%04d=%d", i, i))
		dirs = append(dirs, d)
	}
	bottom := dirs[depth-1]
	mk(t, bottom, "d/deep/bottom.txt=from the bottom")
	mk(t, dirs[0], "top.txt=from the top")
	opts, err := branches.ParseOptions([]string{"lowerdir=" + strings.Join(dirs, ":")})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Branches) != depth {
		t.Fatalf("%d branches parsed", len(opts.Branches))
	}
	s, err := branches.Open(opts, "")
	if err != nil {
		t.Fatalf("Open of %d branches: %v", depth, err)
	}
	defer s.Close()
	if len(s.Branches()) != depth {
		t.Fatalf("%d branches opened", len(s.Branches()))
	}

	e := resolve(t, s, "d/deep/bottom.txt")
	if b := e.Top().Branch; b.Index != depth-1 || b.Path != bottom {
		t.Errorf("served by branch %d (%s), want %d (%s)", b.Index, b.Path, depth-1, bottom)
	}
	if got := content(t, s, e); got != "from the bottom" {
		t.Errorf("content %q", got)
	}
	if e := resolve(t, s, "top.txt"); e.Top().Branch.Index != 0 {
		t.Errorf("top.txt served by %d", e.Top().Branch.Index)
	}
	d := resolve(t, s, "d")
	if len(d.Layers) != depth {
		t.Errorf("d merges %d layers, want %d", len(d.Layers), depth)
	}
	names, err := s.Names(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != depth+1 || names[0].Name != "deep" || names[depth].Name != fmt.Sprintf("own%04d", depth-1) {
		t.Errorf("Names(d): %d names, first %v", len(names), names[:min(3, len(names))])
	}
	if e := resolve(t, s, "d/own0500"); e.Top().Branch.Index != 500 {
		t.Errorf("own0500 served by %d", e.Top().Branch.Index)
	}
}

// withoutWorkdir drops the workdir ("w") from a snapshot of the test base.
func withoutWorkdir(snap string) string {
	var keep []string
	for _, line := range strings.Split(snap, "\n") {
		if !strings.HasPrefix(line, "w ") && !strings.HasPrefix(line, "w/") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
