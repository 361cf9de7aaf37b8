package main

import (
	"strings"
	"testing"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestDemoExplain runs the demo's session with --explain: after each step
// it shows the upper's changes and the explanation of the touched paths,
// without colour unless asked.
func TestDemoExplain(t *testing.T) {
	testutil.NeedFUSE(t)
	for _, color := range []bool{false, true} {
		var out strings.Builder
		if err := runDemo(&out, t.TempDir(), demoOptions{explain: true, style: style{color: color}}); err != nil {
			t.Fatalf("demo: %v\n%s", err, out.String())
		}
		got := out.String()
		if strings.Contains(got, "\x1b[") != color {
			t.Errorf("colour %v, yet escape codes present: %v", color, strings.Contains(got, "\x1b["))
		}
		if color {
			continue
		}
		for _, want := range []string{
			"$ cat etc/motd\n    welcome from the middle layer\n\n    the upper layer: unchanged",
			"copied up from lower2 (middle), where it was etc/motd",
			"+ etc/hostname                 whiteout (overlay char 0/0): deletes etc/hostname below",
			"not in the union: etc/hostname is whited out in upper (overlay whiteout (char 0/0))",
			"lower3 (base) ro    app/data/a.txt  file     hidden by upper at app/data: opaque dir (overlay.opaque xattr)",
			"+ srv                          dir, redirect to /var (overlay.redirect xattr)",
			"lower2 (middle) ro  var  dir                 merged",
			"- var                          whiteout (overlay char 0/0): deletes var below",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("the demo does not show %q", want)
			}
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", got)
		}
	}
}
