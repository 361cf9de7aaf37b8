package branches

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// Branch is one opened branch of a stack.
type Branch struct {
	// Path is the canonical absolute path (symlinks resolved).
	Path string
	// Given is the path as the user wrote it, for messages.
	Given string
	Perm  Perm
	Role  Role
	// Index is the position in the stack, 0 = top.
	Index int
	// fd is an O_PATH descriptor of the branch root, held for the life of
	// the stack: every access inside the branch is resolved beneath it, so
	// the branch stays reachable even when the mount covers its path.
	fd  int
	dev uint64
	// links maps the branch's multi-link inodes (read-only branches).
	links *linkMap
	// dirCache is the stack's cache of directory descriptors (openDir).
	dirCache *dirFDCache
}

// Name is a short label for the branch in tables and errors: its role and
// index ("upper", "lower 2", "br 0").
func (b *Branch) Name() string {
	switch b.Role {
	case RoleUpper:
		return "upper"
	case RoleLower:
		return fmt.Sprintf("lower%d", b.Index)
	}
	return fmt.Sprintf("br%d", b.Index)
}

// FD is the branch root's O_PATH descriptor, for packages that resolve
// beneath it (cow, whiteout writers).
func (b *Branch) FD() int { return b.fd }

// Stack is an opened, validated branch stack.
type Stack struct {
	opts     *Options
	branches []*Branch
	workdir  string
	inos     *inoTable
	dirs     *dirIndexCache
	dirCache *dirFDCache
	subdirs  subdirCounts
	root     *Entry
	// w is the write state; nil for a read-only stack.
	w      *writeState
	tracer traceSlot // holds nil while tracing is off (trace.go)
	// layout counts the changes that can make an Entry resolved earlier
	// stale (Generation).
	layout  atomic.Uint64
	closeMu sync.Mutex
	closed  bool
}

// Errors wrapped by BranchError, for errors.Is.
var (
	ErrMissing   = errors.New("does not exist")
	ErrNotDir    = errors.New("is not a directory")
	ErrDuplicate = errors.New("is given twice")
	ErrNested    = errors.New("is nested")
	ErrWorkdir   = errors.New("unusable workdir")
)

// BranchError names the path that cannot be used and why.
type BranchError struct {
	Role   string // "lowerdir", "upperdir", "br", "workdir", "mountpoint"
	Path   string
	Err    error  // one of the sentinels above
	Detail string // extra words for the message
}

func (e *BranchError) Error() string {
	msg := fmt.Sprintf("%s %s: %v", e.Role, e.Path, e.Err)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}
func (e *BranchError) Unwrap() error { return e.Err }

