package archive

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/strata-fs/strata/whiteout"
)

// ErrRefused marks a tar entry Apply will not write because it is unsafe
// or not a valid OCI layer entry (errors.Is(err, ErrRefused)). The error
// itself says which entry and why.
var ErrRefused = errors.New("refused")

// EntryError is a failure to apply one tar entry.
type EntryError struct {
	// Entry is the entry's name as the tar spells it.
	Entry string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer tar entry %s: %v", quoteName(e.Entry), e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// refusal is the reason an entry is refused; it matches ErrRefused.
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// quoteName quotes a name for an error message, shortening absurd ones so
// the message stays one readable line.
func quoteName(name string) string {
	const keep = 96
	if len(name) <= 2*keep {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q...(%d bytes)", name[:keep], len(name))
}

// Limits of a Linux path: a name may be 255 bytes, a path 4095.
const (
	maxNameLen = 255
	maxPathLen = 4095
)

// entryPath is a tar entry name made safe: its components below the layer
// root, none of them "", "." or "..". The root is the empty path.
type entryPath []string

// parseEntryName checks a name from a tar (an entry's name or a hard
// link's target). "./" prefixes, repeated and trailing slashes and "."
// components are accepted, as tar writers produce them; an absolute path,
// a ".." component, a NUL byte or an over-long name is refused.
func parseEntryName(name string) (entryPath, error) {
	switch {
	case name == "":
		return nil, refuse("empty name")
	case strings.IndexByte(name, 0) >= 0:
		return nil, refuse("name contains a NUL byte")
	case len(name) > maxPathLen:
		return nil, refuse("name is %d bytes, longer than a Linux path may be (%d)", len(name), maxPathLen)
	case strings.HasPrefix(name, "/"):
		return nil, refuse("absolute path: layer entries are relative to the layer root")
	}
	var p entryPath
	for _, c := range strings.Split(name, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return nil, refuse("path has a \"..\" component: layer entries may not climb out of the layer")
		case len(c) > maxNameLen:
			return nil, refuse("component is %d bytes, longer than a Linux name may be (%d)", len(c), maxNameLen)
		}
		p = append(p, c)
	}
	return p, nil
}

// String is the path relative to the layer root, "." for the root.
func (p entryPath) String() string {
	if len(p) == 0 {
		return "."
	}
	return strings.Join(p, "/")
}

func (p entryPath) isRoot() bool { return len(p) == 0 }

// parent is the path of the directory holding p (the root for a top-level
// name).
func (p entryPath) parent() entryPath { return p[:len(p)-1] }

func (p entryPath) base() string { return p[len(p)-1] }

// child is p/name.
func (p entryPath) child(name string) entryPath {
	return append(append(entryPath{}, p...), name)
}

// checkDirs refuses a path that goes through a directory with a reserved
// (".wh.") name: such a directory would read as a whiteout.
func (p entryPath) checkDirs() error {
	for _, c := range p[:max(len(p)-1, 0)] {
		if whiteout.IsReserved(c) {
			return refuse("directory %q has a name reserved for whiteouts (%s*)", c, whiteout.AufsPrefix)
		}
	}
	return nil
}

// joinRel joins a layer path ("." for the root) and a name.
func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// parentRel is the directory of a layer path, "." for top-level names.
func parentRel(rel string) string { return path.Dir(rel) }
