package branches_test

// Fixture for the write-path tests: a writable stack built in one of the two
// written dialects, a model of the union (path -> description) to compare
// before and after an operation, the markers of the raw upper branch in
// dialect-neutral terms, and the checks every write must pass (lower
// branches untouched, workdir left empty).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
	"github.com/strata-fs/strata/whiteout"
)

// writeDialect is one way to build a writable stack: the option syntax and
// the whiteout format the write path writes.
type writeDialect struct {
	name   string
	format whiteout.Format
}

// writeDialects: overlay syntax writing overlay markers, aufs syntax
// (br=, no workdir) writing aufs markers.
var writeDialects = []writeDialect{
	{name: "overlay", format: whiteout.Overlay},
	{name: "aufs", format: whiteout.Aufs},
}

// whForm is the form of a whiteout this dialect writes, as upperMarkers
// names it.
func (wd writeDialect) whForm() string {
	if wd.format == whiteout.Overlay {
		return "char"
	}
	return "aufs"
}

// opqForm is the form of an opaque marker this dialect writes.
func (wd writeDialect) opqForm() string {
	if wd.format == whiteout.Aufs {
		return "aufs"
	}
	if os.Geteuid() == 0 {
		return "trusted"
	}
	return "user"
}

// optEscape escapes a path for an option value.
var optEscape = strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`, `=`, `\=`, `"`, `\"`)

// wstack is a writable stack and the directories it was built from.
type wstack struct {
	wd         writeDialect
	upper      string
	work       string // the workdir given (overlay syntax), "" for aufs
	lowers     []string
	opts       *branches.Options
	s          *branches.Stack
	lowerSnaps []string
}

// newWStack builds the upper and lower trees from concrete mk specs (use
// dialect.expand for neutral markers) and opens a writable stack over them.
func newWStack(t testing.TB, wd writeDialect, upper []string, lowers ...[]string) *wstack {
	t.Helper()
	return newWStackPrep(t, wd, nil, upper, lowers...)
}

// newWStackPrep is newWStack with prep run on the built trees before the
// lower branches are snapshot and the stack is opened (to set xattrs, say).
func newWStackPrep(t testing.TB, wd writeDialect, prep func(w *wstack), upper []string, lowers ...[]string) *wstack {
	t.Helper()
	base := t.TempDir()
	w := &wstack{wd: wd, upper: filepath.Join(base, "upper")}
	if err := os.Mkdir(w.upper, 0o755); err != nil {
		t.Fatal(err)
	}
	mk(t, w.upper, upper...)
	for i, spec := range lowers {
		l := filepath.Join(base, fmt.Sprintf("lower%d", i))
		if err := os.Mkdir(l, 0o755); err != nil {
			t.Fatal(err)
		}
		mk(t, l, spec...)
		w.lowers = append(w.lowers, l)
	}
	var item string
	switch wd.format {
	case whiteout.Overlay:
		w.work = filepath.Join(base, "work")
		if err := os.Mkdir(w.work, 0o755); err != nil {
			t.Fatal(err)
		}
		var ls []string
		for _, l := range w.lowers {
			ls = append(ls, optEscape.Replace(l))
		}
		item = "lowerdir=" + strings.Join(ls, ":") + ",upperdir=" + optEscape.Replace(w.upper) + ",workdir=" + optEscape.Replace(w.work)
	case whiteout.Aufs:
		item = "br=" + optEscape.Replace(w.upper) + "=rw"
		for _, l := range w.lowers {
			item += ":" + optEscape.Replace(l) + "=ro"
		}
	}
	opts, err := branches.ParseOptions([]string{item})
	if err != nil {
		t.Fatalf("ParseOptions(%q): %v", item, err)
	}
	if opts.ReadOnly {
		t.Fatalf("ParseOptions(%q): read-only", item)
	}
	opts.Whiteout = wd.format
	w.opts = opts
	if prep != nil {
		prep(w)
	}
	for _, l := range w.lowers {
		w.lowerSnaps = append(w.lowerSnaps, snapshot(t, l))
	}
	w.open(t)
	t.Cleanup(func() {
		if w.s != nil {
			w.s.Close()
		}
	})
	return w
}

