// Package procscan looks at the rest of the host, not at a union: which
// kernel overlay mounts (in /proc/self/mountinfo) and which union daemons
// (in /proc/PID/cmdline) use a directory, so that a command that rewrites
// a branch (strata convert) can refuse one in use.
package procscan

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/sys"
)

// InUse says which mount uses dir as a branch or workdir (or uses a
// directory inside dir, or one dir is inside), in one line, or "" when
// none does: kernel overlay mounts (their options in mountinfo) and union
// daemons (strata, fuse-overlayfs, unionfs-fuse: their -o options, as far
// as /proc shows other processes). A branch must not be rewritten under a
// mount.
func InUse(dir string) (string, error) {
	canon, err := canonicalDir(dir)
	if err != nil {
		return "", err
	}
	mounts, err := sys.Mounts()
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if m.FSType != "overlay" {
			continue
		}
		for _, p := range overlayMountPaths(m.SuperOptions) {
			if overlaps(canon, canonicalOrSelf(p)) {
				return fmt.Sprintf("kernel overlay mounted at %s uses %s", m.MountPoint, p), nil
			}
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", err
	}
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue // gone, or not ours to read
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !isUnionDaemon(argv) {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", d.Name(), "cwd"))
		for _, p := range optionPaths(argv) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(cwd, p)
			}
			if overlaps(canon, canonicalOrSelf(p)) {
				return fmt.Sprintf("process %d (%s) serves a union over %s", pid, filepath.Base(argv[0]), p), nil
			}
		}
	}
	return "", nil
}

// overlayMountPaths lists the directories in kernel overlay's mount
// options as mountinfo shows them (paths octal-escaped, so a comma or a
// colon in one is not a separator).
func overlayMountPaths(superOptions string) []string {
	var out []string
	for _, kv := range strings.Split(superOptions, ",") {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch key {
		case "lowerdir", "lowerdir+", "datadir+", "upperdir", "workdir":
			for _, p := range strings.Split(val, ":") {
				if p != "" {
					out = append(out, sys.UnescapeMountinfo(p))
				}
			}
		}
	}
	return out
}

// isUnionDaemon: strata (any "X mount ..."), fuse-overlayfs, unionfs-fuse.
func isUnionDaemon(argv []string) bool {
	switch filepath.Base(argv[0]) {
	case "fuse-overlayfs", "unionfs", "unionfs-fuse":
		return true
	}
	return len(argv) > 1 && argv[1] == "mount"
}

// optionPaths lists the directories named by the -o options of a command
// line (branches.OptionDirs of each).
func optionPaths(argv []string) []string {
	var out []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case (a == "-o" || a == "--options") && i+1 < len(argv):
			out = append(out, branches.OptionDirs(argv[i+1])...)
			i++
		case strings.HasPrefix(a, "--options="):
			out = append(out, branches.OptionDirs(strings.TrimPrefix(a, "--options="))...)
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			out = append(out, branches.OptionDirs(strings.TrimPrefix(a[2:], "="))...)
		}
	}
	return out
}

// canonicalDir makes dir absolute with symlinks resolved, and checks it
// is a directory.
func canonicalDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: not a directory", dir)
	}
	return abs, nil
}

// canonicalOrSelf resolves p's symlinks where it can.
func canonicalOrSelf(p string) string {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return filepath.Clean(p)
}

// overlaps reports whether a and b are the same directory or one is inside
// the other.
func overlaps(a, b string) bool { return sys.PathWithin(a, b) || sys.PathWithin(b, a) }
