package integration

// The podman end-to-end test (issue 7): strata as containers/storage's
// overlay.mount_program, rootful and rootless. A busybox image built here
// is imported (no registry is reachable); a container writes a file,
// deletes a file of the image and makes a nested directory; podman diff
// must list exactly those changes, and the committed image must carry
// them. A directory deleted and made again, and a layer with an opaque
// marker, must hide what was below. The exact argv podman gave strata is
// compared with the contract in testdata/podman-mount-argv.txt.

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updatePodmanContract = flag.Bool("update-podman-contract", false, "rewrite testdata/podman-mount-argv.txt from this run's capture")

const podmanContract = "testdata/podman-mount-argv.txt"

func TestPodman(t *testing.T) {
	requirePodman(t)
	t.Run("rootful", func(t *testing.T) {
		podmanEndToEnd(t, newPodmanEnv(t, nil), "rootful")
	})
	t.Run("rootless", func(t *testing.T) {
		u := rootlessSetup(t)
		podmanEndToEnd(t, newPodmanEnv(t, u), "rootless")
	})
}

// runArgs start every container. Podman as root raises the container's
// nofile and nproc limits to its maximum by default, which runc can only
// set with CAP_SYS_RESOURCE (sandboxes and CI containers often lack it);
// fixed limits work everywhere and change nothing the test looks at.
var runArgs = []string{"run", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

func podmanEndToEnd(t *testing.T, e *podmanEnv, mode string) {
	rootfs := filepath.Join(e.base, "rootfs.tar")
	base := busyboxRootfs(t)
	require.NoError(t, os.WriteFile(rootfs, base, 0o644))
	e.mustPodman(t, "import", "--quiet", rootfs, "localhost/strata-bb")
	run := func(args ...string) string {
		t.Helper()
		return e.mustPodman(t, append(append([]string{}, runArgs...), args...)...)
	}

	t.Run("write, delete, nested mkdir; diff; commit", func(t *testing.T) {
		// /a/b/c is chowned: ownership inside the container (a user
		// namespace, rootless) must read back as the container set it.
		out := run("--name", "ctr-write", "localhost/strata-bb", "sh", "-c",
			"echo hello > /newfile && rm /bin/mv && mkdir -p /a/b/c && chown 33:44 /a/b/c && test ! -e /bin/mv && stat -c %u:%g /newfile /a/b/c")
		assert.Equal(t, "0:0\n33:44\n", out)
		assert.Equal(t, []string{"A /a", "A /a/b", "A /a/b/c", "A /newfile", "C /bin", "D /bin/mv"}, podmanDiff(t, e, "ctr-write"))
		e.mustPodman(t, "commit", "--quiet", "ctr-write", "localhost/strata-bb-c1")
		// busybox runs applets from itself: probe the deleted one with test -e.
		out = run("--rm", "localhost/strata-bb-c1", "sh", "-c",
			`test "$(cat /newfile)" = hello && test ! -e /bin/mv && stat -c %u:%g /a/b/c`)
		assert.Equal(t, "33:44\n", out, "the committed image keeps the file, the deletion and the owner")
	})

	t.Run("directory deleted and made again", func(t *testing.T) {
		run("--name", "ctr-remade", "localhost/strata-bb", "sh", "-c", "rm -rf /opq && mkdir /opq && echo new > /opq/new")
		assert.Equal(t, []string{"A /opq/new", "C /opq", "D /opq/old"}, podmanDiff(t, e, "ctr-remade"))
		e.mustPodman(t, "commit", "--quiet", "ctr-remade", "localhost/strata-bb-c2")
		assert.Equal(t, "new\n", run("--rm", "localhost/strata-bb-c2", "ls", "-A", "/opq"))
	})

	t.Run("second layer with an opaque directory", func(t *testing.T) {
		top := layerTar(t, []tarEntry{dirEntry("opq/"), fileEntry("opq/.wh..wh..opq", "", 0o644), fileEntry("opq/new", "new\n", 0o644)})
		archive := filepath.Join(e.base, "layered.tar")
		require.NoError(t, os.WriteFile(archive, dockerArchive(t, "localhost/strata-opq:latest", base, top), 0o644))
		e.mustPodman(t, "load", "--quiet", "--input", archive)
		// With a mount program, storage unpacks layers in aufs form.
		upper := strings.TrimSpace(e.mustPodman(t, "image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "localhost/strata-opq"))
		assert.FileExists(t, filepath.Join(upper, "opq", ".wh..wh..opq"), "the layer's opaque marker as unpacked")
		assert.Equal(t, "new\n", run("--rm", "localhost/strata-opq", "ls", "-A", "/opq"))

		run("--name", "ctr-opaque", "localhost/strata-opq", "sh", "-c", "echo more > /opq/more")
		assert.Equal(t, []string{"A /opq/more", "C /opq"}, podmanDiff(t, e, "ctr-opaque"))
		e.mustPodman(t, "commit", "--quiet", "ctr-opaque", "localhost/strata-opq-c3")
		assert.Equal(t, "more\nnew\n", run("--rm", "localhost/strata-opq-c3", "ls", "-A", "/opq"))
	})

	t.Run("argv contract", func(t *testing.T) {
		calls := e.captured(t)
		require.NotEmpty(t, calls, "podman never ran the mount program")
		for _, c := range calls {
			require.True(t, len(c) == 3 && c[0] == "-o" && strings.HasSuffix(c[2], "/merged"),
				"containers/storage runs PROG -o OPTS MERGED; got %q", c)
		}
		got := e.normalizeArgv(calls)
		checkPodmanContract(t, mode, got)
	})
}

// podmanDiff is `podman container diff`, one change per element, sorted.
// (Plain `podman diff` also takes an image: a container name that is a
// hex prefix of an image id, such as "c1", can name the image instead.)
func podmanDiff(t *testing.T, e *podmanEnv, container string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(e.mustPodman(t, "container", "diff", container)), "\n")
	sort.Strings(lines)
	return lines
}

// checkPodmanContract compares this mode's normalized argv with its
// section of the checked-in contract ("[mode]" then one call per line),
// or rewrites that section with -update-podman-contract.
func checkPodmanContract(t *testing.T, mode string, got []string) {
	t.Helper()
	sections := map[string][]string{}
	if data, err := os.ReadFile(podmanContract); err == nil {
		cur := ""
		for _, line := range strings.Split(string(data), "\n") {
			switch {
			case strings.HasPrefix(line, "#") || line == "":
			case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
				cur = strings.Trim(line, "[]")
				sections[cur] = []string{}
			default:
				sections[cur] = append(sections[cur], line)
			}
		}
	}
	if *updatePodmanContract {
		sections[mode] = got
		var b strings.Builder
		b.WriteString("# The argv podman (containers/storage) gives its overlay.mount_program, captured by\n")
		b.WriteString("# integration/podman_test.go: one call per line, arguments joined by \" | \"; the store's\n")
		b.WriteString("# path, layer ids and l/ link names are placeholders. Regenerate with\n")
		b.WriteString("#   CI=true go test ./integration -run TestPodman -update-podman-contract\n")
		modes := make([]string, 0, len(sections))
		for m := range sections {
			modes = append(modes, m)
		}
		sort.Strings(modes)
		for _, m := range modes {
			b.WriteString("\n[" + m + "]\n" + strings.Join(sections[m], "\n") + "\n")
		}
		require.NoError(t, os.WriteFile(podmanContract, []byte(b.String()), 0o644))
		return
	}
	want, ok := sections[mode]
	require.True(t, ok, "%s has no [%s] section; run with -update-podman-contract", podmanContract, mode)
	assert.Equal(t, want, got, "podman's mount_program argv changed (see %s)", podmanContract)
}
