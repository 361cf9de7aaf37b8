package branches_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-fs/strata/branches"
)

// Short constructors for expected branch specs.
func lo(p string) branches.BranchSpec {
	return branches.BranchSpec{Path: p, Perm: branches.RO, Role: branches.RoleLower}
}

func up(p string) branches.BranchSpec {
	return branches.BranchSpec{Path: p, Perm: branches.RW, Role: branches.RoleUpper}
}

func br(p string, perm branches.Perm, attrs ...string) branches.BranchSpec {
	return branches.BranchSpec{Path: p, Perm: perm, Role: branches.RoleBranch, Attrs: attrs}
}

// normOptions makes empty slices nil so that expectations can leave them out.
func normOptions(o *branches.Options) *branches.Options {
	c := *o
	c.Branches = nil
	for _, b := range o.Branches {
		if len(b.Attrs) == 0 {
			b.Attrs = nil
		}
		c.Branches = append(c.Branches, b)
	}
	if len(c.Mount) == 0 {
		c.Mount = nil
	}
	return &c
}

func TestParseOptionsOverlay(t *testing.T) {
	ov := branches.SyntaxOverlay
	tests := []struct {
		name  string
		items []string
		want  branches.Options
	}{
		{
			name:  "one lower: read-only union",
			items: []string{"lowerdir=/l"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo("/l")}, ReadOnly: true},
		},
		{
			name:  "lowerdir list, top first",
			items: []string{"lowerdir=/l1:/l2:/l3"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo("/l1"), lo("/l2"), lo("/l3")}, ReadOnly: true},
		},
		{
			name:  "upperdir becomes branch 0, rw",
			items: []string{"lowerdir=/l1:/l2,upperdir=/u,workdir=/w"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l1"), lo("/l2")}, Workdir: "/w"},
		},
		{
			name:  "key order does not matter",
			items: []string{"workdir=/w,upperdir=/u,lowerdir=/l"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l")}, Workdir: "/w"},
		},
		{
			name:  "multiple -o items",
			items: []string{"lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l1"), lo("/l2")}, Workdir: "/w"},
		},
		{
			name:  "empty items are skipped",
			items: []string{",,lowerdir=/l,,", "", ",", "upperdir=/u,,workdir=/w,"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l")}, Workdir: "/w"},
		},
		{
			name:  `\: escapes a colon in lowerdir`,
			items: []string{`lowerdir=/a\:b:/c`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo("/a:b"), lo("/c")}, ReadOnly: true},
		},
		{
			name:  `\: in upperdir and workdir`,
			items: []string{`lowerdir=/l,upperdir=/u\:1,workdir=/w\:1`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u:1"), lo("/l")}, Workdir: "/w:1"},
		},
		{
			name:  `\, escapes a comma`,
			items: []string{`lowerdir=/a\,b:/c,upperdir=/u\,v,workdir=/w`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u,v"), lo("/a,b"), lo("/c")}, Workdir: "/w"},
		},
		{
			name:  `\\ is a backslash`,
			items: []string{`lowerdir=/a\\:/b`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo(`/a\`), lo("/b")}, ReadOnly: true},
		},
		{
			name:  "quoted values group commas",
			items: []string{`lowerdir="/a,b:/c",upperdir="/u,1",workdir="/w x"`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u,1"), lo("/a,b"), lo("/c")}, Workdir: "/w x"},
		},
		{
			name:  "quoted value with spaces",
			items: []string{`lowerdir="/my layers/one"`},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo("/my layers/one")}, ReadOnly: true},
		},
		{
			name:  "ro makes a writable stack read-only",
			items: []string{"lowerdir=/l,upperdir=/u,workdir=/w,ro"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l")}, Workdir: "/w", ReadOnly: true},
		},
		{
			name:  "rw after ro",
			items: []string{"ro,lowerdir=/l,upperdir=/u,workdir=/w,rw"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l")}, Workdir: "/w"},
		},
		{
			name:  "rw cannot make a stack without upper writable",
			items: []string{"lowerdir=/l,rw"},
			want:  branches.Options{Syntax: ov, Branches: []branches.BranchSpec{lo("/l")}, ReadOnly: true},
		},
		{
			name:  "volatile, mount options kept in order, ignored ones dropped",
			items: []string{"lowerdir=/l,upperdir=/u,workdir=/w,volatile,nodev,noatime,allow_other", "relatime,nosuid,fsname=x"},
			want: branches.Options{Syntax: ov, Branches: []branches.BranchSpec{up("/u"), lo("/l")}, Workdir: "/w",
				Volatile: true, Mount: []string{"nodev", "allow_other", "nosuid"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := branches.ParseOptions(tc.items)
			if err != nil {
				t.Fatalf("ParseOptions(%q): %v", tc.items, err)
			}
			if g, w := normOptions(got), normOptions(&tc.want); !reflect.DeepEqual(g, w) {
				t.Errorf("ParseOptions(%q)\n got  %+v\n want %+v", tc.items, *g, *w)
			}
			if _, ok := got.Upper(); !ok && !got.ReadOnly {
				t.Errorf("no upper, yet not read-only")
			}
		})
	}
}

func TestParseOptionsAufs(t *testing.T) {
	au := branches.SyntaxAufs
	rw, ro, rr := branches.RW, branches.RO, branches.RR
	tests := []struct {
		name  string
		items []string
		want  branches.Options
	}{
		{
			name:  "explicit permissions",
			items: []string{"br=/u=rw:/l1=ro:/l2=rr"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u", rw), br("/l1", ro), br("/l2", rr)}},
		},
		{
			name:  "br: spelling",
			items: []string{"br:/u=rw:/l1=ro"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u", rw), br("/l1", ro)}},
		},
		{
			name:  "dirs= is br=",
			items: []string{"dirs=/u:/l1"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u", rw), br("/l1", ro)}},
		},
		{
			name:  "first branch defaults to rw, the others to ro",
			items: []string{"br=/u:/l1:/l2"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u", rw), br("/l1", ro), br("/l2", ro)}},
		},
		{
			name:  "a single branch is rw",
			items: []string{"br:/only"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/only", rw)}},
		},
		{
			name:  "first branch ro: read-only union",
			items: []string{"br=/a=ro:/b"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/a", ro), br("/b", ro)}, ReadOnly: true},
		},
		{
			name:  "a lower rw branch is allowed",
			items: []string{"br=/a=ro:/b=rw"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/a", ro), br("/b", rw)}},
		},
		{
			name:  "attributes after +",
			items: []string{"br=/u=rw+nolwh:/l1=ro+wh:/l2=rr+wh+foo"},
			want: branches.Options{Syntax: au, Branches: []branches.BranchSpec{
				br("/u", rw, "nolwh"), br("/l1", ro, "wh"), br("/l2", rr, "wh", "foo")}},
		},
		{
			name:  `\: and \= in a branch path`,
			items: []string{`br=/a\:b=rw:/c\=d:/e\=f=rr`},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/a:b", rw), br("/c=d", ro), br("/e=f", rr)}},
		},
		{
			name:  `\, in a branch path, mount options after`,
			items: []string{`br=/a\,b:/c,allow_other`},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/a,b", rw), br("/c", ro)}, Mount: []string{"allow_other"}},
		},
		{
			name:  "quoted br value",
			items: []string{`br="/u x=rw:/l,1"`},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u x", rw), br("/l,1", ro)}},
		},
		{
			name:  "ro option",
			items: []string{"br=/u:/l", "ro"},
			want:  branches.Options{Syntax: au, Branches: []branches.BranchSpec{br("/u", rw), br("/l", ro)}, ReadOnly: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := branches.ParseOptions(tc.items)
			if err != nil {
				t.Fatalf("ParseOptions(%q): %v", tc.items, err)
			}
			if g, w := normOptions(got), normOptions(&tc.want); !reflect.DeepEqual(g, w) {
				t.Errorf("ParseOptions(%q)\n got  %+v\n want %+v", tc.items, *g, *w)
			}
		})
	}
}

func TestParseOptionsRefusals(t *testing.T) {
	tests := []struct {
		name   string
		items  []string
		option string   // OptionError.Option must contain it
		words  []string // the message must contain each
	}{
		{"unknown option", []string{"lowerdir=/l,frobnicate=1"}, "frobnicate=1", []string{"frobnicate", "unknown option"}},
		{"unknown bare option", []string{"lowerdir=/l", "index=on"}, "index=on", []string{"index=on", "unknown option"}},
		{"unknown key case-sensitive", []string{"LowerDir=/l"}, "LowerDir", []string{"unknown option"}},
		{"br mixed with lowerdir", []string{"lowerdir=/l,br=/u:/l2"}, "br", []string{"br", "lowerdir"}},
		{"br mixed with upperdir", []string{"br=/a", "upperdir=/u,workdir=/w"}, "br", []string{"br", "upperdir"}},
		{"upperdir without workdir", []string{"lowerdir=/l,upperdir=/u"}, "upperdir", []string{"upperdir", "workdir"}},
		{"workdir without upperdir", []string{"lowerdir=/l,workdir=/w"}, "workdir", []string{"workdir", "without upperdir"}},
		{"upperdir without lowerdir", []string{"upperdir=/u,workdir=/w"}, "upperdir", []string{"upperdir", "lowerdir"}},
		{"no branches: nothing", nil, "", []string{"no branches"}},
		{"no branches: only flags", []string{"ro,allow_other"}, "", []string{"no branches", "lowerdir=", "br="}},
		{"no branches: empty items", []string{",,", ""}, "", []string{"no branches"}},
		{"bad permission", []string{"br=/u=rw:/l=xx"}, "br=/u=rw:/l=xx", []string{`"/l"`, `"xx"`, "rw, ro or rr"}},
		{"bad permission with attrs", []string{"br:/u=wr+wh"}, "br:/u=wr+wh", []string{`"wr"`}},
		{"permission upper case", []string{"br=/u=RW"}, "br=/u=RW", []string{`"RW"`}},
		{"empty path in lowerdir list", []string{"lowerdir=/a::/b"}, "lowerdir=/a::/b", []string{"empty path"}},
		{"leading empty lowerdir path", []string{"lowerdir=:/a"}, "lowerdir=:/a", []string{"empty path"}},
		{"trailing empty lowerdir path", []string{"lowerdir=/a:"}, "lowerdir=/a:", []string{"empty path"}},
		{"empty lowerdir", []string{"lowerdir="}, "lowerdir", []string{"needs a value"}},
		{"bare lowerdir", []string{"lowerdir"}, "lowerdir", []string{"needs a value"}},
		{"quoted empty lowerdir", []string{`lowerdir=""`}, "lowerdir", nil},
		{"empty upperdir", []string{"lowerdir=/l,upperdir=,workdir=/w"}, "upperdir", []string{"needs a value"}},
		{"quoted empty upperdir", []string{`lowerdir=/l,upperdir="",workdir=/w`}, "upperdir", nil},
		{"empty workdir", []string{"lowerdir=/l,upperdir=/u,workdir="}, "workdir", []string{"needs a value"}},
		{"quoted empty workdir", []string{`lowerdir=/l,upperdir=/u,workdir=""`}, "workdir", nil},
		{"empty br", []string{"br="}, "br", []string{"needs a value"}},
		{"empty br:", []string{"br:"}, "br", []string{"needs a value"}},
		{"empty branch in br list", []string{"br=/u::/l"}, "br=/u::/l", []string{"empty branch"}},
		{"empty branch path before =", []string{"br=/u:=ro"}, "br=/u:=ro", []string{"empty branch path"}},
		{"lowerdir given twice", []string{"lowerdir=/a", "lowerdir=/b"}, "lowerdir=/b", []string{"given twice", "lowerdir=/a"}},
		{"upperdir given twice", []string{"lowerdir=/l,upperdir=/u1,upperdir=/u2,workdir=/w"}, "upperdir=/u2", []string{"given twice", "upperdir=/u1"}},
		{"workdir given twice", []string{"lowerdir=/l,upperdir=/u,workdir=/w1,workdir=/w2"}, "workdir=/w2", []string{"given twice", "workdir=/w1"}},
		{"br given twice", []string{"br=/a", "br=/b"}, "br=/b", []string{"given twice", "br=/a"}},
		{"br= then br:", []string{"br=/a,br:/b"}, "br:/b", []string{"given twice", "br=/a"}},
		{"br= then dirs=", []string{"br=/a,dirs=/b"}, "dirs=/b", []string{"given twice", "br=/a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := branches.ParseOptions(tc.items)
			if err == nil {
				t.Fatalf("ParseOptions(%q) = %+v, want an error", tc.items, *o)
			}
			if o != nil {
				t.Errorf("options returned with the error: %+v", *o)
			}
			if !errors.Is(err, branches.ErrOption) {
				t.Errorf("error %v does not wrap ErrOption", err)
			}
			// Errors about one option are *OptionError naming it; "no
			// branches" is about no option in particular.
			msg := err.Error()
			if tc.option != "" {
				var oe *branches.OptionError
				if !errors.As(err, &oe) {
					t.Fatalf("error %v is not an *OptionError", err)
				}
				if !strings.Contains(oe.Option, tc.option) {
					t.Errorf("OptionError.Option = %q, want it to contain %q", oe.Option, tc.option)
				}
				if !strings.Contains(msg, tc.option) {
					t.Errorf("message %q does not name the option %q", msg, tc.option)
				}
			}
			for _, w := range tc.words {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestPermString(t *testing.T) {
	for p, want := range map[branches.Perm]string{branches.RW: "rw", branches.RO: "ro", branches.RR: "rr", branches.Perm(5): "Perm(5)"} {
		if got := p.String(); got != want {
			t.Errorf("Perm(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}
