package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// Data safety with descriptors held open across a copy-up, with FUSE
// passthrough on (strata's default as root). Whatever is opened, written,
// truncated or mapped through the union, the read-only branch stays as it
// was; every open after the copy-up sees the upper copy, and a descriptor
// opened before it sees the new data too, as kernel overlay shows it
// (docs/CHOICES.md, "Open files across a copy-up").

// safetyStack is a one-lower union mounted with default options.
type safetyStack struct {
	lower, upper, mnt string
	before            []branchState
}

const safetyContent = "lowercontent\n"

func newSafetyStack(t *testing.T, files map[string]string, symlinks map[string]string) *safetyStack {
	t.Helper()
	testutil.NeedFUSE(t)
	root := t.TempDir()
	s := &safetyStack{lower: filepath.Join(root, "l"), upper: filepath.Join(root, "u"), mnt: filepath.Join(root, "m")}
	work := filepath.Join(root, "w")
	for _, d := range []string{s.lower, s.upper, work, s.mnt} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(s.lower, name), []byte(content), 0o644))
	}
	for name, target := range symlinks {
		require.NoError(t, os.Symlink(target, filepath.Join(s.lower, name)))
	}
	s.before = snapshotBranches(t, []string{s.lower})
	mountStrata(t, s.mnt, writableOpt([]string{s.lower}, s.upper, work))
	return s
}

func (s *safetyStack) path(name string) string { return filepath.Join(s.mnt, name) }

// check asserts the lower branch is untouched and name reads want through
// the union, from a fresh open and from the upper copy.
func (s *safetyStack) check(t *testing.T, name, want string) {
	t.Helper()
	assertBranchesUnchanged(t, s.before)
	got, err := os.ReadFile(s.path(name))
	require.NoError(t, err)
	assert.Equal(t, want, string(got), "%s through the union, fresh open", name)
	up, err := os.ReadFile(filepath.Join(s.upper, name))
	require.NoError(t, err, "the upper copy of %s", name)
	assert.Equal(t, want, string(up), "upper copy of %s", name)
}

// openReader opens name read-only and reads it once, as tail -f or a
// running binary holds a file, and closes it in cleanup.
func openReader(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	buf := make([]byte, 64)
	_, err = unix.Pread(fd, buf, 0)
	require.NoError(t, err)
	return fd
}

// readAllFD reads fd from offset 0 to its end.
func readAllFD(t *testing.T, fd int) string {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, 1<<16)
	for off := int64(0); ; {
		n, err := unix.Pread(fd, buf, off)
		require.NoError(t, err)
		if n == 0 {
			return out.String()
		}
		out.Write(buf[:n])
		off += int64(n)
	}
}

func writeFD(t *testing.T, p string, flags int, data string, off int64) {
	t.Helper()
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	if off < 0 {
		_, err = unix.Write(fd, []byte(data))
	} else {
		_, err = unix.Pwrite(fd, []byte(data), off)
	}
	require.NoError(t, err)
}

func TestOpenReaderThenAppend(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"f": safetyContent}, nil)
	r := openReader(t, s.path("f"))
	writeFD(t, s.path("f"), unix.O_WRONLY|unix.O_APPEND, "appended\n", -1)
	s.check(t, "f", safetyContent+"appended\n")
	assert.Equal(t, safetyContent+"appended\n", readAllFD(t, r), "the descriptor opened before the copy-up")
}

func TestOpenReaderThenPwrite(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"f": safetyContent}, nil)
	r := openReader(t, s.path("f"))
	writeFD(t, s.path("f"), unix.O_RDWR, "LOWER", 0)
	s.check(t, "f", "LOWERcontent\n")
	assert.Equal(t, "LOWERcontent\n", readAllFD(t, r), "the descriptor opened before the copy-up")
}

