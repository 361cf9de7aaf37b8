package branches

import (
	"fmt"
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
