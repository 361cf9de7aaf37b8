package testutil

import (
	"fmt"
	"sort"
)

// DiffMaps lists the differences between two maps keyed by path (a
// walked tree, a model's files), one line each, sorted by key:
// "k: missing (want w)", "k: unexpected (got g)" or "k: want w, got g".
func DiffMaps[V comparable](want, got map[string]V) []string {
	return DiffMapsFunc(want, got, func(w, g V) []string {
		if w == g {
			return nil
		}
		return []string{fmt.Sprintf("want %v, got %v", w, g)}
	})
}

// DiffMapsFunc is DiffMaps with diff saying how the two values of one key
// differ, a line each ("k: " goes before each), nothing when they do not.
func DiffMapsFunc[V any](want, got map[string]V, diff func(w, g V) []string) []string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inGot:
			out = append(out, fmt.Sprintf("%s: missing (want %v)", k, w))
		case !inWant:
			out = append(out, fmt.Sprintf("%s: unexpected (got %v)", k, g))
		default:
			for _, d := range diff(w, g) {
				out = append(out, k+": "+d)
			}
		}
	}
	return out
}
