package branches

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The options fuse-overlayfs accepts (its main.c option table and the
// arguments its fuse_opt_proc lets through), the FUSE tuning options of
// libfuse, and the options mount(8) and mount.fuse3 hand a helper from
// /etc/fstab. With these strata is a drop-in mount_program for
// containers/storage. Each one is either honoured, accepted with a warning
// because it changes nothing a user of the mount can see, or refused with
// the reason: see compatTable.

// Compat holds what the compatibility options asked for. The zero value
// asks for nothing.
type Compat struct {
	// UIDMap and GIDMap (uidmapping=, gidmapping=) translate owners
	// between the branches and the mount, at run time: nothing on disk
	// is chowned.
	UIDMap, GIDMap IDMap
	// SquashUID and SquashGID, when set (squash_to_uid=, squash_to_gid=,
	// squash_to_root), are the owner every object shows; changing the
	// squashed owner succeeds and changes nothing.
	SquashUID, SquashGID *uint32
	// StaticNlink makes directories report one link (static_nlink).
	StaticNlink bool
	// NoACL (noacl) leaves POSIX ACLs off the FUSE connection, as
	// fuse-overlayfs does: the kernel checks mode bits only.
	NoACL bool
	// Timeout, when set (timeout=), is how long the kernel may cache
	// names and attributes.
	Timeout *time.Duration
	// Context is an SELinux label for every object (context=); the mount
	// hands it to the kernel where SELinux is enabled.
	Context string
	// NoRedirects (redirect_dir=off or follow) refuses to rename a
	// directory that has lower copies (EXDEV), as kernel overlay and
	// fuse-overlayfs do, instead of writing an overlay.redirect.
	NoRedirects bool
	// Debug (the "debug" option) logs every FUSE request.
	Debug bool
	// Ignored lists the options accepted with no effect, each with the
	// reason, for the one warning the command prints.
	Ignored []string
}

// IDRange maps Len ids from From (as stored in the branches) to To (as
// the mount shows them).
type IDRange struct {
	From, To, Len uint32
}

// IDMap is a uidmapping= or gidmapping= list; an empty map changes
// nothing.
type IDMap []IDRange

// ToMount maps an id stored in a branch to the id the mount shows, and
// reports whether a range covers it (fuse-overlayfs shows the overflow id
// for ids no range covers).
func (m IDMap) ToMount(id uint32) (uint32, bool) { return m.translate(id, true) }

// ToBranch maps an id of the mount (a caller's, a chown's) back to the id
// stored in a branch, and reports whether a range covers it.
func (m IDMap) ToBranch(id uint32) (uint32, bool) { return m.translate(id, false) }

func (m IDMap) translate(id uint32, toMount bool) (uint32, bool) {
	if len(m) == 0 {
		return id, true
	}
	for _, r := range m {
		from, to := r.From, r.To
		if !toMount {
			from, to = to, from
		}
		if id >= from && id-from < r.Len {
			return to + (id - from), true
		}
	}
	return 0, false
}

// parseIDMap reads "FROM:TO:LEN[:FROM:TO:LEN...]" (containers/storage
// writes "CONTAINER:HOST:SIZE" triples joined by colons).
func parseIDMap(kv, val string) (IDMap, error) {
	fields := strings.Split(val, ":")
	if len(fields)%3 != 0 {
		return nil, &OptionError{Option: kv, Reason: "needs FROM:TO:LEN triples (for example 0:100000:65536)"}
	}
	var m IDMap
	for i := 0; i < len(fields); i += 3 {
		var n [3]uint32
		for j := range n {
			v, err := strconv.ParseUint(fields[i+j], 10, 32)
			if err != nil {
				return nil, &OptionError{Option: kv, Reason: fmt.Sprintf("%q is not an id or length", fields[i+j])}
			}
			n[j] = uint32(v)
		}
		r := IDRange{From: n[0], To: n[1], Len: n[2]}
		if r.Len == 0 || uint64(r.From)+uint64(r.Len) > 1<<32 || uint64(r.To)+uint64(r.Len) > 1<<32 {
			return nil, &OptionError{Option: kv, Reason: fmt.Sprintf("range %d:%d:%d is empty or runs past the largest id", r.From, r.To, r.Len)}
		}
		m = append(m, r)
	}
	return m, nil
}

// compatHandler applies one compatibility option; val is unquoted.
type compatHandler func(c *Compat, o *Options, kv, val string, hasVal bool) error

// compatTable is every compatibility key. Options are data, as in
// optionTable.
var compatTable = map[string]compatHandler{
	// fuse-overlayfs's own options, honoured.
	"uidmapping":     idMapOption(func(c *Compat) *IDMap { return &c.UIDMap }),
	"gidmapping":     idMapOption(func(c *Compat) *IDMap { return &c.GIDMap }),
	"squash_to_uid":  squashOption(func(c *Compat) **uint32 { return &c.SquashUID }),
	"squash_to_gid":  squashOption(func(c *Compat) **uint32 { return &c.SquashGID }),
	"squash_to_root": flagOption(func(c *Compat) { zero := uint32(0); c.SquashUID, c.SquashGID = &zero, &zero }),
	"static_nlink":   flagOption(func(c *Compat) { c.StaticNlink = true }),
	"debug":          flagOption(func(c *Compat) { c.Debug = true }),
	"timeout":        timeoutOption,
	"context":        contextOption,
	"fsync":          fsyncOption,
	"redirect_dir":   redirectDirOption,
	// Accepted: what they ask for is what strata does anyway.
	"noacl":             flagOption(func(c *Compat) { c.NoACL = true }),
	"noxattrs":          valueOption("0", "strata keeps its whiteouts, opaque markers and redirects in xattrs and serves xattrs through the mount; only noxattrs=0 is supported"),
	"plugins":           valueOption("", "fuse-overlayfs data-source plugins are shared libraries for fuse-overlayfs itself; strata cannot load them"),
	"xattr_permissions": valueOption("0", "keeping owners and modes in xattrs instead of the inode (containers/storage's force_mask) is not supported; remove overlay.force_mask from storage.conf"),
	// Accepted with a warning: they tune performance, not what the mount shows.
	"threaded":         ignoredOption("go-fuse always serves requests in parallel"),
	"fast_ino":         ignoredOption("strata's inode numbers are always stable"),
	"writeback":        ignoredOption("strata does not use the kernel's writeback cache"),
	"metacopy":         metacopyOption,
	"kernel_cache":     ignoredOption("FUSE cache tuning"),
	"splice_read":      ignoredOption("FUSE transfer tuning"),
	"splice_write":     ignoredOption("FUSE transfer tuning"),
	"splice_move":      ignoredOption("FUSE transfer tuning"),
	"max_write":        ignoredOption("strata sets its own FUSE transfer size"),
	"max_read":         ignoredOption("strata sets its own FUSE transfer size"),
	"max_readahead":    ignoredOption("FUSE transfer tuning"),
	"max_idle_threads": ignoredOption("go-fuse manages its threads"),
	"clone_fd":         ignoredOption("go-fuse manages its FUSE device"),
	"lazytime":         ignoredOption("timestamps are the branches'"),
	"nolazytime":       ignoredOption("timestamps are the branches'"),
	// mount(8), mount.fuse3 and fstab bookkeeping: about when and by whom
	// a filesystem is mounted, nothing to the filesystem; accepted quietly.
	"defaults": flagOption(func(*Compat) {}),
	"auto":     flagOption(func(*Compat) {}),
	"noauto":   flagOption(func(*Compat) {}),
	"user":     flagOption(func(*Compat) {}),
	"nouser":   flagOption(func(*Compat) {}),
	"users":    flagOption(func(*Compat) {}),
	"nofail":   flagOption(func(*Compat) {}),
	"_netdev":  flagOption(func(*Compat) {}),
}

// compatOption finds the handler for key: the table, then the x-* and
// comment= options of fstab, which belong to userspace tools.
func compatOption(key string) (compatHandler, bool) {
	if h, ok := compatTable[key]; ok {
		return h, true
	}
	if strings.HasPrefix(key, "x-") || key == "comment" {
		return func(*Compat, *Options, string, string, bool) error { return nil }, true
	}
	return nil, false
}

func flagOption(set func(*Compat)) compatHandler {
	return func(c *Compat, _ *Options, kv, _ string, hasVal bool) error {
		if hasVal {
			return &OptionError{Option: kv, Reason: "takes no value"}
		}
		set(c)
		return nil
	}
}

func idMapOption(field func(*Compat) *IDMap) compatHandler {
	return func(c *Compat, _ *Options, kv, val string, hasVal bool) error {
		if val == "" {
			return &OptionError{Option: kv, Reason: "needs a value"}
		}
		m, err := parseIDMap(kv, val)
		if err != nil {
			return err
		}
		*field(c) = m
		return nil
	}
}

func squashOption(field func(*Compat) **uint32) compatHandler {
	return func(c *Compat, _ *Options, kv, val string, _ bool) error {
		id, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return &OptionError{Option: kv, Reason: "needs a numeric id"}
		}
		v := uint32(id)
		*field(c) = &v
		return nil
	}
}

