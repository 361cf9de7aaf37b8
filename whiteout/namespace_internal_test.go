package whiteout

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-fs/strata/internal/sys"
)

func TestWritableNamespace(t *testing.T) {
	for _, c := range []struct {
		euid      int
		initialNS bool
		want      string
	}{
		{0, true, "trusted."},
		{0, false, "user."}, // root of a user namespace
		{1000, true, "user."},
		{1000, false, "user."},
	} {
		if got := writableNamespace(c.euid, c.initialNS); got != c.want {
			t.Errorf("writableNamespace(euid %d, initial namespace %v) = %q, want %q", c.euid, c.initialNS, got, c.want)
		}
	}
	want := writableNamespace(os.Geteuid(), sys.InInitialUserNamespace())
	if got := WritableNamespace(); got != want {
		t.Errorf("WritableNamespace() = %q, want %q here", got, want)
	}
}

// printNamespaceEnv makes TestWritableNamespaceInUserNamespace's child (this
// test binary, run again) print WritableNamespace and nothing else.
const printNamespaceEnv = "STRATA_TEST_PRINT_NAMESPACE"

// TestWritableNamespaceInUserNamespace runs this binary again as root of a
// new user namespace: there it must choose user., as trusted.* would be
// refused.
func TestWritableNamespaceInUserNamespace(t *testing.T) {
	if os.Getenv(printNamespaceEnv) != "" {
		fmt.Println(WritableNamespace())
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestWritableNamespaceInUserNamespace$")
	cmd.Env = append(os.Environ(), printNamespaceEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("cannot run as root of a user namespace here: %v", err)
		}
		t.Fatalf("run as root of a user namespace: %v", err)
	}
	if got, _, _ := strings.Cut(string(out), "\n"); got != "user." {
		t.Errorf("root of a user namespace: WritableNamespace() = %q, want user.", out)
	}
}
