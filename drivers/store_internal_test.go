package drivers

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "abc-init", "0123456789abcdef", "x.y_z-1", "A"} {
		require.NoError(t, ValidateID(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "...", ".x", "a/b", "/a", "a\x00b", "a b", "a:b", "a,b", "é", string(make([]byte, 129))} {
		err := ValidateID(bad)
		require.ErrorIs(t, err, ErrInvalidID, "%q", bad)
	}
}

// TestLockExcludes: goroutines taking one lock through separate lock
// tables (as separate processes would, each with its own flock) never
// overlap.
func TestLockExcludes(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	require.NoError(t, err)
	defer root.Close()
	var inside, max int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			table := newLockTable() // a table per "process"
			for j := 0; j < 20; j++ {
				h, err := table.lock(root, "l")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside > max {
					max = inside
				}
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				h.unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, max, "two holders of one lock at once")
}

// TestLockFileReplaced: a lock file deleted and recreated by its holder
// is not locked twice (the waiter starts over on the new file).
func TestLockFileReplaced(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	require.NoError(t, err)
	defer root.Close()
	a, b := newLockTable(), newLockTable()
	h, err := a.lock(root, "l")
	require.NoError(t, err)
	got := make(chan *heldLock)
	go func() {
		h2, err := b.lock(root, "l")
		if err != nil {
			t.Error(err)
		}
		got <- h2
	}()
	require.NoError(t, root.Remove("l"))
	h.unlock()
	h2 := <-got
	defer h2.unlock()
	fi, err := root.Lstat("l")
	require.NoError(t, err, "the waiter must hold a lock file that exists")
	held, err := h2.f.Stat()
	require.NoError(t, err)
	require.True(t, os.SameFile(fi, held))
}

func TestParseAncestors(t *testing.T) {
	require.Equal(t, []string{"p", "g"}, parseAncestors([]byte("p\ng\n")))
	require.Equal(t, []string{"p", "g"}, parseAncestors([]byte("p\r\n\ng")))
	require.Empty(t, parseAncestors(nil))
	require.Equal(t, "p\ng\n", string(formatAncestors([]string{"p", "g"})))
}

func TestNotSupportedMessage(t *testing.T) {
	err := notSupported("device-mapper not available: %s", "x")
	require.Equal(t, "device-mapper not available: x", err.Error())
	require.True(t, errors.Is(err, ErrNotSupported))
}

// TestOverlayPlan: which way the overlay backend passes a chain of n
// layers to the kernel (TestOverlayDepth mounts each for real).
func TestOverlayPlan(t *testing.T) {
	chainOf := func(n int) (*layer, []*layer) {
		var chain []*layer
		for i := 0; i < n; i++ {
			chain = append(chain, &layer{ID: fmt.Sprintf("p%d", i), Link: newLink()})
		}
		return &layer{ID: "top", ReadWrite: true, Link: newLink()}, chain
	}
	for _, c := range []struct {
		path   string
		n      int
		plus   bool
		want   overlayHow
		refuse string
	}{
		{"/var/lib/strata/overlay", 10, true, absolutePaths, ""},
		{"/var/lib/strata/overlay", 100, true, fromStore, ""},
		{"/var/lib/strata/overlay", 300, true, lowerdirPlus, ""},
		{"/var/lib/strata/overlay", 500, true, lowerdirPlus, ""},
		{"/var/lib/strata/overlay", 300, false, 0, "more than a page, and this kernel has no fsconfig lowerdir+"},
		{"/var/lib/strata/overlay", 501, true, 0, "501 lower layers; kernel overlay stacks at most 500"},
		{"/srv/a,b/overlay", 2, true, fromStore, ""}, // a comma cannot be escaped in mount(2) data
	} {
		o := &overlayBackend{s: &Store{path: c.path}, lowerdirPlus: c.plus}
		l, chain := chainOf(c.n)
		p, err := o.plan(l, chain)
		if c.refuse != "" {
			require.ErrorIs(t, err, ErrNotSupported)
			require.ErrorContains(t, err, c.refuse)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.want, p.how, "%d layers under %s", c.n, c.path)
		if p.how != lowerdirPlus {
			require.Less(t, len(p.data), os.Getpagesize())
		}
	}
}
