package archive

import (
	"slices"
	"strings"
)

// ChangeKind says how a path differs from the parent, as `docker diff`
// prints it.
type ChangeKind int

// The values are moby's archive.ChangeType, so callers can convert.
const (
	ChangeModify ChangeKind = iota
	ChangeAdd
	ChangeDelete
)

// String is the letter `docker diff` prints: C, A or D.
func (k ChangeKind) String() string {
	switch k {
	case ChangeModify:
		return "C"
	case ChangeAdd:
		return "A"
	case ChangeDelete:
		return "D"
	}
	return "?"
}

// Change is one entry of Changes, as docker diff prints it.
type Change struct {
	// Path is absolute in the layer: "/a/b".
	Path string
	Kind ChangeKind
}

// String is the line `docker diff` prints: "A /a/b", "C /a", "D /x".
func (c Change) String() string { return c.Kind.String() + " " + c.Path }

// changeSet collects changes by layer path ("a/b", no leading slash) and
// turns them into the sorted list Changes returns.
type changeSet map[string]ChangeKind

// add records a change; an Add or Delete already recorded stays (a Modify
// never downgrades them).
func (s changeSet) add(rel string, k ChangeKind) {
	if old, ok := s[rel]; ok && old != ChangeModify {
		return
	}
	s[rel] = k
}

// markParents makes every directory above a change a Modify, unless it is
// already recorded: a directory whose content changed is modified, as in
// docker diff. The layer root is never listed.
func (s changeSet) markParents() {
	rels := make([]string, 0, len(s))
	for rel := range s {
		rels = append(rels, rel)
	}
	for _, rel := range rels {
		for p := parentRel(rel); p != "."; p = parentRel(p) {
			if _, ok := s[p]; !ok {
				s[p] = ChangeModify
			}
		}
	}
}

// list returns the changes in tree order: a directory before its content,
// siblings by name.
func (s changeSet) list() []Change {
	rels := make([]string, 0, len(s))
	for rel := range s {
		rels = append(rels, rel)
	}
	sortTreeOrder(rels)
	out := make([]Change, len(rels))
	for i, rel := range rels {
		out[i] = Change{Path: "/" + rel, Kind: s[rel]}
	}
	return out
}

// sortTreeOrder sorts layer paths in tree order.
func sortTreeOrder(rels []string) {
	slices.SortFunc(rels, func(a, b string) int { return strings.Compare(treeKey(a), treeKey(b)) })
}

// treeKey orders paths as a depth-first walk with sorted siblings does:
// "/" sorts below every other byte, so "a/b" comes before "a-b".
func treeKey(rel string) string { return strings.ReplaceAll(rel, "/", "\x00") }
