package unionfs

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"bare errno", unix.ENOTDIR, syscall.ENOTDIR},
		{"wrapped errno", fmt.Errorf("a/b in /branch: %w", unix.ELOOP), syscall.ELOOP},
		{"union not-exist", fmt.Errorf("d/x: %w", branches.ErrNotExist), syscall.ENOENT},
		{"path error", &fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist}, syscall.ENOENT},
		{"exist", fs.ErrExist, syscall.EEXIST},
		{"permission", fs.ErrPermission, syscall.EACCES},
		{"invalid", fs.ErrInvalid, syscall.EINVAL},
		{"anything else", errors.New("surprise"), syscall.EIO},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("%s: toErrno(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestPermitted(t *testing.T) {
	const owner, group, other = 1000, 100, 2000
	for _, tc := range []struct {
		name           string
		mode           uint32
		uid, gid, mask uint32
		want           bool
	}{
		{"owner reads 0600", unix.S_IFREG | 0o600, owner, group, unix.R_OK, true},
		{"group denied 0600", unix.S_IFREG | 0o600, other, group, unix.R_OK, false},
		{"other reads 0604", unix.S_IFREG | 0o604, other, other, unix.R_OK, true},
		{"owner bits win over group", unix.S_IFREG | 0o070, owner, group, unix.R_OK, false},
		{"root reads 0000", unix.S_IFREG, 0, 0, unix.R_OK | unix.W_OK, true},
		{"root cannot exec 0644", unix.S_IFREG | 0o644, 0, 0, unix.X_OK, false},
		{"root exec if anyone may", unix.S_IFREG | 0o001, 0, 0, unix.X_OK, true},
		{"root searches any dir", unix.S_IFDIR, 0, 0, unix.X_OK, true},
		{"existence check", unix.S_IFREG, other, other, unix.F_OK, true},
	} {
		if got := permitted(tc.mode, owner, group, tc.uid, tc.gid, tc.mask); got != tc.want {
			t.Errorf("%s: permitted = %v, want %v", tc.name, got, tc.want)
		}
	}
}
