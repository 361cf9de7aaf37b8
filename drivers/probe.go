package drivers

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Filesystem magic numbers (statfs f_type) the probes name.
var fsNames = map[int64]string{
	unix.OVERLAYFS_SUPER_MAGIC: "overlay",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.CIFS_SUPER_MAGIC:      "cifs",
	0xfe534d42:                 "smb2",
	unix.ECRYPTFS_SUPER_MAGIC:  "ecryptfs",
	0x2fc12fc1:                 "zfs",
}

// fsType names the filesystem dir is on ("ext4", or the magic number in
// hex when it is not one the probes know).
func fsType(dir string) (name string, magic int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if n, ok := fsNames[st.Type]; ok {
		return n, st.Type, nil
	}
	return fmt.Sprintf("0x%x", st.Type), st.Type, nil
}

// probeDir makes a scratch directory on the store's filesystem for a
// backend's probe, with the given subdirectories, and returns it with a
// function that removes it.
func (s *Store) probeDir(backend string, subdirs ...string) (string, func(), error) {
	dir, err := os.MkdirTemp(s.top, ".probe-"+backend+"-")
	if err != nil {
		return "", nil, err
	}
	for _, d := range subdirs {
		if err := os.Mkdir(dir+"/"+d, 0o755); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// unsupportedError says why a backend cannot run on this host. Its message
// is only the reason; errors.Is(err, ErrNotSupported) holds.
type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string { return e.reason }
func (e *unsupportedError) Unwrap() error { return ErrNotSupported }

func notSupported(format string, a ...any) error {
	return &unsupportedError{reason: fmt.Sprintf(format, a...)}
}
