package branches

import (
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/strata-fs/strata/whiteout"
)

// Perm is a branch permission.
type Perm int

const (
	// RW branches take writes; the topmost one is the upper.
	RW Perm = iota
	// RO branches are never written; their whiteouts are honoured.
	RO
	// RR ("real read-only") branches are never written nor checked for
	// writability. strata honours their whiteouts too (aufs does not).
	RR
)

func (p Perm) String() string {
	switch p {
	case RW:
		return "rw"
	case RO:
		return "ro"
	case RR:
		return "rr"
	}
	return fmt.Sprintf("Perm(%d)", int(p))
}

// Role names where a branch came from, for error messages.
type Role string

const (
	RoleLower  Role = "lowerdir"
	RoleUpper  Role = "upperdir"
	RoleBranch Role = "br"
)

// BranchSpec is one branch as the user gave it.
type BranchSpec struct {
	Path string
	Perm Perm
	Role Role
	// Attrs are aufs branch attributes after "+" (wh, nolwh, ...); kept for
	// the record, they do not change strata's behaviour.
	Attrs []string
}

// Syntax says which option dialect built the stack.
type Syntax string

const (
	SyntaxOverlay Syntax = "overlay"
	SyntaxAufs    Syntax = "aufs"
)

// Options is a parsed -o list.
type Options struct {
	Syntax   Syntax
	Branches []BranchSpec // top first
	Workdir  string
	// ReadOnly is set by the "ro" option (or by an overlay stack without
	// upperdir).
	ReadOnly bool
	// Volatile skips fsync on copy-up (kernel overlay's "volatile").
	Volatile bool
	// Whiteout is the dialect the write path writes (--whiteout); the
	// zero value is overlay.
	Whiteout whiteout.Format
	// Mount holds generic mount options handed on to the kernel
	// (allow_other, default_permissions, ...), in order.
	Mount []string
	// Compat is what fuse-overlayfs's options asked for (options_compat.go).
	Compat Compat
	// Logger receives what the stack has to say while it serves (such as
	// falling back to aufs whiteouts); nil means the standard logger
	// (log.Default()), where these messages went before it existed. The
	// messages carry no program name: the logger's prefix gives it.
	Logger *log.Logger
}

// logger is o.Logger, or the standard logger.
func (o *Options) logger() *log.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return log.Default()
}

// Upper returns the top rw branch, if any.
func (o *Options) Upper() (BranchSpec, bool) {
	for _, b := range o.Branches {
		if b.Perm == RW {
			return b, true
		}
	}
	return BranchSpec{}, false
}

// ErrOption is wrapped by every option error.
var ErrOption = errors.New("bad mount option")

// OptionError names the option that could not be used.
type OptionError struct {
	Option string
	Reason string
}

func (e *OptionError) Error() string { return fmt.Sprintf("option %q: %s", e.Option, e.Reason) }
func (e *OptionError) Unwrap() error { return ErrOption }

// optionKind says what the parser does with a key.
type optionKind int

const (
	optLowerdir optionKind = iota
	optUpperdir
	optWorkdir
	optBranches
	optRO
	optRW
	optVolatile
	optMount   // handed to the kernel mount
	optIgnored // accepted, no effect (documented in docs/OPTIONS.md)
)

// optionTable is every key strata accepts. Options are data, as in the
// kernel's overlayfs params.c.
var optionTable = map[string]optionKind{
	"lowerdir":            optLowerdir,
	"upperdir":            optUpperdir,
	"workdir":             optWorkdir,
	"br":                  optBranches,
	"dirs":                optBranches, // aufs accepts dirs= as br=
	"ro":                  optRO,
	"rw":                  optRW,
	"volatile":            optVolatile,
	"allow_other":         optMount,
	"allow_root":          optMount,
	"default_permissions": optMount,
	"suid":                optMount,
	"nosuid":              optMount,
	"dev":                 optMount,
	"nodev":               optMount,
	"exec":                optMount,
	"noexec":              optMount,
	"atime":               optIgnored,
	"noatime":             optIgnored,
	"diratime":            optIgnored,
	"nodiratime":          optIgnored,
	"relatime":            optIgnored,
	"strictatime":         optIgnored,
	"fsname":              optIgnored,
	"subtype":             optIgnored,
}

