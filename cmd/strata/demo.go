package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/unionfs"
	"github.com/strata-fs/strata/whiteout"
)

// demoLayer is one layer of the demo stack, described as data.
type demoLayer struct {
	dir, about string
	build      func(root string) error
}

// The demo stack, top first. Each layer teaches one thing; the comments in
// the files say what to look for.
var demoLayers = []demoLayer{
	{"top", "overlay format: whiteouts are char devices 0/0, opaque dirs carry the overlay.opaque xattr", func(r string) error {
		return errors.Join(
			writeFile(r, "etc/hostname", "top-host\n"),
			mkWhiteout(r, "etc/old.conf", whiteout.Overlay),
			mkWhiteout(r, "docs", whiteout.Overlay),
			writeFile(r, "logs/today.log", "only today's log survives\n"),
			mkOpaque(r, "logs", whiteout.Overlay),
		)
	}},
	{"middle", "aufs/OCI format: whiteouts are .wh.<name> files, an opaque dir holds .wh..wh..opq", func(r string) error {
		return errors.Join(
			writeFile(r, "etc/motd", "welcome from the middle layer\n"),
			mkWhiteout(r, "app/data/b.txt", whiteout.Aufs),
			writeFile(r, "app/data/c.txt", "c, added in the middle\n"),
			writeFile(r, "var/cache/fresh", "the only cache entry left\n"),
			mkOpaque(r, "var/cache", whiteout.Aufs),
			writeFile(r, "app/config", "a file where the base has a directory\n"),
		)
	}},
	{"base", "plain files: what an image's first layer looks like", func(r string) error {
		return errors.Join(
			writeFile(r, "etc/hostname", "base-host\n"),
			writeFile(r, "etc/motd", "welcome from base\n"),
			writeFile(r, "etc/old.conf", "deprecated setting\n"),
			writeFile(r, "app/data/a.txt", "a, from base\n"),
			writeFile(r, "app/data/b.txt", "b, from base\n"),
			writeFile(r, "app/config/defaults.ini", "[base]\n"),
			writeFile(r, "docs/readme.txt", "old docs\n"),
			writeFile(r, "var/cache/stale", "stale cache\n"),
			writeFile(r, "logs/2020.log", "an old log\n"),
			os.Symlink("hostname", filepath.Join(r, "etc/name")),
		)
	}},
}

func cmdDemo(args []string) error {
	fl := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	keep := fl.Bool("keep", false, "leave the layers in place (the mount is always removed)")
	explain := fl.Bool("explain", false, "after each step of the session, show the upper's new markers and 'strata explain' of the paths it touched")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: strata demo [--keep] [--explain]\n\nBuilds a 3-layer union in a temp dir, mounts it, shows which layer serves\nevery path and what hides the rest, runs a session through the mount (read,\nwrite, delete, rename a directory, recreate it), then unmounts and cleans up.\n\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "strata-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	return runDemo(os.Stdout, tmp, demoOptions{explain: *explain, style: styleFor(os.Stdout)})
}

// demoOptions: explain each step of the session as it goes (--explain),
// and the output's style (colour on a terminal).
type demoOptions struct {
	explain bool
	style   style
}

