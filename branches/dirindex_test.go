package branches

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The index cache's budget bounds the listings held, however many entries
// (FUSE nodes) still point at dropped indexes; a dropped index is read
// again on its next use and answers as before.
func TestDirIndexBudgetBoundsListings(t *testing.T) {
	const dirs, files, budget = 40, 25, 100
	lowers := []string{t.TempDir(), t.TempDir()}
	for d := 0; d < dirs; d++ {
		for f := 0; f < files; f++ {
			p := filepath.Join(lowers[f%2], fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	o, err := ParseOptions([]string{"lowerdir=" + lowers[0] + ":" + lowers[1]})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(o, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.dirs = newDirIndexCache(budget)

	root, err := s.Root()
	if err != nil {
		t.Fatal(err)
	}
	kept := []*Entry{root} // what the kernel's nodes would hold
	held := func() (names int) {
		seen := map[*dirIndex]bool{}
		for _, e := range kept {
			if d := e.index.data.Load(); d != nil && !seen[e.index] {
				seen[e.index] = true
				names += len(d.where)
			}
		}
		return names
	}
	for round := 0; round < 2; round++ {
		for d := 0; d < dirs; d++ {
			dir, err := s.Resolve(fmt.Sprintf("d%d", d))
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, dir)
			for f := 0; f < files; f++ {
				if _, err := s.Lookup(dir, fmt.Sprintf("f%d", f)); err != nil {
					t.Fatalf("round %d: d%d/f%d: %v", round, d, f, err)
				}
			}
			if _, err := s.Lookup(dir, "absent"); err == nil {
				t.Fatalf("round %d: d%d/absent found", round, d)
			}
			if h := held(); h > budget+files {
				t.Fatalf("round %d, after d%d: %d names held, budget %d", round, d, h, budget)
			}
		}
	}
	s.dirs.mu.Lock()
	defer s.dirs.mu.Unlock()
	if s.dirs.size > budget+files || s.dirs.size != held() {
		t.Errorf("cache counts %d names, %d held, budget %d", s.dirs.size, held(), budget)
	}
}