// Open validates the options against the filesystem and opens every branch.
// mountpoint may be empty for a library-only stack. Open writes nothing:
// a refused stack leaves every branch untouched.
func Open(o *Options, mountpoint string) (*Stack, error) {
	if len(o.Branches) == 0 {
		return nil, fmt.Errorf("%w: no branches", ErrOption)
	}
	s := &Stack{opts: o, inos: newInoTable(), dirs: newDirIndexCache(dirIndexBudget)}
	s.dirCache = newDirFDCache(s.Generation)
	ok := false
	var err error
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	type canon struct {
		path, given, role string
	}
	var all []canon
	for i, spec := range o.Branches {
		p, err := canonicalDir(string(spec.Role), spec.Path)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &BranchError{Role: string(spec.Role), Path: spec.Path, Err: ErrMissing, Detail: err.Error()}
		}
		var st unix.Stat_t
		if err := sys.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, &BranchError{Role: string(spec.Role), Path: spec.Path, Err: ErrMissing, Detail: err.Error()}
		}
		s.branches = append(s.branches, &Branch{Path: p, Given: spec.Path, Perm: spec.Perm, Role: spec.Role, Index: i, fd: fd, dev: uint64(st.Dev), links: &linkMap{}, dirCache: s.dirCache})
		s.inos.addDevice(uint64(st.Dev))
		all = append(all, canon{p, spec.Path, string(spec.Role)})
	}
	if o.Workdir != "" {
		w, err := canonicalDir("workdir", o.Workdir)
		if err != nil {
			return nil, err
		}
		s.workdir = w
		all = append(all, canon{w, o.Workdir, "workdir"})
	}
	for i, a := range all {
		for _, b := range all[:i] {
			switch {
			case a.path == b.path:
				return nil, &BranchError{Role: a.role, Path: a.given, Err: ErrDuplicate, Detail: fmt.Sprintf("same directory as %s %s", b.role, b.given)}
			case sys.PathWithin(a.path, b.path):
				return nil, &BranchError{Role: a.role, Path: a.given, Err: ErrNested, Detail: fmt.Sprintf("inside %s %s", b.role, b.given)}
			case sys.PathWithin(b.path, a.path):
				return nil, &BranchError{Role: b.role, Path: b.given, Err: ErrNested, Detail: fmt.Sprintf("inside %s %s", a.role, a.given)}
			}
		}
	}
	if mountpoint != "" {
		m, err := canonicalDir("mountpoint", mountpoint)
		if err != nil {
			return nil, err
		}
		// Mounting over a branch itself is allowed (the branch stays
		// reachable through its descriptor, as with kernel overlay); a
		// branch inside the mountpoint, or the mountpoint inside a branch,
		// would make the union contain itself.
		for _, a := range all {
			switch {
			case a.path == m: // over the branch itself: allowed
			case sys.PathWithin(a.path, m):
				return nil, &BranchError{Role: a.role, Path: a.given, Err: ErrNested, Detail: "inside the mountpoint " + mountpoint}
			case sys.PathWithin(m, a.path):
				return nil, &BranchError{Role: "mountpoint", Path: mountpoint, Err: ErrNested, Detail: fmt.Sprintf("inside %s %s", a.role, a.given)}
			}
		}
	}
	if err := s.checkWorkdir(); err != nil {
		return nil, err
	}
	if err := s.checkBranchesWritable(); err != nil {
		return nil, err
	}
	if s.root, err = s.resolveRoot(); err != nil {
		return nil, err
	}
	if !o.ReadOnly {
		if s.w, err = s.openWriteState(); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// workdirNames are the only entries a usable workdir may hold: strata's own
// and the kernel overlay's (the same upper/workdir pair may be mounted by
// either).
var workdirNames = map[string]bool{"strata": true, "work": true, "index": true, "incompat": true}

func (s *Stack) checkWorkdir() error {
	if s.workdir == "" {
		return nil
	}
	var upper *Branch
	for _, b := range s.branches {
		if b.Perm == RW {
			upper = b
			break
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(s.workdir, &st); err != nil {
		return &BranchError{Role: "workdir", Path: s.opts.Workdir, Err: ErrMissing, Detail: err.Error()}
	}
	if upper != nil && uint64(st.Dev) != upper.dev {
		return &BranchError{Role: "workdir", Path: s.opts.Workdir, Err: ErrWorkdir,
			Detail: fmt.Sprintf("on a different filesystem from upperdir %s (copy-up renames from one into the other)", upper.Given)}
	}
	entries, err := os.ReadDir(s.workdir)
	if err != nil {
		return &BranchError{Role: "workdir", Path: s.opts.Workdir, Err: ErrWorkdir, Detail: err.Error()}
	}
	for _, e := range entries {
		if !workdirNames[e.Name()] {
			return &BranchError{Role: "workdir", Path: s.opts.Workdir, Err: ErrWorkdir,
				Detail: fmt.Sprintf("holds %q, which is neither strata's nor kernel overlay's; give an empty directory", e.Name())}
		}
	}
	return nil
}

// canonicalDir makes p absolute with symlinks resolved (podman's lowers are
// symlinks), and checks it is a directory.
func canonicalDir(role, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", &BranchError{Role: role, Path: p, Err: ErrMissing, Detail: err.Error()}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", &BranchError{Role: role, Path: p, Err: ErrMissing}
		}
		return "", &BranchError{Role: role, Path: p, Err: ErrMissing, Detail: err.Error()}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", &BranchError{Role: role, Path: p, Err: ErrMissing, Detail: err.Error()}
	}
	if !fi.IsDir() {
		return "", &BranchError{Role: role, Path: p, Err: ErrNotDir}
	}
	return real, nil
}

// Close releases the branch descriptors. It is safe to call twice.
func (s *Stack) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.w != nil {
		s.w.close()
	}
	s.dirCache.closeAll()
	for _, b := range s.branches {
		unix.Close(b.fd)
	}
	return nil
}

// Branches returns the branches, top first.
func (s *Stack) Branches() []*Branch { return s.branches }

// Options returns the options the stack was opened with.
func (s *Stack) Options() *Options { return s.opts }

// Workdir is the canonical workdir path, empty when none was given.
func (s *Stack) Workdir() string { return s.workdir }

// Upper returns the top rw branch, or nil for a read-only stack.
func (s *Stack) Upper() *Branch {
	for _, b := range s.branches {
		if b.Perm == RW {
			return b
		}
	}
	return nil
}

// Generation changes whenever an operation may have changed how an
// existing name resolves: a copy-up (the object, its parents, the other
// names of its link set), a rename, a directory removal. An Entry resolved
// while Generation returned g is current for as long as it still returns
// g, unless its own name was removed; a caller that keeps entries (the
// FUSE nodes) resolves again when it differs. Creating, writing, changing
// attributes of an object already in the upper and removing a
// non-directory change no other entry, so they leave it alone: that is
// what lets a stream of creations in one directory skip re-resolving the
// directory each time. (A caller that shares one holder between names of
// one object, as FUSE shares a node between hard links, must itself
// resolve the holder again when the name its entry came from is removed:
// unionfs does.)
func (s *Stack) Generation() uint64 { return s.layout.Load() }

// layoutChanged records an operation that may have made entries stale
// (Generation). It is called after the change is on disk, so whoever sees
// the new generation and resolves again sees the change.
func (s *Stack) layoutChanged() { s.layout.Add(1) }
