package testutil

import (
	"slices"
	"testing"
)

func TestDiffMaps(t *testing.T) {
	want := map[string]int{"a": 1, "b": 2, "c": 3}
	got := map[string]int{"b": 2, "c": 4, "d": 5}
	if d, w := DiffMaps(want, got), []string{"a: missing (want 1)", "c: want 3, got 4", "d: unexpected (got 5)"}; !slices.Equal(d, w) {
		t.Errorf("DiffMaps = %q, want %q", d, w)
	}
	if d := DiffMaps(want, want); d != nil {
		t.Errorf("DiffMaps of equal maps = %q", d)
	}
}
