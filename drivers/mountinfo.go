package drivers

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountPoints returns the set of mount points in /proc/self/mountinfo
// (unescaped), with the filesystem type of the newest mount at each.
func mountPoints() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // option strings of deep overlays are long
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		out[unescapeOctal(f[4])] = g[0]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("/proc/self/mountinfo: %w", err)
	}
	return out, nil
}

// isMountPoint reports whether dir (canonical, absolute) is a mount point.
func isMountPoint(dir string) (bool, error) {
	m, err := mountPoints()
	if err != nil {
		return false, err
	}
	_, ok := m[dir]
	return ok, nil
}

// unescapeOctal undoes the kernel's escapes in mountinfo: space, tab,
// newline and backslash are written \ooo, and every backslash starts such
// an escape, which is exactly what a Go string literal's octal escape
// reads.
func unescapeOctal(s string) string {
	if u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`); err == nil {
		return u
	}
	return s
}
