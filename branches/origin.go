package branches

import (
	"encoding/json"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
	"github.com/strata-fs/strata/whiteout"
)

// Where a copy-up came from. Kernel overlay records the origin of a
// copied-up object as a file handle (overlay.origin); strata records it as
// the branch and the path in it, in <ns>strata.origin, so that `strata
// explain` can say "copied up from lower2 at etc/motd" on any later mount.
// The record is informative only: nothing in the union's rules reads it.

// Origin is the recorded source of a copy-up.
type Origin struct {
	// Branch is the canonical root path of the branch copied from.
	Branch string `json:"branch"`
	// Path is the object's path in that branch.
	Path string `json:"path"`
}

// xattrNamespace is the stack's bookkeeping namespace, read-only stacks
// included: they read what a writable mount of the same branches wrote.
func (s *Stack) xattrNamespace() string {
	if s.w != nil {
		return s.w.ns
	}
	return whiteout.WritableNamespace()
}

func (s *Stack) originXattr() string { return s.xattrNamespace() + "strata.origin" }

// withOrigin adds e's origin record to the xattrs a copy-up sets on its
// copy. user.* xattrs exist only on files and directories, so other
// objects copied up by a user go without one.
func (s *Stack) withOrigin(extra map[string][]byte, e *Entry) map[string][]byte {
	typ := e.St.Mode & unix.S_IFMT
	if s.xattrNamespace() == "user." && typ != unix.S_IFREG && typ != unix.S_IFDIR {
		return extra
	}
	v, err := json.Marshal(Origin{Branch: e.Top().Branch.Path, Path: e.Top().Path})
	if err != nil {
		return extra
	}
	out := map[string][]byte{s.originXattr(): v}
	for k, x := range extra {
		out[k] = x
	}
	return out
}

// readOrigin reads the origin record of one copy, if it has one.
func (s *Stack) readOrigin(l Layer) (Origin, bool) {
	var o Origin
	var raw []byte
	err := withParent(l, func(dirFD int, name string) (err error) {
		raw, err = sys.Getxattr(dirFD, name, s.originXattr())
		return err
	})
	if err != nil || json.Unmarshal(raw, &o) != nil {
		return Origin{}, false
	}
	return o, true
}
