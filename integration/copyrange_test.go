package integration

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestCopyFileRange: copy_file_range through the mount, from a lower file
// into a new one, copies every byte and does not copy the source up.
func TestCopyFileRange(t *testing.T) {
	testutil.NeedFUSE(t)
	base := t.TempDir()
	lower, upper, work, mnt := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	testutil.Mkdirs(t, lower, upper, work, mnt)
	data := make([]byte, 3<<20+17)
	_, err := rand.Read(data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(lower, "src"), data, 0o644))
	mountStrata(t, mnt, "lowerdir="+lower+",upperdir="+upper+",workdir="+work)

	src, err := os.Open(filepath.Join(mnt, "src"))
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(filepath.Join(mnt, "dst"))
	require.NoError(t, err)
	defer dst.Close()
	total := 0
	for {
		n, err := unix.CopyFileRange(int(src.Fd()), nil, int(dst.Fd()), nil, 1<<20, 0)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		total += n
	}
	require.Equal(t, len(data), total)
	got, err := os.ReadFile(filepath.Join(mnt, "dst"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data), "dst differs from src")
	_, err = os.Lstat(filepath.Join(upper, "src"))
	require.True(t, os.IsNotExist(err), "reading src copied it up")
}
