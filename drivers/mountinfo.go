package drivers

import "github.com/strata-fs/strata/internal/sys"

// mountPoints returns the set of mount points in /proc/self/mountinfo
// (unescaped).
func mountPoints() (map[string]bool, error) {
	mounts, err := sys.Mounts()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(mounts))
	for _, m := range mounts {
		out[m.MountPoint] = true
	}
	return out, nil
}

// isMountPoint reports whether dir (canonical, absolute) is a mount point.
func isMountPoint(dir string) (bool, error) {
	m, err := mountPoints()
	return m[dir], err
}
