package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/testutil"
)

// readTrace decodes a trace file, checking every line is one JSON event
// and the numbering runs from 1 without gaps.
func readTrace(t *testing.T, file string) []branches.TraceEvent {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []branches.TraceEvent
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev branches.TraceEvent
		require.NoError(t, json.Unmarshal(line, &ev), "trace line %d: %s", i+1, line)
		require.Equal(t, uint64(i+1), ev.Seq, "trace line %d", i+1)
		out = append(out, ev)
	}
	return out
}

// decisions reduces the events that change the upper to comparable lines;
// lookups depend on the kernel's caches and are left out.
func decisions(evs []branches.TraceEvent) []string {
	var out []string
	for _, ev := range evs {
		switch ev.Op {
		case "lookup":
			continue
		case "copy-up-end":
			method := ev.Method
			if method != "none" {
				method = "data" // reflink, copy_file_range or loop: the filesystem decides
			}
			out = append(out, fmt.Sprintf("copy-up-end %s %s %dB", ev.Path, method, *ev.Bytes))
		case "rename":
			out = append(out, fmt.Sprintf("rename %s -> %s %s %s", ev.Path, ev.To, ev.Strategy, ev.Redirect))
		case "whiteout", "opaque":
			out = append(out, fmt.Sprintf("%s %s %s %s", ev.Op, ev.Path, ev.Branch, ev.Marker))
		default:
			out = append(out, fmt.Sprintf("%s %s %s", ev.Op, ev.Path, ev.Branch))
		}
	}
	return out
}

// TestTraceScriptedWorkload mounts with --trace, runs a scripted session
// through the mount and checks the decisions in the trace, exactly and in
// order; then turns the trace off and on again on the running mount.
func TestTraceScriptedWorkload(t *testing.T) {
	testutil.NeedFUSE(t)
	tmp := t.TempDir()
	lower := filepath.Join(tmp, "lower")
	buildLayer(t, lower, Layer{File("etc/motd", "hello\n"), File("etc/hostname", "base\n"), File("var/cache/x", "1")})
	dirs := testutil.Mkdirs(t, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), filepath.Join(tmp, "mnt"))
	mnt, file := dirs[2], filepath.Join(tmp, "trace.jsonl")
	mountStrataFlags(t, mnt, []string{"--trace", file}, writableOpt([]string{lower}, dirs[0], dirs[1]))

	f, err := os.OpenFile(filepath.Join(mnt, "etc/motd"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("more\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Remove(filepath.Join(mnt, "etc/hostname")))
	require.NoError(t, os.Rename(filepath.Join(mnt, "var"), filepath.Join(mnt, "srv")))
	require.NoError(t, os.Mkdir(filepath.Join(mnt, "var"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "scratch"), []byte("x"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(mnt, "scratch")))

	evs := readTrace(t, file)
	assert.Equal(t, []string{
		"copy-up-start etc upper",
		"copy-up-end etc none 0B",
		"copy-up-start etc/motd upper",
		"copy-up-end etc/motd data 6B",
		"whiteout etc/hostname upper overlay whiteout (char 0/0)",
		"copy-up-start var upper",
		"copy-up-end var none 0B",
		"rename var -> srv redirect /var",
		"whiteout var upper overlay whiteout (char 0/0)",
		"create var upper",
		"opaque var upper opaque dir (overlay.opaque xattr)",
		"create scratch upper",
		"remove scratch upper",
	}, decisions(evs))
	var lookups int
	for _, ev := range evs {
		if ev.Op == "lookup" {
			lookups++
			assert.NotEmpty(t, ev.Result, "lookup %s", ev.Path)
		}
	}
	assert.NotZero(t, lookups, "the kernel's lookups are traced")

	// Off: nothing more is written. On again, to another file: numbering
	// starts afresh.
	res := runStrata(t, "trace", "off", mnt)
	require.Equal(t, 0, res.ExitCode, res.Stderr)
	before, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(mnt, "etc/motd")))
	after, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "the trace was written to after 'strata trace off'")

	again := filepath.Join(tmp, "again.jsonl")
	res = runStrata(t, "trace", "on", mnt, again)
	require.Equal(t, 0, res.ExitCode, res.Stderr)
	require.NoError(t, os.Rename(filepath.Join(mnt, "srv"), filepath.Join(mnt, "srv2")))
	assert.Equal(t, []string{"rename srv -> srv2 redirect /var"}, decisions(readTrace(t, again)),
		"a directory renamed twice keeps its first redirect")

	res = runStrata(t, "trace", "on", mnt, filepath.Join(mnt, "trace.jsonl"))
	assert.NotEqual(t, 0, res.ExitCode)
	assert.Contains(t, res.Stderr, "may not be inside the mount it traces")
	assert.NoFileExists(t, filepath.Join(mnt, "trace.jsonl"))
	res = runStrata(t, "trace", "on", filepath.Join(tmp, "not-a-mount"), again)
	assert.NotEqual(t, 0, res.ExitCode)
	assert.Contains(t, res.Stderr, "is not inside a strata mount")
}
