package unionfs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/stretchr/testify/assert"

	"github.com/strata-fs/strata/branches"
)

// go-fuse passes a handle through whenever it offers PassthroughFd and
// the node already has a registered backing file, without asking the
// handle: only passthroughFile may offer it.
func TestOnlyPassthroughFilesOfferABackingFile(t *testing.T) {
	_, plain := any(&file{}).(fs.FilePassthroughFder)
	assert.False(t, plain, "*file must not implement FilePassthroughFder")
	_, pt := any(passthroughFile{&file{}}).(fs.FilePassthroughFder)
	assert.True(t, pt, "passthroughFile must implement FilePassthroughFder")
	_, statx := any(&file{}).(fs.FileStatxer)
	assert.False(t, statx, "*file must not answer statx from the backing inode")
}

func TestChooseIOMode(t *testing.T) {
	upper := &branches.Branch{Perm: branches.RW}
	other := &branches.Branch{Perm: branches.RW}
	lower := &branches.Branch{Perm: branches.RO}
	open := func(mode ioMode, b *branches.Branch) *file { return &file{mode: mode, branch: b} }
	cases := []struct {
		name        string
		allow, rw   bool
		b           *branches.Branch
		open        []*file
		want        ioMode
		whyExpected string
	}{
		{"lower copy, writable mount", true, true, lower, nil, viaDaemon, "a later write open would reach the lower file"},
		{"lower copy, read-only mount", true, false, lower, nil, passthrough, "nothing can copy it up"},
		{"upper copy, nothing open", true, true, upper, nil, passthrough, ""},
		{"upper copy, passthrough off", false, true, upper, nil, viaDaemon, ""},
		{"upper copy beside passthrough opens of it", true, true, upper, []*file{open(passthrough, upper)}, passthrough, ""},
		{"upper copy beside a reader through the daemon", true, true, upper, []*file{open(viaDaemon, lower)}, viaDaemon, "one io mode per inode"},
		{"lower copy beside passthrough opens of an upper copy", true, true, lower, []*file{open(passthrough, upper)}, registered, "a stale entry: the object is the upper copy"},
		{"copy beside passthrough opens of another copy", true, true, upper, []*file{open(passthrough, other)}, refused, "the kernel would open the registered copy"},
		{"lower copy beside a reader through the daemon", true, true, lower, []*file{open(viaDaemon, lower)}, viaDaemon, ""},
		{"passthrough off beside anything", false, true, upper, []*file{open(viaDaemon, lower)}, viaDaemon, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, chooseIOMode(c.allow, c.rw, c.b, c.open), c.whyExpected)
		})
	}
}
