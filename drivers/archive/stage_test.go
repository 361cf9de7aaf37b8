package archive_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-fs/strata/drivers/archive"
	"github.com/strata-fs/strata/internal/testutil"
)

// TestApplyCrashHelper is the child of TestApplyCrash: it applies stdin to
// the directory named in the environment until it is killed.
func TestApplyCrashHelper(t *testing.T) {
	dir := os.Getenv("STRATA_ARCHIVE_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process for TestApplyCrash")
	}
	archive.Apply(dir, os.Stdin, archive.ApplyOptions{})
}

// TestApplyCrash kills (SIGKILL) a process in the middle of an Apply: the
// layer dir is exactly as before, and the next Apply removes the staging
// dir the dead one left and succeeds.
func TestApplyCrash(t *testing.T) {
	f := newHostileFixture(t)
	before := fingerprint(t, f.layer)
	var entries []ent
	for i := range 200 {
		entries = append(entries, file(fmt.Sprintf("many/f%03d", i), strings.Repeat("x", 4096)))
	}
	tb := mkTar(t, entries...)

	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyCrashHelper$")
	cmd.Env = append(os.Environ(), "STRATA_ARCHIVE_CRASH_DIR="+f.layer)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Half the tar, then wait until the child has written some of it into
	// its staging dir, and kill it there.
	if _, err := stdin.Write(tb[:len(tb)/2]); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(f.root, ".strata-stage.layer", "tree", "many", "f050")
	waitFor(t, cmd, staged)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	stdin.Close()

	// Until the staging dir goes, the layer's files have an extra link
	// each (to the staging copy); nothing else differs.
	if after := noLinks(fingerprint(t, f.layer)); after != noLinks(before) {
		t.Fatalf("a killed Apply changed the layer dir.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !slices.Contains(siblings(t, f.layer), ".strata-stage.layer") {
		t.Fatalf("expected the dead Apply's staging dir beside the layer: %v", siblings(t, f.layer))
	}
	if err := archive.RemoveStaging(f.layer); err != nil {
		t.Fatal(err)
	}
	if after := fingerprint(t, f.layer); after != before {
		t.Fatalf("after RemoveStaging the layer dir differs.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if names := siblings(t, f.layer); len(names) != 2 { // layer, sentinel
		t.Fatalf("RemoveStaging left %v", names)
	}
	// Kill again, and this time let the next Apply do the cleaning.
	cmd = exec.Command(os.Args[0], "-test.run=^TestApplyCrashHelper$")
	cmd.Env = append(os.Environ(), "STRATA_ARCHIVE_CRASH_DIR="+f.layer)
	if stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write(tb[:len(tb)/2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cmd, staged)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	stdin.Close()
	if !archive.IsStagingName(".strata-stage.layer") || archive.IsStagingName("layer") {
		t.Errorf("IsStagingName does not recognise the staging dir")
	}
	if _, err := archive.Apply(f.layer, bytes.NewReader(tb), archive.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if names := siblings(t, f.layer); len(names) != 2 { // layer, sentinel
		t.Fatalf("the next Apply left %v", names)
	}
	if !exists(filepath.Join(f.layer, "many/f199")) || !exists(filepath.Join(f.layer, "etc/passwd")) {
		t.Errorf("the Apply after the crash did not give old and new content:\n%s", fingerprint(t, f.layer))
	}
}

// TestApplyConcurrent: Applies of one layer dir are serialised (each
// starts from the previous one's result, none is lost), Applies of
// sibling dirs do not disturb each other.
func TestApplyConcurrent(t *testing.T) {
	root := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		tb := mkTar(t, dir("shared/"), file(fmt.Sprintf("shared/f%d", i), "x"))
		own := filepath.Join(root, fmt.Sprintf("layer%d", i))
		testutil.Mkdirs(t, own)
		testutil.Mkdirs(t, filepath.Join(root, "same"))
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := archive.Apply(filepath.Join(root, "same"), bytes.NewReader(tb), archive.ApplyOptions{})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := archive.Apply(own, bytes.NewReader(tb), archive.ApplyOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, "same/shared"))
	if err != nil || len(entries) != n {
		t.Errorf("same/shared has %d entries (%v), want all %d", len(entries), err, n)
	}
	for i := range n {
		if !exists(filepath.Join(root, fmt.Sprintf("layer%d/shared/f%d", i, i))) {
			t.Errorf("layer%d lost its file", i)
		}
	}
	for _, name := range siblings(t, filepath.Join(root, "same")) {
		if archive.IsStagingName(name) {
			t.Errorf("staging dir %s left behind", name)
		}
	}
}

// waitFor waits until the child has made path (no timing is asserted; the
// bound only keeps a broken child from hanging the test).
func waitFor(t *testing.T, cmd *exec.Cmd, path string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !exists(path); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the child never staged %s", path)
		}
	}
}

// noLinks drops the hard-link groups from a fingerprint.
func noLinks(fp string) string {
	lines := strings.Split(fp, "\n")
	for i, l := range lines {
		if j := strings.Index(l, " linkgroup="); j >= 0 {
			rest := l[j+len(" linkgroup="):]
			k := strings.IndexByte(rest, ' ')
			if k < 0 {
				rest = ""
			} else {
				rest = rest[k:]
			}
			lines[i] = l[:j] + rest
		}
	}
	return strings.Join(lines, "\n")
}