func (w *wstack) open(t testing.TB) {
	t.Helper()
	s, err := branches.Open(w.opts, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !s.Writable() {
		t.Fatal("stack is not writable")
	}
	w.s = s
}

// reopen closes the stack and opens it again over the same branches.
func (w *wstack) reopen(t testing.TB) {
	t.Helper()
	if err := w.s.Close(); err != nil {
		t.Fatal(err)
	}
	w.s = nil
	w.open(t)
}

// strataDir is the directory copies and new objects are built in.
func (w *wstack) strataDir() string {
	if w.work != "" {
		return filepath.Join(w.work, "strata")
	}
	return filepath.Join(w.upper, whiteout.AufsMetaPrefix+"strata", "strata")
}

// check runs the checks every operation must pass: the lower branches are
// unchanged and the workdir holds nothing.
func (w *wstack) check(t testing.TB) {
	t.Helper()
	for i, l := range w.lowers {
		if got := snapshot(t, l); got != w.lowerSnaps[i] {
			t.Errorf("lower branch %d was modified:\nbefore:\n%s\nafter:\n%s", i, w.lowerSnaps[i], got)
		}
	}
	entries, err := os.ReadDir(w.strataDir())
	if err != nil {
		t.Errorf("workdir: %v", err)
	}
	for _, e := range entries {
		t.Errorf("workdir %s holds a leftover %q", w.strataDir(), e.Name())
	}
	if w.work == "" {
		// aufs: the scratch parent in the upper holds only strata's dir.
		entries, err := os.ReadDir(filepath.Dir(w.strataDir()))
		if err != nil {
			t.Errorf("aufs scratch dir: %v", err)
		}
		for _, e := range entries {
			if e.Name() != "strata" {
				t.Errorf("aufs scratch dir holds %q", e.Name())
			}
		}
	}
}

func (w *wstack) resolve(t testing.TB, p string) *branches.Entry {
	t.Helper()
	e, err := w.s.Resolve(p)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", p, err)
	}
	return e
}

// gone fails unless the union does not show p.
func (w *wstack) gone(t testing.TB, p string) {
	t.Helper()
	if e, err := w.s.Resolve(p); !errors.Is(err, branches.ErrNotExist) {
		t.Errorf("Resolve(%q) = %v, %v; want ErrNotExist", p, e != nil, err)
	}
}

// inUpper fails unless p is served by the upper branch.
func (w *wstack) inUpper(t testing.TB, p string) *branches.Entry {
	t.Helper()
	e := w.resolve(t, p)
	if e.Top().Branch != w.s.Upper() {
		t.Errorf("%s is served by %s, want the upper branch", p, e.Top().Branch.Name())
	}
	return e
}

// upperSnap describes the raw upper branch, to prove a refused operation
// wrote nothing.
func (w *wstack) upperSnap(t testing.TB) string {
	t.Helper()
	return snapshot(t, w.upper)
}

// union describes every object the union shows: path -> "type perm uid:gid
// content" (a file's data read through FS(), a symlink's target).
func (w *wstack) union(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := w.resolve(t, ".")
	var walk func(dir *branches.Entry)
	walk = func(dir *branches.Entry) {
		kids, err := w.s.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir.Path, err)
		}
		names, err := w.s.Names(dir)
		if err != nil {
			t.Fatalf("Names(%s): %v", dir.Path, err)
		}
		if len(names) != len(kids) {
			t.Errorf("%s: Names has %d names, ReadDir %d entries", dir.Path, len(names), len(kids))
		}
		for _, k := range kids {
			if whiteout.IsReserved(k.Name()) {
				t.Errorf("the union shows the marker name %s", k.Path)
			}
			out[k.Path] = w.describeEntry(t, k)
			if k.IsDir() {
				walk(k)
			}
		}
	}
	walk(root)
	return out
}

