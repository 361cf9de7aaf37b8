package control

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// serveOn serves the channel of a read-only stack over one lower
// directory, with a plain directory standing in for the mountpoint (Serve
// only needs its device number), and a client for it. The mounted
// behaviour (FindMount, refusing other users) is in integration.
func serveOn(t *testing.T) (*Channel, *MountedUnion, string) {
	t.Helper()
	base := t.TempDir()
	lower, mnt := filepath.Join(base, "lower"), filepath.Join(base, "mnt")
	for _, d := range []string{lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := branches.ParseOptions([]string{"lowerdir=" + lower})
	if err != nil {
		t.Fatal(err)
	}
	stack, err := branches.Open(opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	c, err := Serve(stack, mnt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	m := &MountedUnion{MountPoint: mnt, Owner: uint32(os.Geteuid()), addr: address(unix.Major(st.Dev), unix.Minor(st.Dev))}
	return c, m, base
}

// TestChannel: explain answers with the stack's report; trace on refuses
// a file on the mount's own device; trace off and an unknown request get
// their answers.
func TestChannel(t *testing.T) {
	_, m, base := serveOn(t)
	reply, err := m.Request(Request{Op: "explain", Path: "f"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := reply.Report; r == nil || !r.Exists || r.ServedBy == nil || r.ServedBy.Name != "lower0" {
		t.Errorf("explain f: %+v", reply.Report)
	}
	same, err := os.Create(filepath.Join(base, "trace"))
	if err != nil {
		t.Fatal(err)
	}
	defer same.Close()
	if _, err := m.Request(Request{Op: "trace", On: true}, same); err == nil || !strings.Contains(err.Error(), "inside the mount") {
		t.Errorf("trace on to a file on the mount's device: %v", err)
	}
	if _, err := m.Request(Request{Op: "trace"}, nil); err != nil {
		t.Errorf("trace off: %v", err)
	}
	if _, err := m.Request(Request{Op: "frobnicate"}, nil); err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "unknown request") {
		t.Errorf("unknown request: %v", err)
	}
}

// TestClientChecksOwner: a socket that does not belong to the mount's
// owner is not trusted.
func TestClientChecksOwner(t *testing.T) {
	_, m, _ := serveOn(t)
	m.Owner++
	if _, err := m.Request(Request{Op: "explain", Path: "f"}, nil); err == nil || !strings.Contains(err.Error(), "not trusting it") {
		t.Errorf("socket of another uid: %v", err)
	}
}
