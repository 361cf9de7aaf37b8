package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func report(w io.Writer, fx *fixture, t *rows, systems []system, mode string, took time.Duration) {
	printHeader(w, systems, mode, took)
	var main, trace []system
	for _, s := range systems {
		if s.trace {
			trace = append(trace, s)
		} else {
			main = append(main, s)
		}
	}
	printTable(w, t, main)
	printLegend(w, fx)
	printTraceCost(w, t, trace)
	notesMu.Lock()
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	notesMu.Unlock()
	printTargets(w, fx, t, mode)
}

func printHeader(w io.Writer, systems []system, mode string, took time.Duration) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	var sf unix.Statfs_t
	_ = unix.Statfs(tmpRoot, &sf)
	fsType := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs"}[int64(sf.Type)]
	if fsType == "" {
		fsType = fmt.Sprintf("0x%x", sf.Type)
	}
	fmt.Fprintf(w, "strata-bench (%s sizes), %s\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "command: %s\n", strings.Join(os.Args, " "))
	fmt.Fprintf(w, "machine: Linux %s, %d CPUs, %s, backing fs %s\n", unix.ByteSliceToString(u.Release[:]), runtime.NumCPU(), runtime.Version(), fsType)
	fmt.Fprintf(w, "versions: strata: %s; fuse-overlayfs: %s; unionfs-fuse: %s; fio: %s\n",
		versionOf(*flagStrata, "version"), versionOf("fuse-overlayfs", "--version"),
		versionOf(system{daemon: "unionfs-fuse"}.binary(), "--version"), versionOf("fio", "--version"))
	for _, s := range systems {
		if s.about != "" {
			fmt.Fprintf(w, "%s: %s\n", s.name, s.about)
		}
	}
	fmt.Fprintf(w, "median of %d runs; (x) = speed relative to kernel overlay, >1 = faster; total %s\n\n", *flagRuns, took.Round(time.Second))
}

func versionOf(bin string, args ...string) string {
	if _, err := exec.LookPath(bin); err != nil {
		return "not installed"
	}
	out, _ := exec.Command(bin, args...).CombinedOutput()
	name := strings.TrimSuffix(filepath.Base(bin), "-fuse")
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, name) && strings.Contains(strings.ToLower(l), "version") {
			return l
		}
	}
	return firstLine(out, nil)
}

// printTable prints one line per row, one column per system; each value is
// followed by its speed relative to kernel overlay where both exist.
func printTable(w io.Writer, t *rows, systems []system) {
	header := []string{"workload"}
	for _, s := range systems {
		header = append(header, s.name)
	}
	table := [][]string{header}
	for _, r := range t.all() {
		line := []string{r.name}
		kern, hasKern := r.value("kernel")
		for _, s := range systems {
			c := r.cells[s.name]
			switch {
			case c == nil:
				line = append(line, "-")
			case c.mark != "":
				line = append(line, c.mark)
			case hasKern && kern > 0 && !s.isKernel():
				line = append(line, fmt.Sprintf("%s (%s)", formatValue(r.kind, c.value), formatRatio(r.speedup(c.value, kern))))
			default:
				line = append(line, formatValue(r.kind, c.value))
			}
		}
		table = append(table, line)
	}
	printAligned(w, table, "", true)
}