// ParseOptions parses -o values. Each item is a comma-separated list; a
// backslash escapes the next character (so "\," is a comma in a path and
// "\:" a colon inside lowerdir/br), and double quotes group a value.
// Empty items are skipped. Overlay keys and br= may not be mixed.
func ParseOptions(items []string) (*Options, error) {
	o := &Options{}
	var lowers, upper []BranchSpec
	var aufs []BranchSpec
	seen := map[string]string{}
	for _, item := range items {
		for _, kv := range splitUnescaped(item, ',') {
			if kv == "" {
				continue
			}
			key, val, hasVal := strings.Cut(kv, "=")
			if key == "br" || strings.HasPrefix(kv, "br:") {
				// aufs spells it both br= and br:
				key, val, hasVal = "br", strings.TrimPrefix(strings.TrimPrefix(kv, "br="), "br:"), true
			}
			if handle, ok := compatOption(key); ok {
				if err := handle(&o.Compat, o, kv, unquote(val), hasVal); err != nil {
					return nil, err
				}
				continue
			}
			kind, ok := optionTable[key]
			if !ok {
				return nil, &OptionError{Option: kv, Reason: "unknown option"}
			}
			if kind == optBranches {
				key = "br" // dirs= is br=: giving both is giving br twice
			}
			if prev, dup := seen[key]; dup && kind <= optBranches {
				return nil, &OptionError{Option: kv, Reason: fmt.Sprintf("given twice (first as %q)", prev)}
			}
			seen[key] = kv
			// Unquote first: a quoted empty value ("") is no value either,
			// and an empty upperdir/workdir would mean the current directory.
			val = unquote(val)
			needsValue := kind <= optBranches
			if needsValue && (!hasVal || val == "") {
				return nil, &OptionError{Option: kv, Reason: "needs a value"}
			}
			switch kind {
			case optLowerdir:
				for _, p := range splitUnescaped(val, ':') {
					if p == "" {
						return nil, &OptionError{Option: kv, Reason: "empty path in lowerdir list (data-only layers \"::\" are not supported)"}
					}
					lowers = append(lowers, BranchSpec{Path: unescape(p), Perm: RO, Role: RoleLower})
				}
			case optUpperdir:
				upper = []BranchSpec{{Path: unescape(val), Perm: RW, Role: RoleUpper}}
			case optWorkdir:
				o.Workdir = unescape(val)
			case optBranches:
				specs, err := parseAufsBranches(kv, val)
				if err != nil {
					return nil, err
				}
				aufs = specs
			case optRO:
				o.ReadOnly = true
			case optRW:
				o.ReadOnly = false
			case optVolatile:
				o.Volatile = true
			case optMount:
				o.Mount = append(o.Mount, kv)
			}
		}
	}
	switch {
	case len(aufs) > 0 && (len(lowers) > 0 || len(upper) > 0):
		return nil, &OptionError{Option: "br", Reason: "cannot be mixed with lowerdir/upperdir"}
	case len(aufs) > 0:
		o.Syntax = SyntaxAufs
		o.Branches = aufs
	case len(lowers) > 0:
		o.Syntax = SyntaxOverlay
		o.Branches = append(upper, lowers...)
		if len(upper) == 0 {
			o.ReadOnly = true
			if o.Workdir != "" {
				return nil, &OptionError{Option: "workdir", Reason: "given without upperdir"}
			}
		} else if o.Workdir == "" {
			return nil, &OptionError{Option: "upperdir", Reason: "needs workdir= too (on the same filesystem)"}
		}
	case len(upper) > 0:
		return nil, &OptionError{Option: "upperdir", Reason: "needs lowerdir= too"}
	default:
		return nil, fmt.Errorf("%w: no branches: give -o lowerdir=DIR[:DIR...] or -o br=DIR[=PERM][:DIR...]", ErrOption)
	}
	if _, ok := o.Upper(); !ok {
		o.ReadOnly = true
	}
	return o, nil
}

// OptionDirs lists the directories one -o option string names (lowerdir,
// upperdir, workdir, br or dirs), read with the escaping ParseOptions uses.
// Other options are skipped, and so is a branch list that does not parse:
// it reads another union daemon's command line (fuse-overlayfs,
// unionfs-fuse, strata) to see which directories it uses.
func OptionDirs(options string) []string {
	var out []string
	for _, kv := range splitUnescaped(options, ',') {
		key, val, _ := strings.Cut(kv, "=")
		switch {
		case key == "lowerdir":
			for _, p := range splitUnescaped(unquote(val), ':') {
				out = append(out, unescape(p))
			}
		case key == "upperdir" || key == "workdir":
			out = append(out, unescape(unquote(val)))
		case key == "br" || key == "dirs" || strings.HasPrefix(kv, "br:"):
			specs, err := parseAufsBranches(kv, unquote(strings.TrimPrefix(strings.TrimPrefix(kv, key+"="), "br:")))
			if err != nil {
				continue
			}
			for _, s := range specs {
				out = append(out, s.Path)
			}
		}
	}
	return out
}

// parseAufsBranches reads "DIR[=PERM[+ATTR...]]:..."; the first branch
// defaults to rw, the others to ro.
func parseAufsBranches(kv, val string) ([]BranchSpec, error) {
	var out []BranchSpec
	for i, item := range splitUnescaped(val, ':') {
		if item == "" {
			return nil, &OptionError{Option: kv, Reason: "empty branch in br list"}
		}
		spec := BranchSpec{Perm: RO, Role: RoleBranch}
		if i == 0 {
			spec.Perm = RW
		}
		path := item
		if j := lastUnescaped(item, '='); j >= 0 {
			path = item[:j]
			permAttrs := strings.Split(item[j+1:], "+")
			switch permAttrs[0] {
			case "rw":
				spec.Perm = RW
			case "ro":
				spec.Perm = RO
			case "rr":
				spec.Perm = RR
			default:
				return nil, &OptionError{Option: kv, Reason: fmt.Sprintf("branch %q: permission %q is not rw, ro or rr", unescape(path), permAttrs[0])}
			}
			spec.Attrs = permAttrs[1:]
		}
		spec.Path = unescape(path)
		if spec.Path == "" {
			return nil, &OptionError{Option: kv, Reason: "empty branch path"}
		}
		out = append(out, spec)
	}
	return out, nil
}

// splitUnescaped splits s at sep, skipping separators escaped with a
// backslash or inside double quotes. Escapes are kept for unescape.
func splitUnescaped(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// lastUnescaped is the index of the last unescaped c in s, or -1.
func lastUnescaped(s string, c byte) int {
	last := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case c:
			last = i
		}
	}
	return last
}

// unescape drops the backslash in front of any character.
func unescape(s string) string {
	if !strings.ContainsRune(s, '\\') {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
