package branches

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/whiteout"
)

// Report explains one union path: what every branch holds there, which
// copy the union shows, what hides the others, and (for a directory) how
// its listing is merged. It is what `strata explain` prints, and its JSON
// form is the same whether it was made by a mount's daemon or offline from
// the branches, for the same branches in the same state.
type Report struct {
	// Path is the union path explained ("." for the root).
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Summary says the outcome in one sentence.
	Summary string `json:"summary"`
	// Missing is the first component of Path the union does not show
	// (Path itself or an ancestor); MissingWhy says why.
	Missing    string `json:"missing,omitempty"`
	MissingWhy string `json:"missing_why,omitempty"`

	Type string `json:"type,omitempty"`
	// Ino is the union inode number (st_ino through the mount) and
	// InoFrom which copy it comes from.
	Ino      uint64     `json:"ino,omitempty"`
	InoFrom  string     `json:"ino_from,omitempty"`
	ServedBy *BranchRef `json:"served_by,omitempty"`
	Target   string     `json:"target,omitempty"` // symlinks
	// Redirect is a renamed directory's overlay.redirect: where its lower
	// copies are.
	Redirect string  `json:"redirect,omitempty"`
	CopiedUp *CopyUp `json:"copied_up,omitempty"`

	// Branches is the chain, top to bottom: every branch of the stack and
	// what it holds at the place the union looks for Path in it.
	Branches []Holding `json:"branches"`
	// Listing, for a directory, says how its merged listing is formed.
	Listing *Listing `json:"listing,omitempty"`
}

// BranchRef names one branch of the stack.
type BranchRef struct {
	Index int    `json:"index"`
	Name  string `json:"name"` // "upper", "lower2", "br0"
	Path  string `json:"path"`
	Perm  string `json:"perm"`
}

// Holding is what one branch holds at a name, and what the union makes of
// it.
type Holding struct {
	Branch BranchRef `json:"branch"`
	// At is the path looked at in the branch: the union path, or where a
	// redirect leads.
	At string `json:"at"`
	// Holds is the object's type ("file", "dir", ...), "whiteout" or
	// "nothing".
	Holds string `json:"holds"`
	// Whiteout is the form of a whiteout at the name, or of an aufs
	// whiteout beside a real object ("deleted, then created again").
	Whiteout string `json:"whiteout,omitempty"`
	// Opaque and Redirect are a directory copy's markers.
	Opaque   string `json:"opaque,omitempty"`
	Redirect string `json:"redirect,omitempty"`
	// Verdict: "serves" (this copy is the union object), "merged" (a
	// lower copy of a merged directory), "hidden", "whiteout" (a whiteout
	// that hides the copies below) or "absent".
	Verdict  string    `json:"verdict"`
	HiddenBy *HiddenBy `json:"hidden_by,omitempty"`
}

// HiddenBy is what hides a copy.
type HiddenBy struct {
	Branch string `json:"branch"`
	Index  int    `json:"index"`
	// At is the union path where the cause sits: the name itself, or an
	// ancestor (an opaque parent, a whited-out directory).
	At string `json:"at"`
	// What: a marker ("overlay whiteout (char 0/0)", "opaque dir
	// (.wh..wh..opq)"), an object ("file over dir", "shadowed by a file")
	// or a redirect.
	What string `json:"what"`
}

// CopyUp says where a copied-up object came from.
type CopyUp struct {
	// From is the branch copied from, when it is still in the stack.
	From *BranchRef `json:"from,omitempty"`
	// BranchPath and At are what the copy-up recorded: the branch's root
	// and the object's path in it. Both empty when nothing was recorded.
	BranchPath string `json:"branch_path,omitempty"`
	At         string `json:"at,omitempty"`
}

// Listing says how a directory's merged listing is formed: each merged
// copy, top first, adds the names not decided above it, and hides lower
// names with its whiteouts.
type Listing struct {
	Names  []string       `json:"names"`
	Layers []ListingLayer `json:"layers"`
}