func timeoutOption(c *Compat, _ *Options, kv, val string, _ bool) error {
	secs, err := strconv.ParseFloat(val, 64)
	if err != nil || secs < 0 || math.IsInf(secs, 0) || math.IsNaN(secs) {
		return &OptionError{Option: kv, Reason: "needs a number of seconds"}
	}
	d := time.Duration(math.Min(secs*float64(time.Second), float64(math.MaxInt64)))
	c.Timeout = &d
	return nil
}

func contextOption(c *Compat, _ *Options, kv, val string, _ bool) error {
	if val == "" {
		return &OptionError{Option: kv, Reason: "needs an SELinux label"}
	}
	c.Context = val
	return nil
}

// fsyncOption: fsync=0 is volatile (fuse-overlayfs's own spelling).
func fsyncOption(_ *Compat, o *Options, kv, val string, _ bool) error {
	switch val {
	case "0":
		o.Volatile = true
	case "1":
	default:
		return &OptionError{Option: kv, Reason: "is fsync=0 or fsync=1"}
	}
	return nil
}

// redirectDirOption takes kernel overlay's values. strata always follows
// redirects, so nofollow cannot be had.
func redirectDirOption(c *Compat, _ *Options, kv, val string, _ bool) error {
	switch val {
	case "on":
		c.NoRedirects = false
	case "off", "follow":
		c.NoRedirects = true
	case "nofollow":
		return &OptionError{Option: kv, Reason: "strata always follows overlay.redirect xattrs in lower branches; use redirect_dir=off or on"}
	default:
		return &OptionError{Option: kv, Reason: "is redirect_dir=on, off or follow"}
	}
	return nil
}

// valueOption accepts the one value that asks for what strata does, and
// refuses the others with why.
func valueOption(accepted, refusal string) compatHandler {
	return func(_ *Compat, _ *Options, kv, val string, _ bool) error {
		if val != accepted {
			return &OptionError{Option: kv, Reason: refusal}
		}
		return nil
	}
}

// metacopyOption: metacopy=off is what strata does; metacopy=on changes
// only how a copy-up is stored, not what the mount shows.
func metacopyOption(c *Compat, o *Options, kv, val string, hasVal bool) error {
	switch val {
	case "off":
		return nil
	case "on":
		return ignoredOption("strata copies data with metadata on copy-up; the merged view is the same")(c, o, kv, val, hasVal)
	}
	return &OptionError{Option: kv, Reason: "is metacopy=on or metacopy=off"}
}

func ignoredOption(why string) compatHandler {
	return func(c *Compat, _ *Options, kv, _ string, _ bool) error {
		c.Ignored = append(c.Ignored, fmt.Sprintf("%s (%s)", kv, why))
		return nil
	}
}

// CompatKeys lists the compatibility keys, sorted, for help texts and tests.
func CompatKeys() []string {
	keys := make([]string, 0, len(compatTable))
	for k := range compatTable {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
