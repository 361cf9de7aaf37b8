package branches_test

import (
	"testing"

	"github.com/strata-fs/strata/branches"
)

// TestVerdictString: every verdict has its name, and a value outside the
// constants prints as a number instead of panicking (it indexed an array).
func TestVerdictString(t *testing.T) {
	for v, want := range map[branches.Verdict]string{
		branches.Absent:      "absent",
		branches.Serves:      "serves",
		branches.Merged:      "merged",
		branches.Hidden:      "hidden",
		branches.Marker:      "whiteout",
		branches.Verdict(7):  "Verdict(7)",
		branches.Verdict(-1): "Verdict(-1)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}