// ListingLayer is one merged copy's part in a listing.
type ListingLayer struct {
	Branch string `json:"branch"`
	At     string `json:"at"`
	// Adds are the names this copy contributes (first seen here).
	Adds []string `json:"adds"`
	// Shadowed are names this copy has that a higher copy shows;
	// WhitedOut those a higher copy's whiteout hides.
	Shadowed  []string `json:"shadowed,omitempty"`
	WhitedOut []string `json:"whited_out,omitempty"`
	// Whiteouts are the names this copy hides in the copies below.
	Whiteouts []NamedMarker `json:"whiteouts,omitempty"`
	// Opaque is set on the copy where the merge stops.
	Opaque string `json:"opaque,omitempty"`
}

// NamedMarker is a marker for one name.
type NamedMarker struct {
	Name   string `json:"name"`
	Marker string `json:"marker"`
}

// branchState is one branch's part at one component of the path.
type branchState struct {
	at       string
	verdict  Verdict
	hiddenBy *HiddenBy
	// held is what the branch holds at at: what the lookup read, or nil
	// for a branch it did not consult, until holds reads it the same way.
	held *held
}

// holds is what branch k holds at st.at.
func (s *Stack) holds(k int, st *branchState) (held, error) {
	if st.held == nil {
		h, err := s.branches[k].heldAt(st.at)
		if err != nil {
			return held{}, fmt.Errorf("%s in %s: %w", st.at, s.branches[k].Path, err)
		}
		st.held = &h
	}
	return *st.held, nil
}

// ExplainPath explains the union path p (slash-separated, relative to the
// union root; "" or "." is the root). It reads the branches only: a
// read-only stack explains as well as a mounted one.
func (s *Stack) ExplainPath(p string) (*Report, error) {
	comps, err := unionComponents(p)
	if err != nil {
		return nil, err
	}
	root, err := s.Resolve(".")
	if err != nil {
		return nil, err
	}
	states := make([]branchState, len(s.branches))
	for k := range s.branches {
		states[k] = branchState{at: ".", verdict: Merged}
	}
	states[0].verdict = Serves
	cur, r := root, &Report{Path: "."}
	for i, name := range comps {
		r.Path = path.Join(comps[:i+1]...)
		var obs []Observation
		var next *Entry
		if cur != nil && cur.IsDir() {
			if next, obs, err = s.Explain(cur, name); err != nil {
				return nil, err
			}
		}
		states = s.nextStates(states, cur, r.Path, name, obs)
		if cur != nil && next == nil {
			r.Missing, r.MissingWhy = r.Path, s.whyMissing(cur, r.Path, name, states)
		}
		cur = next
	}
	for k, b := range s.branches {
		h, err := s.holds(k, &states[k])
		if err != nil {
			return nil, err
		}
		r.Branches = append(r.Branches, states[k].report(refOf(b), h))
	}
	if cur == nil {
		r.Summary = fmt.Sprintf("%s is not in the union: %s", r.Path, r.MissingWhy)
		return r, nil
	}
	if err := s.describeObject(r, cur); err != nil {
		return nil, err
	}
	return r, nil
}

// unionComponents splits a union path, refusing one that leaves the union.
func unionComponents(p string) ([]string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return nil, nil
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return nil, fmt.Errorf("%s: a union path may not contain '..'", p)
		}
	}
	return strings.Split(clean[1:], "/"), nil
}

// nextStates works out every branch's part at name (at union path p), in
// the directory cur (nil when the union does not show the parent), from
// the lookup's observations and, for the branches the lookup did not
// consult, from their part at the parent.
func (s *Stack) nextStates(prev []branchState, cur *Entry, p, name string, obs []Observation) []branchState {
	next := make([]branchState, len(prev))
	seen := make([]bool, len(prev))
	for i := range obs {
		o := &obs[i]
		k := o.Branch.Index
		seen[k] = true
		next[k] = branchState{at: o.Path, verdict: o.Verdict, held: &o.held}
		if o.HiddenBy != nil {
			next[k].hiddenBy = &HiddenBy{Branch: o.HiddenBy.Branch.Name(), Index: o.HiddenBy.Branch.Index, At: p, What: o.Reason()}
		}
	}
	for k, b := range s.branches {
		if seen[k] {
			continue
		}
		st := branchState{at: path.Join(prev[k].at, name), verdict: Hidden, hiddenBy: prev[k].hiddenBy}
		parentMerged := prev[k].verdict == Serves || prev[k].verdict == Merged
		switch {
		case st.hiddenBy != nil:
			// Whatever hid the parent's copy hides everything in it.
		case whiteout.IsReserved(name):
			st.hiddenBy = &HiddenBy{Branch: b.Name(), Index: k, At: p, What: "a reserved marker name (" + whiteout.AufsPrefix + "*): never shown"}
		case parentMerged && cur != nil && cur.IsDir():
			// The parent's copy here is merged, yet the lookup did not
			// look here: a redirect above sent it elsewhere.
			st.hiddenBy = s.redirectCause(next, seen, k, p)
		default:
			st.verdict = Absent
		}
		next[k] = st
	}
	return next
}

