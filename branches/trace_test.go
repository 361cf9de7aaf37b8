package branches_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// traceLine reduces a trace event to what a test compares: the decision
// and its outcome, without sequence numbers, times and inode numbers.
func traceLine(ev branches.TraceEvent) string {
	s := ev.Op + " " + ev.Path
	switch ev.Op {
	case "lookup":
		s += " " + ev.Result + " " + ev.Branch
	case "copy-up-start":
		s += " " + ev.Type + " " + ev.From + "->" + ev.Branch
	case "copy-up-end":
		method := ev.Method
		if method != "none" && method != "" {
			method = "data" // reflink, copy_file_range or loop: the filesystem decides
		}
		s += fmt.Sprintf(" %s %s->%s %s", ev.Type, ev.From, ev.Branch, method)
		if ev.Bytes != nil {
			s += fmt.Sprintf(" %dB", *ev.Bytes)
		}
	case "whiteout", "opaque":
		s += " " + ev.Branch + " " + ev.Marker
	case "rename":
		s += " -> " + ev.To + " " + ev.Strategy + " " + ev.Redirect
	case "create", "remove":
		s += " " + ev.Branch
	}
	return s
}

// parseTrace decodes a trace, checking that it is one JSON object per line
// numbered from 1.
func parseTrace(t testing.TB, data []byte) []branches.TraceEvent {
	t.Helper()
	var out []branches.TraceEvent
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev branches.TraceEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("trace line %d is not JSON: %v: %s", i+1, err, line)
		}
		if ev.Seq != uint64(i+1) || ev.Time == "" {
			t.Errorf("trace line %d: seq %d, time %q", i+1, ev.Seq, ev.Time)
		}
		out = append(out, ev)
	}
	return out
}

// TestTraceScriptedWorkload runs a scripted session through the library
// with the trace on, and checks its decisions: every decision that changes
// the upper exactly and in order, and the lookups the script asks for in
// order among the others (the write path resolves names for itself too).
func TestTraceScriptedWorkload(t *testing.T) {
	testutil.NeedRoot(t, "overlay whiteouts")
	w := newWStack(t, writeDialects[0], []string{"tmp.txt=U"},
		[]string{"etc/motd=hello\n", "etc/hostname=base\n", "var/cache/x=1"})
	var buf bytes.Buffer
	w.s.SetTrace(&buf)
	if !w.s.Tracing() {
		t.Fatal("Tracing() is false after SetTrace")
	}
	root := w.resolve(t, ".")
	motd := w.resolve(t, "etc/motd")
	_, fd, err := w.s.OpenWrite(motd, unix.O_WRONLY|unix.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	etc := w.resolve(t, "etc")
	if err := w.s.Remove(etc, "hostname", false); err != nil {
		t.Fatal(err)
	}
	if err := w.s.Rename(root, "var", root, "srv", 0); err != nil {
		t.Fatal(err)
	}
	root = w.resolve(t, ".")
	w.gone(t, "var")
	if _, _, err := w.s.Create(root, "var", branches.NewObject{Mode: unix.S_IFDIR | 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := w.s.Remove(root, "tmp.txt", false); err != nil {
		t.Fatal(err)
	}
	w.s.SetTrace(nil)
	w.resolve(t, "srv") // not traced any more

	wantDecisions := []string{
		"copy-up-start etc dir lower1->upper",
		"copy-up-end etc dir lower1->upper none 0B",
		"copy-up-start etc/motd file lower1->upper",
		"copy-up-end etc/motd file lower1->upper data 6B",
		"whiteout etc/hostname upper overlay whiteout (char 0/0)",
		"copy-up-start var dir lower1->upper",
		"copy-up-end var dir lower1->upper none 0B",
		"rename var -> srv redirect /var",
		"whiteout var upper overlay whiteout (char 0/0)",
		"create var upper",
		"opaque var upper opaque dir (overlay.opaque xattr)",
		"remove tmp.txt upper",
	}
	wantLookups := []string{
		"lookup etc found lower1",
		"lookup etc/motd found lower1",
		"lookup etc/motd found upper",
		"lookup etc/hostname found lower1",
		"lookup var found lower1",
		"lookup srv absent ",
		"lookup srv found upper",
		"lookup var whited out upper",
		"lookup var found upper",
		"lookup tmp.txt found upper",
	}
	var decisions, lookups []string
	for _, ev := range parseTrace(t, buf.Bytes()) {
		if ev.Op == "lookup" {
			lookups = append(lookups, traceLine(ev))
		} else {
			decisions = append(decisions, traceLine(ev))
		}
	}
	if !slices.Equal(decisions, wantDecisions) {
		t.Errorf("decisions:\n%s\nwant:\n%s", join(decisions), join(wantDecisions))
	}
	if !isSubsequence(wantLookups, lookups) {
		t.Errorf("lookups:\n%s\nwant, in this order among them:\n%s", join(lookups), join(wantLookups))
	}
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func join(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestTraceLookupExplainsHiding: a lookup's trace line says which branch
// serves and why each lower copy is hidden, or which whiteout hides it.
func TestTraceLookupExplainsHiding(t *testing.T) {
	d := dialects[3] // aufs markers: no root needed
	s := stackOf(t, d, []string{"f=top", "WH:g"}, []string{"f=mid", "g=mid"}, []string{"f=low"})
	var buf bytes.Buffer
	s.SetTrace(&buf)
	root := resolve(t, s, ".")
	if _, err := s.Lookup(root, "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(root, "g"); err == nil {
		t.Fatal("g is whited out, Lookup found it")
	}
	evs := parseTrace(t, buf.Bytes())
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2:\n%s", len(evs), buf.Bytes())
	}
	f, g := evs[0], evs[1]
	if f.Result != "found" || f.Branch != "lower0" || f.Type != "file" || f.Ino == 0 ||
		f.Hidden["lower1"] != "shadowed by a file in lower0" || f.Hidden["lower2"] != "shadowed by a file in lower0" {
		t.Errorf("lookup f: %+v", f)
	}
	if g.Result != "whited out" || g.Branch != "lower0" || g.Marker != "aufs whiteout (.wh. file)" ||
		g.Hidden["lower1"] != "aufs whiteout (.wh. file) in lower0" {
		t.Errorf("lookup g: %+v", g)
	}
}