func TestOpenReaderThenSharedMmapWrite(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"f": safetyContent}, nil)
	r := openReader(t, s.path("f"))
	// A read-only shared mapping made before the copy-up, as a running
	// program maps its data.
	before, err := unix.Mmap(r, 0, len(safetyContent), unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	defer unix.Munmap(before)

	fd, err := unix.Open(s.path("f"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	m, err := unix.Mmap(fd, 0, len(safetyContent), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	copy(m, "MAPPED")
	require.NoError(t, unix.Msync(m, unix.MS_SYNC))
	require.NoError(t, unix.Munmap(m))
	require.NoError(t, unix.Close(fd))

	s.check(t, "f", "MAPPEDontent\n")
	assert.Equal(t, "MAPPEDontent\n", readAllFD(t, r), "the descriptor opened before the copy-up")
	assert.Equal(t, "MAPPEDontent\n", string(before), "the mapping made before the copy-up")
}

// TestFollowWhileAppending is tail -f on a lower file while another
// process appends line by line: the follower sees every line, and the
// lower file never changes.
func TestFollowWhileAppending(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"log": safetyContent}, nil)
	r := openReader(t, s.path("log"))
	want := safetyContent
	var seen strings.Builder
	off := int64(0)
	follow := func() {
		buf := make([]byte, 4096)
		for {
			n, err := unix.Pread(r, buf, off)
			require.NoError(t, err)
			if n == 0 {
				return
			}
			seen.Write(buf[:n])
			off += int64(n)
		}
	}
	follow()
	for i := range 50 {
		line := strings.Repeat("x", i) + "\n"
		writeFD(t, s.path("log"), unix.O_WRONLY|unix.O_APPEND, line, -1)
		want += line
		follow()
		var st unix.Stat_t
		require.NoError(t, unix.Fstat(r, &st))
		require.Equal(t, int64(len(want)), st.Size, "fstat of the follower after line %d", i)
	}
	assert.Equal(t, want, seen.String(), "what the follower read")
	s.check(t, "log", want)
}

func TestOpenTruncReadOnly(t *testing.T) {
	cases := []struct {
		name, open string
		flags      int
	}{
		{"direct", "f", unix.O_RDONLY | unix.O_TRUNC},
		{"through a symlink", "link", unix.O_RDONLY | unix.O_TRUNC},
		{"with O_CREAT on an existing lower file", "f", unix.O_RDONLY | unix.O_TRUNC | unix.O_CREAT},
		{"write-only", "f", unix.O_WRONLY | unix.O_TRUNC},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSafetyStack(t, map[string]string{"f": safetyContent}, map[string]string{"link": "f"})
			r := openReader(t, s.path("f"))
			fd, err := unix.Open(s.path(c.open), c.flags|unix.O_CLOEXEC, 0o644)
			require.NoError(t, err)
			defer unix.Close(fd)
			var st unix.Stat_t
			require.NoError(t, unix.Fstat(fd, &st))
			assert.Zero(t, st.Size, "fstat of the truncating descriptor")
			if c.flags&unix.O_ACCMODE == unix.O_RDONLY {
				assert.Equal(t, "", readAllFD(t, fd), "read of the truncating descriptor")
			}
			assert.Equal(t, "", readAllFD(t, r), "the descriptor opened before the truncation")
			s.check(t, "f", "")
		})
	}
}

func TestTruncateByPathWhileOpen(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"f": safetyContent}, nil)
	r := openReader(t, s.path("f"))
	require.NoError(t, unix.Truncate(s.path("f"), 5))
	s.check(t, "f", safetyContent[:5])
	assert.Equal(t, safetyContent[:5], readAllFD(t, r), "the descriptor opened before the truncation")
	// A writer after the truncation still reaches the upper copy only.
	writeFD(t, s.path("f"), unix.O_WRONLY|unix.O_APPEND, "+more\n", -1)
	s.check(t, "f", safetyContent[:5]+"+more\n")
	assert.Equal(t, safetyContent[:5]+"+more\n", readAllFD(t, r))
}

// TestWriterThenReaderThenWriter interleaves opens of both kinds on one
// file: each later open sees the upper copy, and no write goes below.
func TestWriterThenReaderThenWriter(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"f": safetyContent}, nil)
	w, err := unix.Open(s.path("f"), unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(w)
	_, err = unix.Write(w, []byte("one\n"))
	require.NoError(t, err)
	r := openReader(t, s.path("f"))
	_, err = unix.Write(w, []byte("two\n"))
	require.NoError(t, err)
	writeFD(t, s.path("f"), unix.O_RDWR, "L", 0)
	want := "l" + safetyContent[1:] + "one\ntwo\n"
	want = "L" + want[1:]
	assert.Equal(t, want, readAllFD(t, r))
	s.check(t, "f", want)
}

// TestHeldDescriptorFollowsItsObjectNotItsName: a reader from before the
// copy-up sees the copy-up's data even after another file is renamed over
// the name (kernel overlay prints "written"), never the other file's.
func TestHeldDescriptorFollowsItsObjectNotItsName(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"p": "lowerP\n", "x": "otherX\n"}, nil)
	// Opened and not read, as exec 3< p: nothing of p is in the page cache.
	r, err := unix.Open(s.path("p"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(r)
	writeFD(t, s.path("p"), unix.O_WRONLY|unix.O_TRUNC, "written\n", -1)
	require.NoError(t, os.Rename(s.path("x"), s.path("p")))
	// Drop the page cache, so the read reaches the copy behind r.
	require.NoError(t, unix.Fadvise(r, 0, 0, unix.FADV_DONTNEED))
	assert.Equal(t, "written\n", readAllFD(t, r), "the descriptor opened before the copy-up")
	s.check(t, "p", "otherX\n")
}

// TestHeldDescriptorFollowsRename: a lower file renamed (so copied up)
// while a reader holds it, then written under its new name.
func TestHeldDescriptorFollowsRename(t *testing.T) {
	s := newSafetyStack(t, map[string]string{"p": "lowerP\n"}, nil)
	r, err := unix.Open(s.path("p"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(r)
	require.NoError(t, os.Rename(s.path("p"), s.path("q")))
	writeFD(t, s.path("q"), unix.O_WRONLY|unix.O_APPEND, "more\n", -1)
	require.NoError(t, unix.Fadvise(r, 0, 0, unix.FADV_DONTNEED))
	assert.Equal(t, "lowerP\nmore\n", readAllFD(t, r), "the descriptor opened before the rename")
	s.check(t, "q", "lowerP\nmore\n")
}