// redirectCause names the higher copy whose redirect made the lookup skip
// branch k.
func (s *Stack) redirectCause(next []branchState, seen []bool, k int, p string) *HiddenBy {
	for j := k - 1; j >= 0; j-- {
		if !seen[j] || (next[j].verdict != Serves && next[j].verdict != Merged) {
			continue
		}
		if h, err := s.holds(j, &next[j]); err == nil && h.markers.Redirect != "" {
			return &HiddenBy{Branch: s.branches[j].Name(), Index: j, At: p, What: "redirect: the lower copies are looked up at /" + h.markers.Redirect}
		}
	}
	return &HiddenBy{Branch: s.branches[k].Name(), Index: k, At: p, What: "not on the lookup's path"}
}

// whyMissing says why the union does not show name in cur (at union path
// p), in a sentence with p as its subject.
func (s *Stack) whyMissing(cur *Entry, p, name string, states []branchState) string {
	if !cur.IsDir() {
		return fmt.Sprintf("%s is a %s, not a directory (served by %s)", cur.Path, typeName(cur.St.Mode), cur.Top().Branch.Name())
	}
	if whiteout.IsReserved(name) {
		return p + " is a marker name: names starting with " + whiteout.AufsPrefix + " are whiteouts, never shown"
	}
	var hidden []string
	for k := range states {
		st := &states[k]
		switch {
		case st.verdict == Marker:
			hd, _ := s.holds(k, st)
			return fmt.Sprintf("%s is whited out in %s (%s)", p, s.branches[k].Name(), hd.Hides)
		case st.hiddenBy != nil:
			hd, err := s.holds(k, st)
			if err == nil && (hd.Present || hd.Hides != whiteout.NoMarker) {
				h := st.hiddenBy
				hidden = append(hidden, fmt.Sprintf("%s's by %s at %s in %s", s.branches[k].Name(), h.What, h.At, h.Branch))
			}
		}
	}
	if len(hidden) > 0 {
		return fmt.Sprintf("every copy of %s is hidden: %s", p, strings.Join(hidden, "; "))
	}
	return "no branch has " + p
}

// report says what the branch holds at st.at (h) and what the union
// makes of it.
func (st branchState) report(b BranchRef, h held) Holding {
	out := Holding{Branch: b, At: st.at, Holds: "nothing"}
	switch {
	case h.Present:
		out.Holds = typeName(h.St.Mode)
	case h.Hides != whiteout.NoMarker:
		out.Holds = "whiteout"
	}
	if h.Hides != whiteout.NoMarker {
		out.Whiteout = h.Hides.String()
	}
	if h.markers.Opaque != whiteout.NoMarker {
		out.Opaque = h.markers.Opaque.String()
	}
	if h.markers.Redirect != "" {
		out.Redirect = "/" + h.markers.Redirect
	}
	switch {
	case !h.Present && h.Hides == whiteout.NoMarker:
		out.Verdict = "absent"
	case st.verdict == Marker:
		out.Verdict = "whiteout"
	default:
		out.Verdict = st.verdict.String()
		out.HiddenBy = st.hiddenBy
	}
	return out
}

func refOf(b *Branch) BranchRef {
	return BranchRef{Index: b.Index, Name: b.Name(), Path: b.Path, Perm: b.Perm.String()}
}

