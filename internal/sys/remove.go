package sys

import (
	"errors"
	"io/fs"
	"path"

	"golang.org/x/sys/unix"
)

// RemoveAll removes name in the directory dirFD and, for a directory,
// everything in it. It never follows a symlink (a symlink is removed, not
// what it points to), and a name that is missing, or goes missing while it
// works, is not an error. An error is an *fs.PathError naming the entry,
// relative to dirFD, whose removal failed.
func RemoveAll(dirFD int, name string) error {
	return removeAll(dirFD, name, name)
}

func removeAll(dirFD int, name, rel string) error {
	fail := func(err error) error { return &fs.PathError{Op: "remove", Path: rel, Err: err} }
	err := unix.Unlinkat(dirFD, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	// A directory: EISDIR on Linux, EPERM as POSIX has it.
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fail(err)
	}
	fd, oerr := OpenBeneath(dirFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	switch {
	case errors.Is(oerr, unix.ENOENT):
		return nil
	case IsNotDir(oerr):
		return fail(err) // not a directory: the unlink's own refusal
	case oerr != nil:
		return fail(oerr)
	}
	entries, err := ReadDir(fd, ".")
	if err != nil {
		err = fail(err)
	}
	for _, e := range entries {
		if err == nil {
			err = removeAll(fd, e.Name, path.Join(rel, e.Name))
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fail(err)
	}
	return nil
}