func printLegend(w io.Writer, fx *fixture) {
	sz := fx.sz
	fmt.Fprintf(w, `
workloads: the union is three layers with a writable upper, freshly mounted per system.
  seq read: 1 MiB reads of a bottom-layer file; warm after one untimed pass, cold after sync + drop_caches (3) before each run.
  rand read: fio, psync, 4 KiB, direct=0, invalidate=0, fixed seed, time-based, over the bottom-layer file after the seq reads.
  seq write: a new file in the upper, 1 MiB writes, no fsync.
  stat: lstat of every file of a tree spread over 3 layers, after one untimed pass.
  readdir: one full listing of a merged dir, after one untimed listing.
  create+unlink: open(O_CREAT)+close then unlink, op/s counts both.
  untar: the system tar -xf of a %d-file tarball into a new dir of the union per run.
  find: find(1) over the first extracted tree, on the mount that extracted it, and on a fresh mount of the same upper
    after drop_caches (3) before each run (plain: drop_caches only).
  copy-up: open(O_APPEND)+1-byte write+close of the bottom file, on a fresh mount with a fresh upper per run.
  lookup: lstat of %d distinct bottom-layer files under a dir present in every branch of a read-only stack, on a fresh
    mount per run where only that dir was looked up, untimed (plain: the bottom dir, warm).
  daemon RSS: VmRSS of the FUSE daemon (our foreground child, checked to hold /dev/fuse) after lstat of every entry of
    a %d-file tree over 3 layers on a fresh read-only mount, then after drop_caches (2) and %v for the FORGETs.
`, sz.untarFiles, sz.lookups, sz.walkFiles, sz.forgetWait)
}

// printTraceCost prints the trace variants side by side (issue #8): what
// the trace hooks cost while tracing is off (strata-off) against a build
// without them (strata-notrace), and what writing the trace costs
// (strata-trace). Each cell is the median with the range of the runs;
// "runs overlap" says whether strata-off's and strata-notrace's runs
// overlap, i.e. whether the hooks' cost is within the run-to-run noise.
func printTraceCost(w io.Writer, t *rows, trace []system) {
	if len(trace) == 0 {
		return
	}
	const base, offSystem = "strata-notrace", "strata-off"
	fmt.Fprintf(w, "\ntrace cost (issue #8): metadata workloads, median [fastest..slowest run] (time relative to %s's median)\n", base)
	var syss []string
	for _, s := range trace {
		syss = append(syss, s.name)
	}
	table := [][]string{append(append([]string{"workload"}, syss...), offSystem+" vs "+base)}
	overlapAll, compared := true, 0
	for _, r := range t.all() {
		if !r.metadata {
			continue
		}
		b, hasBase := r.value(base)
		line := []string{r.name}
		for _, sys := range syss {
			v, ok := r.value(sys)
			if !ok {
				line = append(line, cellText(r, sys))
				continue
			}
			lo, hi, _ := r.spread(sys)
			if r.lowerIsBetter() {
				lo, hi = hi, lo
			}
			c := fmt.Sprintf("%s [%s..%s]", formatValue(r.kind, v), formatValue(r.kind, hi), formatValue(r.kind, lo))
			if hasBase && b > 0 {
				c += fmt.Sprintf(" (%.2f)", 1/r.speedup(v, b))
			}
			line = append(line, c)
		}
		verdict := "-"
		if lo1, hi1, ok1 := r.spread(offSystem); ok1 {
			if lo2, hi2, ok2 := r.spread(base); ok2 {
				compared++
				if lo1 <= hi2 && lo2 <= hi1 {
					verdict = "runs overlap"
				} else {
					verdict = "apart"
					overlapAll = false
				}
			}
		}
		table = append(table, append(line, verdict))
	}
	printAligned(w, table, "  ", false)
	if compared > 0 {
		if overlapAll {
			fmt.Fprintf(w, "  trace off costs nothing measurable: on all %d workloads the runs of %s and %s overlap\n", compared, offSystem, base)
		} else {
			fmt.Fprintf(w, "  on some workloads the runs of %s and %s do not overlap (see \"apart\")\n", offSystem, base)
		}
	}
}

// printAligned prints rows of cells in columns, the first left-aligned
// and the others right-aligned; rule draws a line under the first row.
func printAligned(w io.Writer, table [][]string, indent string, rule bool) {
	width := map[int]int{}
	for _, line := range table {
		for i, c := range line {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for li, line := range table {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range line {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if rule && li == 0 {
			total := len(indent) - 2
			for _, x := range width {
				total += x + 2
			}
			fmt.Fprintln(w, strings.Repeat("-", total))
		}
	}
}