// describeObject fills the parts of r that describe the union object e.
func (s *Stack) describeObject(r *Report, e *Entry) error {
	top := e.Top()
	ref := refOf(top.Branch)
	r.Exists, r.Type, r.Ino, r.ServedBy = true, typeName(e.St.Mode), e.Ino, &ref
	switch {
	case e.storedIno != 0:
		r.InoFrom = "the number the object had before its copy-up (strata.ino on the " + top.Branch.Name() + " copy)"
	case e.IsDir() && len(e.Layers) > 1:
		r.InoFrom = "the bottom-most merged copy (" + e.Layers[len(e.Layers)-1].Branch.Name() + ")"
	default:
		r.InoFrom = "the serving copy (" + top.Branch.Name() + ")"
	}
	if e.St.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, err := s.Readlink(e)
		if err != nil {
			return err
		}
		r.Target = target
	}
	if e.IsDir() && top.Markers.Redirect != "" {
		r.Redirect = "/" + top.Markers.Redirect
	}
	if top.Branch.Perm == RW {
		if o, ok := s.readOrigin(top); ok {
			r.CopiedUp = &CopyUp{BranchPath: o.Branch, At: o.Path}
			for _, b := range s.branches {
				if b.Path == o.Branch {
					from := refOf(b)
					r.CopiedUp.From = &from
				}
			}
		} else if e.storedIno != 0 {
			r.CopiedUp = &CopyUp{}
		}
	}
	r.Summary = s.summarize(r, e)
	if !e.IsDir() {
		return nil
	}
	l, err := s.explainListing(e)
	r.Listing = l
	return err
}

// summarize says in one sentence what the union shows at r.Path.
func (s *Stack) summarize(r *Report, e *Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is a %s served by %s", r.Path, r.Type, r.ServedBy.Name)
	if len(e.Layers) > 1 {
		var names []string
		for _, l := range e.Layers {
			names = append(names, l.Branch.Name())
		}
		fmt.Fprintf(&b, ", merged from %s", strings.Join(names, ", "))
	}
	if r.Redirect != "" {
		fmt.Fprintf(&b, "; it was renamed: its lower copies are at %s (redirect)", r.Redirect)
	}
	if c := r.CopiedUp; c != nil {
		switch {
		case c.From != nil:
			fmt.Fprintf(&b, "; copied up from %s (%s)", c.From.Name, c.At)
		case c.At != "":
			fmt.Fprintf(&b, "; copied up from %s in %s, no longer in the stack", c.At, c.BranchPath)
		default:
			b.WriteString("; copied up")
		}
	}
	var hidden []string
	for _, h := range r.Branches {
		if h.Verdict == "hidden" && h.HiddenBy != nil {
			hidden = append(hidden, fmt.Sprintf("%s (%s)", h.Branch.Name, h.HiddenBy.What))
		}
	}
	if len(hidden) > 0 {
		fmt.Fprintf(&b, "; hidden: %s", strings.Join(hidden, ", "))
	}
	return b.String()
}

// explainListing replays the merge of a directory's listing copy by copy
// (the rule of Names, over the same listings), recording each copy's part.
func (s *Stack) explainListing(dir *Entry) (*Listing, error) {
	index, err := s.ready(dir.index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.Path, err)
	}
	out := &Listing{Names: []string{}}
	const shown, whitedOut = 1, 2
	decided := map[string]int{} // by a higher copy
	for _, l := range dir.Layers {
		part := ListingLayer{Branch: l.Branch.Name(), At: l.Path, Adds: []string{}}
		if l.Markers.Opaque != whiteout.NoMarker {
			part.Opaque = l.Markers.Opaque.String()
		}
		ll, err := index.listing(l)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %w", l.Path, l.Branch.Path, err)
		}
		names := make([]string, len(ll.names))
		for i, e := range ll.names {
			names[i] = e.Name
		}
		slices.Sort(names)
		hidden := ll.hidden
		for _, n := range names {
			switch decided[n] {
			case shown:
				part.Shadowed = append(part.Shadowed, n)
				continue
			case whitedOut:
				part.WhitedOut = append(part.WhitedOut, n)
				continue
			}
			decided[n] = shown
			part.Adds = append(part.Adds, n)
			out.Names = append(out.Names, n)
		}
		for _, n := range slices.Sorted(maps.Keys(hidden)) {
			part.Whiteouts = append(part.Whiteouts, NamedMarker{Name: n, Marker: hidden[n].String()})
			if decided[n] == 0 {
				decided[n] = whitedOut
			}
		}
		out.Layers = append(out.Layers, part)
	}
	slices.Sort(out.Names)
	return out, nil
}
