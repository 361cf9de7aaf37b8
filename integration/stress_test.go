package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/testutil"
)

// TestStress runs worker processes that change and read one union at once
// for a while, then checks that nothing was lost or leaked:
//
//   - every worker owns a directory of files (2 lowers with overlapping
//     names and a hard-link pair, an upper with copies and whiteouts) and
//     does a seeded random sequence of open, read, write, append, pwrite,
//     truncate, ftruncate, shared-mmap write + msync, rename, unlink, link
//     and chmod on them, checking every result against a model at once;
//   - between its own operations each worker holds read descriptors and
//     read-only shared mappings on the files the other workers are about to
//     change, reads them as tail -f does, and keeps them across the copy-ups;
//   - at the end the union shows each worker's files exactly as the model
//     says (names, content, mode, link count, hard-link groups), the mount
//     unmounts cleanly, the lower branches are byte for byte as they were,
//     and kernel overlay, given the same sequences on a copy of the same
//     branches, ends in the same state (the model's own check).
//
// It runs twice: with strata's default options (FUSE passthrough on) and
// with --passthrough=false.
//
// STRESS_DURATION (a Go duration, default 6s) is the time of stress on
// each mount; STRESS_MODE=passthrough or no-passthrough runs one mount
// alone (make stress: passthrough); STRESS_SEED repeats a run's operation
// sequences (the interleaving is the scheduler's); STRESS_WORKERS sets the
// number of worker processes (default 3).
func TestStress(t *testing.T) {
	testutil.NeedFUSE(t)
	cfg := stressConfigFromEnv(t)
	modes := []struct {
		name  string
		flags []string
	}{
		{"passthrough", nil},
		{"no-passthrough", []string{"--passthrough=false"}},
	}
	if only := os.Getenv("STRESS_MODE"); only != "" {
		i := 0
		for i < len(modes) && modes[i].name != only {
			i++
		}
		require.Less(t, i, len(modes), "STRESS_MODE=%s: passthrough or no-passthrough", only)
		modes = modes[i : i+1]
	}
	// Each mount's stress, its kernel replay (no longer than the stress)
	// and a minute of setup and checks.
	need := time.Duration(len(modes))*2*cfg.Duration + time.Minute
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < need {
		t.Fatalf("STRESS_DURATION=%v needs a go test -timeout of at least %v", cfg.Duration, need)
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { runStress(t, cfg, mode.name, mode.flags) })
	}
}

type stressConfig struct {
	Seed     int64
	Duration time.Duration // per mount
	Shape    stressShape
}

func stressConfigFromEnv(t *testing.T) stressConfig {
	cfg := stressConfig{Seed: time.Now().UnixNano() % 1_000_000_000, Duration: 6 * time.Second}
	if s := os.Getenv("STRESS_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "STRESS_SEED")
		cfg.Seed = seed
	}
	if s := os.Getenv("STRESS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, "STRESS_DURATION (a Go duration: 30s, 10m)")
		cfg.Duration = d
	}
	workers := 3
	if s := os.Getenv("STRESS_WORKERS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "STRESS_WORKERS")
		require.GreaterOrEqual(t, n, 1, "STRESS_WORKERS")
		workers = n
	}
	// The window moves on one pool name every Step operations, so that
	// lower copies keep coming into play all along (a file is copied up
	// once). A worker does up to some 800 operations a second on 2 cores;
	// past the pool's end the window wraps around onto copied-up files.
	expectedOps := int(cfg.Duration.Seconds() * 800)
	pool := min(max(expectedOps/12, 256), 4096)
	cfg.Shape = stressShape{Workers: workers, Pool: pool, Window: 4, Step: max(12, expectedOps/pool)}
	return cfg
}

