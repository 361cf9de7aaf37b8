package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestManyBranches mounts 1000 lower branches, twice kernel overlay's limit
// of 500 and far beyond aufs's 127 (docs/UNION-SEMANTICS.md, "Branches":
// no fixed branch limit).
func TestManyBranches(t *testing.T) {
	testutil.NeedFUSE(t)
	const n = 1000
	tmp := t.TempDir()
	// Short paths (tmp/b/0 .. tmp/b/999) keep the option well under the
	// kernel's 128 KiB limit for one argument.
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(tmp, "b", strconv.Itoa(i))
		require.NoError(t, os.MkdirAll(dirs[i], 0o755))
	}
	testutil.WriteFile(t, filepath.Join(dirs[0], "dup.txt"), "from branch 0\n")
	testutil.WriteFile(t, filepath.Join(dirs[1], "one.txt"), "from branch 1\n")
	testutil.WriteFile(t, filepath.Join(dirs[500], "mid.txt"), "from branch 500\n")
	testutil.WriteFile(t, filepath.Join(dirs[998], "deep", "near.txt"), "from branch 998\n")
	testutil.WriteFile(t, filepath.Join(dirs[999], "dup.txt"), "from branch 999\n")
	testutil.WriteFile(t, filepath.Join(dirs[999], "deep", "bottom.txt"), "from the bottom branch\n")

	opt := "lowerdir=" + strings.Join(dirs, ":")
	require.Less(t, len(opt), 128<<10, "the lowerdir option must fit in one argument")
	mnt := testutil.Mkdirs(t, filepath.Join(tmp, "mnt"))[0]
	mountStrata(t, mnt, opt)

	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mnt, rel))
		require.NoError(t, err, "read %s through the union", rel)
		return string(b)
	}
	assert.Equal(t, "from the bottom branch\n", read("deep/bottom.txt"))
	assert.Equal(t, "from branch 998\n", read("deep/near.txt"))
	assert.Equal(t, "from branch 0\n", read("dup.txt"), "a name in branches 0 and 999 is served by branch 0")
	assert.Equal(t, "from branch 500\n", read("mid.txt"))

	tree := walkTree(t, mnt)
	assert.Equal(t, []string{"deep", "dup.txt", "mid.txt", "one.txt"}, tree.children("."))
	assert.Equal(t, []string{"bottom.txt", "near.txt"}, tree.children("deep"))
	checkInodes(t, tree, nil)
}
