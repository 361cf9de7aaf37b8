package branches

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// BranchInventory is the inspection of one branch of a stack.
type BranchInventory struct {
	Branch BranchRef `json:"branch"`
	*whiteout.Inventory
}

// Inspect inspects every branch of the stack (whiteout.Inspect), and
// checks what one branch cannot check alone: that each redirect leads to a
// directory in some branch below its own.
func (s *Stack) Inspect() ([]BranchInventory, error) {
	var out []BranchInventory
	for _, b := range s.branches {
		inv, err := whiteout.Inspect(b.fd)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", b.Role, b.Given, err)
		}
		for _, r := range inv.Redirects {
			target := strings.TrimPrefix(r.Value, "/")
			if !s.dirBelow(b, target) {
				inv.Problems = append(inv.Problems, whiteout.Problem{Path: r.Path, Code: whiteout.ProblemDanglingRedirect,
					Detail: fmt.Sprintf("redirects to %s, which no branch below %s has as a directory: the renamed directory's lower content is lost", r.Value, b.Name())})
			}
		}
		out = append(out, BranchInventory{Branch: refOf(b), Inventory: inv})
	}
	return out, nil
}

// dirBelow reports whether a branch below b holds a directory at rel.
func (s *Stack) dirBelow(b *Branch, rel string) bool {
	for _, lower := range s.branches[b.Index+1:] {
		fd, err := sys.OpenDirBeneath(lower.fd, rel)
		if err == nil {
			unix.Close(fd)
			return true
		}
	}
	return false
}

// InUse says which mount uses dir as a branch or workdir (or uses a
// directory inside dir, or one dir is inside), in one line, or "" when
// none does: kernel overlay mounts (their options in mountinfo) and union
// daemons (strata, fuse-overlayfs, unionfs-fuse: their -o options, as far
// as /proc shows other processes). A branch must not be rewritten under a
// mount.
func InUse(dir string) (string, error) {
	canon, err := canonicalDir("dir", dir)
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
// line (lowerdir, upperdir, workdir, br), in the escaping ParseOptions
// reads. Other options, whatever the program, are skipped.
func optionPaths(argv []string) []string {
	var values []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case (a == "-o" || a == "--options") && i+1 < len(argv):
			values = append(values, argv[i+1])
			i++
		case strings.HasPrefix(a, "--options="):
			values = append(values, strings.TrimPrefix(a, "--options="))
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			values = append(values, strings.TrimPrefix(a[2:], "="))
		}
	}
	var out []string
	for _, v := range values {
		for _, kv := range splitUnescaped(v, ',') {
			key, val, _ := strings.Cut(kv, "=")
			switch {
			case key == "lowerdir":
				for _, p := range splitUnescaped(unquote(val), ':') {
					out = append(out, unescape(p))
				}
			case key == "upperdir" || key == "workdir":
				out = append(out, unescape(unquote(val)))
			case key == "br" || key == "dirs" || strings.HasPrefix(kv, "br:"):
				specs, err := parseAufsBranches(kv, unquote(strings.TrimPrefix(strings.TrimPrefix(kv, key+"="), "br:")))
				if err != nil {
					continue
				}
				for _, s := range specs {
					out = append(out, s.Path)
				}
			}
		}
	}
	return out
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