func runStress(t *testing.T, cfg stressConfig, mode string, flags []string) {
	testutil.NeedFUSE(t)
	tmp := t.TempDir()
	layers := stressLayers(cfg.Shape)
	dirs := buildLayers(t, filepath.Join(tmp, "branches"), layers)
	upper, lowers := dirs[0], dirs[1:]
	work, mnt := filepath.Join(tmp, "work"), filepath.Join(tmp, "mnt")
	testutil.Mkdirs(t, work, mnt)
	before := snapshotBranches(t, lowers)
	// The kernel replay's copy of the branches, as they are before the run.
	kbranches := filepath.Join(tmp, "kernel-branches")
	if out, err := exec.Command("cp", "-a", filepath.Join(tmp, "branches"), kbranches).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}

	// The daemon's log, shown when the run fails: an error the daemon had
	// no errno for (EIO) says there what it was.
	daemonLog := filepath.Join(tmp, "strata.log")
	t.Cleanup(func() {
		if data, err := os.ReadFile(daemonLog); err == nil && len(data) > 0 && t.Failed() {
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			t.Logf("the daemon's log (last %d lines):\n%s", min(len(lines), 40), strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	mountStrataFlags(t, mnt, append(append([]string(nil), flags...), "--log", daemonLog), writableOpt(lowers, upper, work))
	board := filepath.Join(tmp, "board")
	require.NoError(t, os.WriteFile(board, make([]byte, 8*cfg.Shape.Workers), 0o644))
	jobs := make([]stressJob, cfg.Shape.Workers)
	deadline := time.Now().Add(cfg.Duration)
	for w := range jobs {
		jobs[w] = stressJob{Shape: cfg.Shape, Worker: w, Seed: cfg.Seed, Root: mnt, Deadline: deadline, Board: board,
			Result: filepath.Join(tmp, fmt.Sprintf("result-%d.json", w))}
	}
	results := runStressWorkers(t, jobs, cfg.Duration+2*time.Minute)
	t.Logf("stress %s: %s", mode, stressSummary(cfg, results))
	reportStressErrors(t, "strata "+mode, results)
	ops := make([]int64, len(results)) // -1: the worker reported nothing
	for w, r := range results {
		ops[w] = -1
		if r != nil {
			ops[w] = r.Ops
		}
	}
	checkStressTree(t, "strata "+mode, mnt, cfg, ops)

	if res := runStrata(t, "umount", mnt); res.ExitCode != 0 {
		t.Errorf("strata umount %s: exit %d: %s", mnt, res.ExitCode, res.Stderr)
	}
	unmountAndWait(t, mnt, true)
	assertBranchesUnchanged(t, before)

	t.Run("kernel-replay", func(t *testing.T) {
		requireKernelOverlay(t)
		kdirs := make([]string, len(dirs))
		for i, d := range dirs {
			kdirs[i] = filepath.Join(kbranches, filepath.Base(d))
		}
		kwork, kmnt := filepath.Join(tmp, "kernel-work"), filepath.Join(tmp, "kernel-mnt")
		testutil.Mkdirs(t, kwork, kmnt)
		// index=on keeps a copied-up lower hard link with its other names
		// (one inode, the true link count), as strata does.
		mountKernelOverlayRW(t, kmnt, kdirs[1:], kdirs[0], kwork, "index=on")
		var replay []stressJob
		for w, job := range jobs {
			if ops[w] <= 0 {
				continue // nothing to replay
			}
			job.Root, job.Board, job.Ops = kmnt, "", ops[w]
			job.Result = filepath.Join(tmp, fmt.Sprintf("kernel-result-%d.json", w))
			replay = append(replay, job)
		}
		kres := runStressWorkers(t, replay, cfg.Duration+2*time.Minute)
		reportStressErrors(t, "kernel overlay replay", kres)
		checkStressTree(t, "kernel overlay replay", kmnt, cfg, ops)
	})
	if t.Failed() {
		t.Logf("reproduce the operation sequences with STRESS_SEED=%d STRESS_WORKERS=%d", cfg.Seed, cfg.Shape.Workers)
	}
}

// runStressWorkers runs one process per job and returns their results
// (nil for a worker that reported none, which is a test error).
func runStressWorkers(t *testing.T, jobs []stressJob, timeout time.Duration) []*stressResult {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results := make([]*stressResult, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		data, err := json.Marshal(job)
		require.NoError(t, err)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), stressJobEnv+"="+string(data))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 5 * time.Second
		require.NoError(t, cmd.Start(), "starting worker %d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			if ctx.Err() != nil {
				t.Errorf("worker %d did not finish within %v: %v\n%s", i, timeout, err, out.String())
				return
			}
			if err != nil {
				t.Errorf("worker %d: %v\n%s", i, err, out.String())
				return
			}
			var res stressResult
			data, err := os.ReadFile(job.Result)
			if err == nil {
				err = json.Unmarshal(data, &res)
			}
			if err != nil {
				t.Errorf("worker %d: no result: %v\n%s", i, err, out.String())
				return
			}
			results[i] = &res
		}()
	}
	wg.Wait()
	return results
}