func runDemo(w io.Writer, tmp string, o demoOptions) error {
	out := bufio.NewWriter(w)
	defer out.Flush()
	var lowers []string
	label := map[string]string{}
	fmt.Fprintf(out, "strata demo: three layers, stacked top first, in %s\n\n", tmp)
	for _, l := range demoLayers {
		dir := filepath.Join(tmp, l.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := l.build(dir); err != nil {
			return fmt.Errorf("building layer %s: %w", l.dir, err)
		}
		lowers = append(lowers, dir)
		real, _ := filepath.EvalSymlinks(dir)
		label[real] = l.dir
	}
	mnt, upper, work := filepath.Join(tmp, "merged"), filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")
	for _, d := range []string{mnt, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	realUpper, _ := filepath.EvalSymlinks(upper)
	label[realUpper] = "upper"

	fmt.Fprintln(out, "1. What each layer holds on disk (markers included):")
	for _, l := range demoLayers {
		fmt.Fprintf(out, "\n  %s  -- %s\n", l.dir, l.about)
		if err := printLayer(out, filepath.Join(tmp, l.dir)); err != nil {
			return err
		}
	}

	opts, err := branches.ParseOptions([]string{"lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work})
	if err != nil {
		return err
	}
	stack, err := branches.Open(opts, mnt)
	if err != nil {
		return err
	}
	defer stack.Close()
	server, err := unionfs.Mount(stack, mnt, unionfs.Config{})
	if err != nil {
		return fmt.Errorf("%w (the demo mounts with FUSE: run it as root, or install fuse3 for fusermount3)", err)
	}
	defer func() {
		server.Unmount()
		server.Wait()
	}()

	fmt.Fprintf(out, "\n2. The union, read through the mount at %s\n", mnt)
	fmt.Fprintln(out, "   (as if you typed: strata mount -o lowerdir=top:middle:base,upperdir=upper,workdir=work merged)")
	fmt.Fprintln(out)
	if err := printUnion(out, stack, mnt, label); err != nil {
		return err
	}

	fmt.Fprintln(out, "\n3. What the union hides, and why:")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  PATH\tIN LAYER\tHIDDEN BY")
	for _, b := range stack.Branches() {
		err := walkRaw(b.Path, func(rel string) error {
			why, err := whyHidden(stack, b, rel, label)
			if err != nil || why == "" {
				return err
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", rel, label[b.Path], why)
			return nil
		})
		if err != nil {
			return err
		}
	}
	tw.Flush()
	fmt.Fprintln(out, `
How to read this:
  - A name is served by the topmost layer that has it.
  - A whiteout (char 0/0, or a .wh.<name> file) deletes the name from the layers below it.
  - An opaque directory (overlay.opaque xattr, or a .wh..wh..opq file) hides everything
    below it at that path: only its own entries show.
  - A file over a directory (or a directory over a file) hides the lower one entirely.
  - Directories present in several layers are merged: their entries are combined.
  - The markers themselves never show through the mount.`)

	fmt.Fprintln(out, "\n4. A session through the mount: read, write, delete, rename a directory, recreate it.")
	fmt.Fprintln(out, "   The lower layers never change: every change lands in the empty upper layer,")
	fmt.Fprintln(out, "   copied up first when it concerns a lower object.")
	fmt.Fprintln(out)
	for _, step := range demoSession {
		fmt.Fprintf(out, "  %s %s\n", o.style.paint(ansiBold, "$"), o.style.paint(ansiBold, step.shell))
		before := layerLines(upper)
		if err := step.do(mnt, out); err != nil {
			return fmt.Errorf("%s: %w", step.shell, err)
		}
		if o.explain {
			if err := explainStep(out, stack, upper, before, step.touched, label, o.style); err != nil {
				return fmt.Errorf("%s: %w", step.shell, err)
			}
		}
	}
	fmt.Fprintln(out, "\n  The upper layer now holds:")
	if err := printLayer(out, upper); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n  And the union shows:")
	fmt.Fprintln(out)
	if err := printUnion(out, stack, mnt, label); err != nil {
		return err
	}
	fmt.Fprintln(out, `
  - Reading etc/motd copied nothing: reads are served from the layer that has the file.
  - Appending to etc/motd copied it up: the whole file, then the change, in the upper.
  - Deleting a lower file left a whiteout in the upper; the lower file is still there.
  - rm -r of app/data whited it out; the new app/data is opaque, so a.txt and c.txt
    from below stay hidden.
  - Renaming var (merged from middle and base) wrote a redirect on the new name:
    its lower entries follow it; kernel overlay does the same with redirect_dir=on.
  - Making var again put a new, opaque directory over the whiteout the rename left:
    the old var's entries stay hidden (they live on in srv).`)
	fmt.Fprintf(out, "\nUnmounting %s and removing the layers.\n", mnt)
	return nil
}

// demoSession is step 4: each step as a shell command, as code, and the
// union paths it touches (what --explain explains after it).
var demoSession = []struct {
	shell   string
	do      func(mnt string, out io.Writer) error
	touched []string
}{
	{"cat etc/motd", func(m string, out io.Writer) error {
		b, err := os.ReadFile(filepath.Join(m, "etc/motd"))
		fmt.Fprintf(out, "    %s", b)
		return err
	}, []string{"etc/motd"}},
	{"echo 'edited through the union' >> etc/motd", func(m string, _ io.Writer) error {
		f, err := os.OpenFile(filepath.Join(m, "etc/motd"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("edited through the union\n")
		return errors.Join(err, f.Close())
	}, []string{"etc/motd"}},
	{"rm etc/hostname", func(m string, _ io.Writer) error { return os.Remove(filepath.Join(m, "etc/hostname")) }, []string{"etc/hostname"}},
	{"rm -r app/data && mkdir app/data && echo fresh > app/data/new.txt", func(m string, _ io.Writer) error {
		return errors.Join(os.RemoveAll(filepath.Join(m, "app/data")), os.Mkdir(filepath.Join(m, "app/data"), 0o755),
			os.WriteFile(filepath.Join(m, "app/data/new.txt"), []byte("fresh\n"), 0o644))
	}, []string{"app/data", "app/data/a.txt"}},
	{"mv var srv", func(m string, _ io.Writer) error { return os.Rename(filepath.Join(m, "var"), filepath.Join(m, "srv")) }, []string{"srv", "var"}},
	{"mkdir var", func(m string, _ io.Writer) error { return os.Mkdir(filepath.Join(m, "var"), 0o755) }, []string{"var"}},
}

// explainStep shows what a step did: the upper's entries that appeared,
// changed or went (markers included), then the report of each touched
// path.
func explainStep(w io.Writer, stack *branches.Stack, upper string, before []string, touched []string, label map[string]string, st style) error {
	after := layerLines(upper)
	var diff []string
	for _, l := range after {
		if !slices.Contains(before, l) {
			diff = append(diff, st.paint(ansiGreen, "    + "+strings.TrimSpace(l)))
		}
	}
	for _, l := range before {
		if !slices.Contains(after, l) {
			diff = append(diff, st.paint(ansiRed, "    - "+strings.TrimSpace(l)))
		}
	}
	fmt.Fprintln(w)
	if len(diff) == 0 {
		fmt.Fprintln(w, "    the upper layer: unchanged")
	} else {
		fmt.Fprintln(w, "    the upper layer:")
		fmt.Fprintln(w, strings.Join(diff, "\n"))
	}
	for _, p := range touched {
		r, err := stack.ExplainPath(p)
		if err != nil {
			return err
		}
		fmt.Fprintln(w)
		var b strings.Builder
		renderReport(&b, r, st, label)
		for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			fmt.Fprintln(w, "    "+line)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// layerLines is printLayer's output, a line per entry.
func layerLines(root string) []string {
	var b strings.Builder
	if err := printLayer(&b, root); err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	return strings.FieldsFunc(b.String(), func(r rune) bool { return r == '\n' })
}

// printUnion prints every path of the mount with the layer that serves it.
func printUnion(out io.Writer, stack *branches.Stack, mnt string, label map[string]string) error {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  PATH\tTYPE\tSERVED BY\tCONTENT")
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		if rel == "." {
			return nil
		}
		e, err := stack.Resolve(rel)
		if err != nil {
			return fmt.Errorf("the mount shows %s but the library does not: %w", rel, err)
		}
		served := label[e.Top().Branch.Path]
		if e.IsDir() && len(e.Layers) > 1 {
			var names []string
			for _, l := range e.Layers {
				names = append(names, label[l.Branch.Path])
			}
			served = "merged: " + strings.Join(names, "+")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", rel, branches.TypeName(e.St.Mode), served, contentOf(p, d))
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// printLayer lists one layer's raw tree with what each entry means.
func printLayer(w io.Writer, root string) error {
	return walkAll(root, func(rel string, st *unix.Stat_t) error {
		desc := branches.TypeName(st.Mode)
		name := path.Base(rel)
		switch {
		case whiteout.IsCharWhiteout(st):
			desc = "whiteout (overlay char 0/0): deletes " + rel + " below"
		case name == whiteout.AufsOpaque:
			desc = "opaque marker (aufs): hides " + path.Dir(rel) + "/ below"
		default:
			if target, ok := whiteout.AufsTarget(name); ok {
				desc = "whiteout (aufs): deletes " + path.Join(path.Dir(rel), target) + " below"
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && copiedUp(filepath.Join(root, rel)) {
			desc += ", copied up (its strata.ino xattr keeps the lower file's inode number)"
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			fd, err := unix.Open(filepath.Join(root, rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				m, _ := whiteout.ReadDirMarkers(fd, rel)
				unix.Close(fd)
				if m.Opaque == whiteout.OpaqueOverlay {
					desc += ", opaque (overlay.opaque=y xattr)"
				}
				if m.Redirect != "" {
					desc += ", redirect to /" + m.Redirect + " (overlay.redirect xattr)"
				}
			}
		}
		fmt.Fprintf(w, "    %-28s %s\n", rel, desc)
		return nil
	})
}

// copiedUp reports whether p carries the inode number a copy-up records.
func copiedUp(p string) bool {
	for _, ns := range whiteout.OverlayNamespaces {
		if _, err := unix.Lgetxattr(p, ns+"strata.ino", nil); err == nil {
			return true
		}
	}
	return false
}

// walkAll visits every entry below root (sorted, markers included).
func walkAll(root string, fn func(rel string, st *unix.Stat_t) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		return fn(rel, &st)
	})
}

// walkRaw visits the real objects of a layer (markers skipped).
func walkRaw(root string, fn func(rel string) error) error {
	return walkAll(root, func(rel string, st *unix.Stat_t) error {
		if whiteout.IsReserved(path.Base(rel)) || whiteout.IsCharWhiteout(st) {
			return nil
		}
		return fn(rel)
	})
}

// whyHidden explains why branch b's copy of rel is not part of the union,
// or returns "" when it is (served or merged): the explain report's
// verdict for that branch, in the demo's layer names.
func whyHidden(stack *branches.Stack, b *branches.Branch, rel string, label map[string]string) (string, error) {
	r, err := stack.ExplainPath(rel)
	if err != nil {
		return "", err
	}
	h := r.Branches[b.Index]
	if h.Verdict != "hidden" || h.HiddenBy == nil {
		return "", nil
	}
	cause := h.HiddenBy.What + " in " + label[stack.Branches()[h.HiddenBy.Index].Path]
	if h.HiddenBy.At != r.Path {
		return fmt.Sprintf("its directory %s/ is hidden: %s", h.HiddenBy.At, cause), nil
	}
	return cause, nil
}

// contentOf shows a file's first line, or a symlink's target.
func contentOf(p string, d fs.DirEntry) string {
	switch {
	case d.Type()&fs.ModeSymlink != 0:
		t, _ := os.Readlink(p)
		return "-> " + t
	case d.Type().IsRegular():
		b, err := os.ReadFile(p)
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return ""
}

func writeFile(root, rel, content string) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

// mkWhiteout and mkOpaque use the same writer the union uses.
func mkWhiteout(root, rel string, f whiteout.Format) error {
	return withDir(root, path.Dir(rel), func(fd int) error {
		return whiteout.Writer{Format: f, XattrNamespace: whiteout.WritableNamespace()}.Whiteout(fd, path.Base(rel))
	})
}

func mkOpaque(root, rel string, f whiteout.Format) error {
	return withDir(root, rel, func(fd int) error {
		return whiteout.Writer{Format: f, XattrNamespace: whiteout.WritableNamespace()}.MakeOpaque(fd)
	})
}

func withDir(root, rel string, fn func(fd int) error) error {
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}
