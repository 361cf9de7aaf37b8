package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestBadInput checks that every refused mount fails cleanly: non-zero exit,
// one line on stderr naming the offending path or option, nothing mounted,
// no daemon left, and not one byte (nor mtime) changed in any branch.
func TestBadInput(t *testing.T) {
	testutil.NeedFUSE(t)

	// Each case gets a fresh directory d holding:
	//	l1/ (f1, sub/s), l2/ (f2), up/, wk/, mnt/ (sub/), file.txt
	type setup struct {
		opts  []string // -o values
		mnt   string
		wants []string // substrings the error line must contain
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, d string) setup
	}{
		{"missing lower branch", func(t *testing.T, d string) setup {
			missing := filepath.Join(d, "nope")
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + missing}, j(d, "mnt"), []string{missing}}
		}},
		{"file as a branch", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "file.txt")}, j(d, "mnt"), []string{j(d, "file.txt")}}
		}},
		{"same dir twice", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "l2") + ":" + j(d, "l1")}, j(d, "mnt"), []string{j(d, "l1")}}
		}},
		{"same dir twice through a symlink", func(t *testing.T, d string) setup {
			link := j(d, "l1-link")
			require.NoError(t, os.Symlink("l1", link))
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + link}, j(d, "mnt"), []string{link}}
		}},
		{"branch nested inside another", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "l1/sub")}, j(d, "mnt"), []string{j(d, "l1/sub")}}
		}},
		{"branch inside the mountpoint", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "mnt/sub") + ":" + j(d, "l2")}, j(d, "mnt"), []string{j(d, "mnt/sub")}}
		}},
		{"mountpoint inside a branch", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "l2")}, j(d, "l1/sub"), []string{j(d, "l1/sub")}}
		}},
		{"missing mountpoint", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "l2")}, j(d, "no-mnt"), []string{j(d, "no-mnt")}}
		}},
		{"upperdir with a missing workdir", func(t *testing.T, d string) setup {
			wk := j(d, "no-wk")
			return setup{[]string{"lowerdir=" + j(d, "l1") + ",upperdir=" + j(d, "up") + ",workdir=" + wk}, j(d, "mnt"), []string{wk}}
		}},
		{"workdir on another filesystem than upperdir", func(t *testing.T, d string) setup {
			fs := testutil.Mkdirs(t, j(d, "tmpfs"))[0]
			require.NoError(t, unix.Mount("tmpfs", fs, "tmpfs", 0, "size=1m,mode=0755"), "mount tmpfs at %s", fs)
			t.Cleanup(func() { unmountAndWait(t, fs, false) })
			wk := testutil.Mkdirs(t, j(fs, "wk"))[0]
			return setup{[]string{"lowerdir=" + j(d, "l1") + ",upperdir=" + j(d, "up") + ",workdir=" + wk}, j(d, "mnt"), []string{wk, j(d, "up")}}
		}},
		{"unknown option", func(t *testing.T, d string) setup {
			return setup{[]string{"lowerdir=" + j(d, "l1") + ":" + j(d, "l2") + ",frobnicate=1"}, j(d, "mnt"), []string{"frobnicate"}}
		}},
		{"aufs br with a bad permission", func(t *testing.T, d string) setup {
			return setup{[]string{"br=" + j(d, "l1") + "=ro:" + j(d, "l2") + "=rx"}, j(d, "mnt"), []string{j(d, "l2"), "rx"}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			buildLayer(t, j(d, "l1"), Layer{File("f1", "one\n"), File("sub/s", "s\n")})
			buildLayer(t, j(d, "l2"), Layer{File("f2", "two\n")})
			testutil.Mkdirs(t, j(d, "up"), j(d, "wk"), j(d, "mnt/sub"))
			testutil.WriteFile(t, j(d, "file.txt"), "not a directory\n")
			s := tc.setup(t, d)
			// Safety net: should strata mount anyway, do not leave it.
			t.Cleanup(func() { unmountAndWait(t, s.mnt, true) })
			before := walkTree(t, d, walkOptions{times: true})

			assertRefused(t, runStrata(t, mountArgs(s.mnt, s.opts...)...), s.mnt, s.wants...)
			after := walkTree(t, d, walkOptions{times: true})
			after.Root = before.Root
			assertSameTree(t, before, after, "branches before and after the refused mount")
		})
	}
}

// assertRefused checks a refused mount: non-zero exit, one line on
// stderr naming each of wants, nothing mounted at mnt, no daemon left.
func assertRefused(t *testing.T, res strataResult, mnt string, wants ...string) {
	t.Helper()
	t.Logf("exit %d, stderr: %s", res.ExitCode, res.Stderr)
	assert.NotEqual(t, 0, res.ExitCode, "strata %q must refuse", res.Args)
	assert.Empty(t, res.Stdout, "stdout")
	lines := strings.Split(strings.TrimSuffix(res.Stderr, "\n"), "\n")
	assert.True(t, len(lines) == 1 && strings.HasSuffix(res.Stderr, "\n") && lines[0] != "",
		"stderr must be exactly one line, got %q", res.Stderr)
	assert.True(t, strings.HasPrefix(res.Stderr, "strata: "), "stderr must start with \"strata: \", got %q", res.Stderr)
	for _, w := range wants {
		assert.Contains(t, res.Stderr, w, "the error must name the offending path or option")
	}
	assert.Empty(t, mountsAt(t, mnt), "nothing may be mounted at %s", mnt)
	assert.Empty(t, processesFor(t, mnt), "no strata process may be left for %s", mnt)
}

// j joins path elements.
func j(elem ...string) string { return filepath.Join(elem...) }
