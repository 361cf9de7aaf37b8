package branches

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenFlags(t *testing.T) {
	for _, c := range []struct {
		in, kept, reopen int
	}{
		{unix.O_RDONLY, unix.O_RDONLY, unix.O_RDONLY},
		{unix.O_RDWR | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC, unix.O_RDWR, unix.O_RDWR},
		{unix.O_WRONLY | unix.O_TRUNC | unix.O_APPEND, unix.O_WRONLY | unix.O_TRUNC | unix.O_APPEND, unix.O_WRONLY | unix.O_APPEND},
		{unix.O_RDONLY | unix.O_NOATIME | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_LARGEFILE, unix.O_NOATIME | unix.O_NONBLOCK, unix.O_NOATIME | unix.O_NONBLOCK},
		{unix.O_WRONLY | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC | unix.O_NOCTTY, unix.O_WRONLY | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC, unix.O_WRONLY | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC},
		{unix.O_PATH | unix.O_DIRECTORY | unix.O_TMPFILE, 0, 0},
	} {
		if got := KeptOpenFlags(c.in); got != c.kept {
			t.Errorf("KeptOpenFlags(%#o) = %#o, want %#o", c.in, got, c.kept)
		}
		if got := ReopenFlags(c.in); got != c.reopen {
			t.Errorf("ReopenFlags(%#o) = %#o, want %#o", c.in, got, c.reopen)
		}
	}
}