// stressSummary is one line: operations per kind, expected errors, seed.
func stressSummary(cfg stressConfig, results []*stressResult) string {
	kinds, expected := map[string]int64{}, map[string]int64{}
	var total int64
	for _, r := range results {
		if r == nil {
			continue
		}
		total += r.Ops
		for k, n := range r.Kinds {
			kinds[k] += n
		}
		for k, n := range r.Expected {
			expected[k] += n
		}
	}
	return fmt.Sprintf("seed=%d workers=%d duration=%v pool=%d step=%d ops=%d [%s] expected errors [%s]; STRESS_SEED=%d repeats the sequences",
		cfg.Seed, cfg.Shape.Workers, cfg.Duration, cfg.Shape.Pool, cfg.Shape.Step, total, joinCounts(kinds), joinCounts(expected), cfg.Seed)
}

func joinCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func reportStressErrors(t *testing.T, what string, results []*stressResult) {
	t.Helper()
	for _, r := range results {
		if r == nil || r.NErrors == 0 {
			continue
		}
		t.Errorf("%s: worker %d: %d unexpected results in %d operations [%s]; the first of each:\n  %s",
			what, r.Worker, r.NErrors, r.Ops, joinCounts(r.ByClass), strings.Join(r.Errors, "\n  "))
	}
}

// checkStressTree compares each worker directory under root with the
// model after that worker's ops[w] operations.
func checkStressTree(t *testing.T, what, root string, cfg stressConfig, ops []int64) {
	t.Helper()
	var wantTop []string
	for w := 0; w < cfg.Shape.Workers; w++ {
		wantTop = append(wantTop, fmt.Sprintf("w%d", w))
	}
	require.Equal(t, wantTop, testutil.ReadDirNames(t, root), "%s: the union's root", what)
	for w := 0; w < cfg.Shape.Workers; w++ {
		if ops[w] < 0 {
			continue // its failure is reported
		}
		want := stressExpected(cfg.Shape, cfg.Seed, w, ops[w])
		got := stressDirState(t, filepath.Join(root, fmt.Sprintf("w%d", w)))
		if diff := testutil.DiffMaps(want, got); len(diff) > 0 {
			t.Errorf("%s: w%d after %d operations differs from the model in %d names:\n  %s",
				what, w, ops[w], len(diff), capLines(diff, 20, "\n  "))
		}
	}
}

// stressDirState reads one worker directory (regular files only) in the
// form of stressModel.state.
func stressDirState(t *testing.T, dir string) map[string]stressFileState {
	t.Helper()
	out := map[string]stressFileState{}
	byIno := map[uint64][]string{}
	inos := map[string]uint64{}
	for _, name := range testutil.ReadDirNames(t, dir) {
		p := filepath.Join(dir, name)
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st), "lstat %s", p)
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			out[name] = stressFileState{SHA256: fmt.Sprintf("not a regular file (mode %o)", st.Mode)}
			continue
		}
		out[name] = stressFileState{Size: st.Size, SHA256: testutil.HashFile(t, p), Perm: st.Mode & 0o7777, Nlink: uint64(st.Nlink)}
		byIno[st.Ino] = append(byIno[st.Ino], name)
		inos[name] = st.Ino
	}
	for name, ino := range inos {
		names := byIno[ino]
		sort.Strings(names)
		s := out[name]
		s.Links = strings.Join(names, ",")
		out[name] = s
	}
	return out
}
