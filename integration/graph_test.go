package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/drivers/drivertest"
	"github.com/strata-fs/strata/internal/testutil"
)

// graphCLI runs "strata graph --root ROOT --backend BACKEND ..." for one
// store, the way a container engine's shell-outs would.
type graphCLI struct {
	t             *testing.T
	root, backend string
}

// run runs one subcommand with stdin, and returns its stdout; a non-zero
// exit fails the test with strata's message.
func (g graphCLI) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	full := append([]string{"graph", "--root", g.root, "--backend", g.backend}, args...)
	cmd := exec.CommandContext(ctx, strataBin, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		g.t.Fatalf("strata %s: %v\nstderr: %s", strings.Join(full, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// mount runs "graph mount ID" and returns the directory it printed last.
func (g graphCLI) mount(id string) string {
	g.t.Helper()
	lines := strings.Split(strings.TrimSpace(string(g.run(nil, "mount", id))), "\n")
	return lines[len(lines)-1]
}

// cleanup unmounts whatever a failed test left mounted in the store.
func (g graphCLI) cleanup() {
	dirs, _ := filepath.Glob(filepath.Join(g.root, g.backend, "mnt", "*"))
	for _, d := range dirs {
		if m := mountsAt(g.t, d); len(m) > 0 {
			unmountAndWait(g.t, d, m[0].FSType == "fuse.strata")
		}
	}
	drivertest.RequireNoMounts(g.t, g.root)
}

// TestGraphEndToEnd drives the layer store through the CLI as a container
// engine would: a 3-layer image from OCI tars, a container layer on it
// with an -init layer between, writes and deletes through the mount (and
// a renamed lower directory), its diff, that diff applied to a fresh layer
// on the same image, and the two trees compared.
func TestGraphEndToEnd(t *testing.T) {
	for _, backend := range []string{"fuse", "overlay"} {
		t.Run(backend, func(t *testing.T) {
			testutil.NeedFUSE(t)
			if backend == "overlay" {
				requireKernelOverlay(t)
			}
			g := graphCLI{t: t, root: t.TempDir(), backend: backend}
			t.Cleanup(g.cleanup)
			tars := t.TempDir()

			parent := ""
			for i, layer := range drivertest.ImageLayers(t) {
				id := []string{"image1", "image2", "image3"}[i]
				if parent == "" {
					g.run(nil, "create", id)
				} else {
					g.run(nil, "create", id, parent)
				}
				size := strings.TrimSpace(string(g.run(layer, "apply", id)))
				require.NotEqual(t, "0", size, "apply %s: size", id)
				parent = id
			}
			status := string(g.run(nil, "status"))
			require.Contains(t, status, "Backend:")
			require.Contains(t, status, backend)

			g.run(nil, "create-rw", "ctr-init", "image3")
			dir := g.mount("ctr-init")
			testutil.WriteFile(t, filepath.Join(dir, "etc/hostname"), "ctr\n")
			testutil.WriteFile(t, filepath.Join(dir, "etc/hosts"), "127.0.0.1 localhost\n")
			g.run(nil, "umount", "ctr-init")

			g.run(nil, "create-rw", "ctr", "ctr-init")
			dir = g.mount("ctr")
			// A second mount from another process shares the first.
			require.Equal(t, dir, g.mount("ctr"))
			require.Equal(t, "ctr\n", readFile(t, filepath.Join(dir, "etc/hostname")))
			testutil.WriteFile(t, filepath.Join(dir, "app/state.db"), drivertest.Random(20000, 9))
			testutil.WriteFile(t, filepath.Join(dir, "etc/hostname"), "changed by the container\n")
			require.NoError(t, os.Remove(filepath.Join(dir, "usr/bin/tool-again")))
			require.NoError(t, os.RemoveAll(filepath.Join(dir, "srv")))
			require.NoError(t, os.Chmod(filepath.Join(dir, "etc/secret"), 0o640))
			// mv falls back to copying where kernel overlay answers EXDEV.
			out, err := exec.Command("mv", filepath.Join(dir, "usr/lib"), filepath.Join(dir, "usr/lib64")).CombinedOutput()
			require.NoError(t, err, "mv: %s", out)
			g.run(nil, "umount", "ctr")
			require.Len(t, mountsAt(t, dir), 1, "one of two mounts was undone: still mounted")
			g.run(nil, "umount", "ctr")
			require.Empty(t, mountsAt(t, dir), "both mounts undone: unmounted")

			changes := string(g.run(nil, "changes", "ctr"))
			for _, want := range []string{"A /app/state.db", "C /etc/hostname", "D /usr/bin/tool-again", "D /srv", "A /usr/lib64"} {
				require.Contains(t, changes, want+"\n", "changes")
			}
			require.NotEqual(t, "0", strings.TrimSpace(string(g.run(nil, "diff-size", "ctr"))))
			diff := g.run(nil, "diff", "ctr")
			require.NoError(t, os.WriteFile(filepath.Join(tars, "ctr.tar"), diff, 0o644))

			g.run(nil, "create", "fresh", "ctr-init")
			g.run(diff, "apply", "fresh")

			want := drivertest.Snapshot(t, g.mount("ctr"))
			got := drivertest.Snapshot(t, g.mount("fresh"))
			drivertest.RequireEqual(t, want, got, "container layer vs. its diff applied to a fresh layer")
			require.Contains(t, want, "usr/lib64/libx.so.1.0")
			require.NotContains(t, want, "usr/lib")
			g.run(nil, "umount", "ctr")
			g.run(nil, "umount", "fresh")

			for _, id := range []string{"fresh", "ctr", "ctr-init", "image3", "image2", "image1"} {
				g.run(nil, "rm", id)
			}
			require.Equal(t, "ID  PARENT  MODE  MOUNTS\n", string(g.run(nil, "ls")))
		})
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
