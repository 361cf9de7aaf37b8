package main

import (
	"fmt"
	"io"
	"strings"
)

// The targets of issue #5, evaluated for strata with default options.
const (
	targetSystem        = "strata"
	seqReadMinVsKernel  = 0.9 // warm sequential read, speed relative to kernel overlay
	metadataMinVsFuseOv = 1.5 // metadata workloads, speed relative to fuse-overlayfs
	copyUpMaxVsKernel   = 1.2 // copy-up time relative to kernel overlay
	lookupMaxDeepVsOne  = 2.0 // lookup time through the most branches relative to one branch
	rssMaxBytes         = 200e6
)

// verdict is one evaluated target line.
type verdict struct {
	target string
	met    bool
	known  bool // false: not measured, detail says why
	detail string
}

func printTargets(w io.Writer, fx *fixture, t *rows, mode string) {
	fmt.Fprintf(w, "\ntargets (issue #5), for %s with default options", targetSystem)
	if mode != "full" {
		fmt.Fprint(w, " (quick sizes: indicative only, the targets are set for full sizes)")
	}
	fmt.Fprintln(w, ":")
	var vs []verdict
	vs = append(vs, seqReadTarget(t))
	vs = append(vs, metadataTargets(t)...)
	vs = append(vs, unionfsTarget(t))
	vs = append(vs, copyUpTarget(t))
	vs = append(vs, lookupTarget(fx, t))
	vs = append(vs, rssTargets(fx, t)...)
	width := 0
	for _, v := range vs {
		width = max(width, len(v.target))
	}
	for _, v := range vs {
		state := "not measured"
		if v.known && v.met {
			state = "met"
		} else if v.known {
			state = "NOT met"
		}
		fmt.Fprintf(w, "  %-*s  %-12s  %s\n", width, v.target, state, v.detail)
	}
}

// compare evaluates r for strata against other: speed ratio >= min.
func compare(r *row, other string, min float64, target string) verdict {
	v := verdict{target: target}
	s, okS := r.value(targetSystem)
	o, okO := r.value(other)
	if !okS || !okO {
		v.detail = fmt.Sprintf("%s: %s, %s: %s", targetSystem, cellText(r, targetSystem), other, cellText(r, other))
		return v
	}
	sp := r.speedup(s, o)
	v.known, v.met = true, sp >= min
	v.detail = fmt.Sprintf("%s vs %s %s = %s", formatValue(r.kind, s), other, formatValue(r.kind, o), formatRatio(sp))
	return v
}

func cellText(r *row, sys string) string {
	c := r.cells[sys]
	switch {
	case c == nil:
		return "not run"
	case c.mark != "":
		return c.mark
	}
	return formatValue(r.kind, c.value)
}

func seqReadTarget(t *rows) verdict {
	return compare(t.seqReadWarm, "kernel", seqReadMinVsKernel, fmt.Sprintf("seq read warm >= %.1fx kernel", seqReadMinVsKernel))
}

func metadataTargets(t *rows) []verdict {
	var vs []verdict
	for _, r := range t.all() {
		if r.metadata {
			vs = append(vs, compare(r, "fuse-overlayfs", metadataMinVsFuseOv,
				fmt.Sprintf("%s >= %.1fx fuse-overlayfs", r.name, metadataMinVsFuseOv)))
		}
	}
	return vs
}

// unionfsTarget: strata is never slower than unionfs-fuse on any workload
// both measured (memory is not a speed, so its rows are left out).
func unionfsTarget(t *rows) verdict {
	v := verdict{target: "never slower than unionfs-fuse"}
	var slower []string
	compared, worst, worstName := 0, 0.0, ""
	for _, r := range t.all() {
		s, okS := r.value(targetSystem)
		u, okU := r.value("unionfs-fuse")
		if r.kind == memory || !okS || !okU {
			continue
		}
		compared++
		sp := r.speedup(s, u)
		if sp < 1 {
			slower = append(slower, fmt.Sprintf("%s %s", r.name, formatRatio(sp)))
		}
		if worstName == "" || sp < worst {
			worst, worstName = sp, r.name
		}
	}
	if compared == 0 {
		v.detail = "no workload measured on both"
		return v
	}
	v.known, v.met = true, len(slower) == 0
	if v.met {
		v.detail = fmt.Sprintf("%d workloads compared; closest: %s %s", compared, worstName, formatRatio(worst))
	} else {
		v.detail = fmt.Sprintf("slower on %d of %d:\n      %s", len(slower), compared, strings.Join(slower, "\n      "))
	}
	return v
}

func copyUpTarget(t *rows) verdict {
	v := compare(t.copyUp, "kernel", 1/copyUpMaxVsKernel, fmt.Sprintf("copy-up time <= %.1fx kernel", copyUpMaxVsKernel))
	if v.known {
		s, _ := t.copyUp.value(targetSystem)
		k, _ := t.copyUp.value("kernel")
		v.detail = fmt.Sprintf("%s vs kernel %s = %.2fx the time", formatValue(duration, s), formatValue(duration, k), s/k)
	}
	return v
}

// lookupTarget compares strata with itself: the time of a lookup through
// the deepest stack measured against the time through one branch.
func lookupTarget(fx *fixture, t *rows) verdict {
	depths := fx.sz.depths
	one, deep := t.lookup[0], t.lookup[len(t.lookup)-1]
	v := verdict{target: fmt.Sprintf("lookup via %d <= %.0fx time via %d", depths[len(depths)-1], lookupMaxDeepVsOne, depths[0])}
	r1, ok1 := one.value(targetSystem)
	rN, okN := deep.value(targetSystem)
	if !ok1 || !okN {
		v.detail = fmt.Sprintf("via %d: %s, via %d: %s", depths[0], cellText(one, targetSystem), depths[len(depths)-1], cellText(deep, targetSystem))
		return v
	}
	ratio := r1 / rN // rates, so this is time(deep) / time(one)
	v.known, v.met = true, ratio <= lookupMaxDeepVsOne
	v.detail = fmt.Sprintf("%s vs %s = %.2fx the time", formatValue(rate, rN), formatValue(rate, r1), ratio)
	return v
}

func rssTargets(fx *fixture, t *rows) []verdict {
	walk := verdict{target: fmt.Sprintf("RSS after walking %d files <= %.0f MB", fx.sz.walkFiles, rssMaxBytes/1e6)}
	drop := verdict{target: "RSS lower after drop_caches"}
	w, okW := t.rssWalk.value(targetSystem)
	d, okD := t.rssDropped.value(targetSystem)
	if !okW || !okD {
		walk.detail = cellText(t.rssWalk, targetSystem)
		drop.detail = cellText(t.rssDropped, targetSystem)
		return []verdict{walk, drop}
	}
	walk.known, walk.met = true, w <= rssMaxBytes
	walk.detail = formatValue(memory, w)
	drop.known, drop.met = true, d < w
	drop.detail = fmt.Sprintf("%s after walk, %s after drop_caches+%v", formatValue(memory, w), formatValue(memory, d), fx.sz.forgetWait)
	return []verdict{walk, drop}
}
