package sys

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	// Major and Minor are the st_dev of the filesystem (for FUSE, the
	// connection's anonymous device).
	Major, Minor uint32
	// Root is the directory of the filesystem mounted here ("/" unless a
	// bind mount of a subdirectory).
	Root       string
	MountPoint string
	// Options are the per-mount options ("rw,nosuid,relatime").
	Options string
	FSType  string // "overlay", "fuse.strata", ...
	Source  string
	// SuperOptions are the filesystem's own options (overlay's
	// lowerdir=..., FUSE's user_id=...), still escaped as the kernel
	// shows them.
	SuperOptions string
}

// Mounts reads /proc/self/mountinfo, in mount order (a later mount on the
// same mount point covers an earlier one).
func Mounts() ([]Mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(data)), nil
}

// parseMountinfo parses the text of a mountinfo file; lines it cannot read
// are left out.
func parseMountinfo(data string) []Mount {
	var out []Mount
	for _, line := range strings.Split(data, "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			continue
		}
		var m Mount
		if _, err := fmt.Sscanf(f[2], "%d:%d", &m.Major, &m.Minor); err != nil {
			continue
		}
		m.Root, m.MountPoint, m.Options = UnescapeMountinfo(f[3]), UnescapeMountinfo(f[4]), f[5]
		m.FSType, m.Source = g[0], UnescapeMountinfo(g[1])
		if len(g) > 2 {
			m.SuperOptions = g[2]
		}
		out = append(out, m)
	}
	return out
}

// UnescapeMountinfo undoes the kernel's octal escapes in mountinfo and in
// mount options it shows (\040 for a space, \072 for a colon).
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOf returns the mount that holds the absolute, symlink-free path p:
// the one with the longest mount point that is p or a parent of it (the
// latest, when several are stacked there).
func MountOf(mounts []Mount, p string) (Mount, bool) {
	var best Mount
	found := false
	for _, m := range mounts {
		if !PathWithin(p, m.MountPoint) {
			continue
		}
		if !found || len(m.MountPoint) >= len(best.MountPoint) {
			best, found = m, true
		}
	}
	return best, found
}
