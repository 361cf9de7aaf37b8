// Package branches owns the branch stack of a union and the rules that
// resolve names through it.
//
// Terms:
//   - A branch is a directory that takes part in the union, with a
//     permission: rw (writable), ro (read-only; its whiteouts are honoured)
//     or rr (real read-only: never written, never checked for writability).
//   - The stack is the ordered list of branches, top first. The upper is
//     the top rw branch; the others are lowers.
//   - A Layer is one branch's copy of a union object (branch + path inside
//     it). An Entry is a union object: a non-directory has one layer, a
//     directory has every copy that is merged into it, top first, down to
//     the first opaque one.
//
// The rules (docs/UNION-SEMANTICS.md, "Lookup"): a name resolves to the
// topmost branch that has it, unless a whiteout for it, or an opaque marker
// on its parent directory, sits in a higher branch. A directory found in
// several branches is merged. A non-directory hides a directory of the same
// name below it, and the reverse. Markers are never visible.
//
// A lifecycle:
//
//	opts, err := branches.ParseOptions([]string{"lowerdir=/l1:/l2"})
//	stack, err := branches.Open(opts, "/mnt")
//	defer stack.Close()
//	e, err := stack.Resolve("etc/passwd")   // which branch serves it
//	list, err := stack.ReadDir(root)        // a merged listing
//	fsys := stack.FS()                      // the read-only union as an io/fs.FS
//	report, err := stack.ExplainPath("etc") // why etc looks as it does (strata explain)
//	stack.SetTrace(os.Stderr)               // one JSON line per union decision
//
// Nothing here needs FUSE: package unionfs is a thin adapter over this one,
// and tools and tests use the library view directly.
package branches