func (w *wstack) describeEntry(t testing.TB, e *branches.Entry) string {
	t.Helper()
	typ := e.St.Mode & unix.S_IFMT
	d := fmt.Sprintf("%s %04o %d:%d", branches.TypeName(typ), e.St.Mode&0o7777, e.St.Uid, e.St.Gid)
	switch typ {
	case unix.S_IFREG:
		b, err := fs.ReadFile(w.s.FS(), e.Path)
		if err != nil {
			t.Fatalf("ReadFile(%s): %v", e.Path, err)
		}
		d += fmt.Sprintf(" %q", b)
	case unix.S_IFLNK:
		target, err := w.s.Readlink(e)
		if err != nil {
			t.Fatalf("Readlink(%s): %v", e.Path, err)
		}
		d += " -> " + target
	}
	return d
}

// markers lists the markers of the upper branch (see upperMarkers).
func (w *wstack) markers(t testing.TB) map[string]string {
	t.Helper()
	return upperMarkers(t, w.upper)
}

// upperMarkers lists the whiteouts and opaque markers in an upper branch
// in dialect-neutral terms, with their on-disk form:
//
//	"WH:a/b"  -> "char" (0/0), "aufs" (a/.wh.b), "xattr" (overlay.whiteout)
//	"OPQ:a"   -> "trusted"/"user" (overlay.opaque=y), "aufs" (.wh..wh..opq)
//	"X:a:attr" -> any other overlay.* xattr (redirect, origin, ...)
//	"META:p"  -> an aufs bookkeeping name other than strata's scratch dir
//
// Two forms of one marker read "aufs+char". The aufs scratch directory at
// the root is skipped.
func upperMarkers(t testing.TB, upper string) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(k, form string) {
		if prev, ok := out[k]; ok {
			form = prev + "+" + form
		}
		out[k] = form
	}
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == whiteout.AufsMetaPrefix+"strata" {
			return filepath.SkipDir
		}
		dir, name := path.Split(rel)
		dir = strings.TrimSuffix(dir, "/")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch {
		case name == whiteout.AufsOpaque:
			if dir == "" {
				dir = "."
			}
			add("OPQ:"+dir, "aufs")
			return nil
		case strings.HasPrefix(name, whiteout.AufsMetaPrefix):
			add("META:"+rel, "?")
			return nil
		}
		if target, ok := whiteout.AufsTarget(name); ok {
			add("WH:"+path.Join(dir, target), "aufs")
			return nil
		}
		if whiteout.IsCharWhiteout(&st) {
			add("WH:"+rel, "char")
			return nil
		}
		for _, ns := range whiteout.OverlayNamespaces {
			nsName := strings.TrimSuffix(ns, ".")
			for _, attr := range testutil.XattrNames(t, p) {
				if !strings.HasPrefix(attr, ns+"overlay.") {
					continue
				}
				v, _ := testutil.Getxattr(p, attr)
				switch attr[len(ns):] {
				case "overlay.whiteout":
					if st.Mode&unix.S_IFMT == unix.S_IFREG {
						add("WH:"+rel, "xattr")
					} else {
						add("X:"+rel+":"+attr, string(v))
					}
				case "overlay.opaque":
					switch string(v) {
					case "y":
						add("OPQ:"+rel, nsName)
					case "x": // enables xattr whiteouts inside; not a marker
					default:
						add("X:"+rel+":"+attr, string(v))
					}
				default:
					add("X:"+rel+":"+attr, string(v))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("markers of %s: %v", upper, err)
	}
	return out
}

// diffMaps fails with a readable diff when got differs from want.
func diffMaps(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	if d := testutil.DiffMaps(want, got); len(d) > 0 {
		t.Errorf("%s differs:\n  %s", what, strings.Join(d, "\n  "))
	}
}

// withoutPrefix drops the keys of m at or below the union path p.
func withoutPrefix(m map[string]string, p string) {
	for k := range m {
		for _, pre := range []string{"", "WH:", "OPQ:", "X:"} {
			if strings.HasPrefix(k, pre+p+"/") || k == pre+p || strings.HasPrefix(k, "X:"+p+":") {
				delete(m, k)
			}
		}
	}
}

// objKind is the object a state puts at the target name.
type objKind int

const (
	fileObj     objKind = iota // a regular file whose content names its layer
	emptyDirObj                // an empty directory
	fullDirObj                 // a directory with one entry named after its layer
)

func objLines(k objKind, p, layer string) []string {
	switch k {
	case fileObj:
		return []string{p + "=" + layer}
	case emptyDirObj:
		return []string{p + "/"}
	}
	return []string{p + "/", p + "/inner-" + layer + "=" + layer}
}

// tstate is one state of a target name p in the union (see targetStates).
type tstate struct {
	name string
	// visible: the union shows p. lowerShows: a lower copy of p would show
	// if the upper had nothing at p (so removing p needs a whiteout, and a
	// directory made at p must be opaque).
	visible, lowerShows bool
	upper, lower        []string
	copyUp              bool // copy p up after opening
	rd                  *dialect
}

// targetStates lists the states of dir/name: absent, lower-only,
// upper-only, in both, whited out in the upper, hidden by an opaque upper
// parent, in the upper under an opaque parent (both for every read dialect
// in rds), and copied up. The parent dir exists in the lower branch in
// every state.
func targetStates(dir, name string, k objKind, rds []dialect) []tstate {
	p := dir + "/" + name
	obj := func(layer string) []string { return objLines(k, p, layer) }
	states := []tstate{
		{name: "absent", lower: []string{dir + "/"}},
		{name: "lower", visible: true, lowerShows: true, lower: obj("lower")},
		{name: "upper", visible: true, upper: obj("upper"), lower: []string{dir + "/"}},
		{name: "both", visible: true, lowerShows: true, upper: obj("upper"), lower: obj("lower")},
	}
	for _, rd := range rds {
		states = append(states,
			tstate{name: "whiteout-" + rd.name, lowerShows: true, rd: &rd,
				upper: rd.expand([]string{dir + "/", "WH:" + p}), lower: obj("lower")},
			tstate{name: "opaque-hidden-" + rd.name, rd: &rd,
				upper: rd.expand([]string{"OPQ:" + dir}), lower: obj("lower")},
			tstate{name: "opaque-visible-" + rd.name, visible: true, rd: &rd,
				upper: rd.expand(append([]string{"OPQ:" + dir}, obj("upper")...)), lower: obj("lower")},
		)
	}
	return append(states, tstate{name: "copied-up", visible: true, lowerShows: true, lower: obj("lower"), copyUp: true})
}

// openStates opens one state of the name p[0] (or states of several names,
// for two-name operations) as a stack in one written dialect, copying each
// name up whose state asks for it.
func openStates(t *testing.T, wd writeDialect, p []string, sts ...tstate) *wstack {
	t.Helper()
	return openStatesPrep(t, wd, nil, p, sts...)
}

// openStatesPrep is openStates with a prep function (see newWStackPrep).
func openStatesPrep(t *testing.T, wd writeDialect, prep func(w *wstack), p []string, sts ...tstate) *wstack {
	t.Helper()
	var upper, lower []string
	for _, st := range sts {
		if st.rd != nil {
			st.rd.skipUnlessAble(t)
		}
		upper = append(upper, st.upper...)
		lower = append(lower, st.lower...)
	}
	w := newWStackPrep(t, wd, prep, upper, lower)
	for i, st := range sts {
		if st.copyUp {
			if _, err := w.s.CopyUp(w.resolve(t, p[i])); err != nil {
				t.Fatalf("CopyUp(%s): %v", p[i], err)
			}
		}
	}
	return w
}

// readDialects are the dialects of markers found in an upper branch: all
// of them are read whatever the written dialect.
var readDialects = dialects

// fewReadDialects are the two main ones, for the larger matrices.
var fewReadDialects = []dialect{dialects[0], dialects[3]}
