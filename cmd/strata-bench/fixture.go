package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// fixture is the on-disk material every system is measured on, built once.
type fixture struct {
	root      string
	layers    []string // three layers, top first
	plain     string   // merged copy (hard links) of big.bin, tree/ and wide/: the plain-dir ceiling
	statPaths []string // relative paths of the stat tree
	walkFiles int      // files under walk/ (the memory workload's tree)
	walkDirs  int
	tarball   string // tree.tar: the untar workload's input
	tarDirs   int    // directories in it (files: sz.untarFiles)
	depthDir  string // holds branches "0".."N-2" and "z" (bottom) for lookup depth
	sz        sizes
}

const filesPerDir = 100

var smallContent = []byte("small file\n")

func mustMkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		fatal(err)
	}
}

func mustWrite(p string, data []byte) {
	if err := os.WriteFile(p, data, 0o644); err != nil {
		fatal(err)
	}
}

func mustLink(from, to string) {
	if err := os.Link(from, to); err != nil {
		fatal(err)
	}
}

func buildFixture(root string, sz sizes) *fixture {
	fx := &fixture{root: root, sz: sz, plain: filepath.Join(root, "plain"), depthDir: filepath.Join(root, "depth")}
	for i := 0; i < 3; i++ {
		fx.layers = append(fx.layers, filepath.Join(root, "layers", fmt.Sprintf("l%d", i)))
	}
	fx.buildBigFile()
	fx.buildStatTree()
	fx.buildWideDir()
	fx.buildWalkTree()
	fx.buildTarball()
	fx.buildDepthBranches()
	return fx
}

// layerOf spreads the entries of a merged directory over the three layers.
func layerOf(i int) int { return i % 3 }

// mkdirEverywhere creates rel in the plain copy and in every layer, so the
// union merges it from all three.
func (fx *fixture) mkdirEverywhere(rel string) {
	mustMkdir(filepath.Join(fx.plain, rel))
	for _, l := range fx.layers {
		mustMkdir(filepath.Join(l, rel))
	}
}

// addSmall writes a small file into one layer and links it into the plain copy.
func (fx *fixture) addSmall(rel string, layer int) {
	p := filepath.Join(fx.layers[layer], rel)
	mustWrite(p, smallContent)
	mustLink(p, filepath.Join(fx.plain, rel))
}

// buildBigFile writes big.bin into the bottom layer.
func (fx *fixture) buildBigFile() {
	fx.mkdirEverywhere(".")
	p := filepath.Join(fx.layers[2], "big.bin")
	f, err := os.Create(p)
	if err != nil {
		fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8)
	}
	for n := int64(0); n < fx.sz.bigFile; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		fatal(err)
	}
	mustLink(p, filepath.Join(fx.plain, "big.bin"))
}

// buildStatTree: tree/dNNN/fNNNNN, 100 files per dir, directories in every
// layer, files spread over the layers.
func (fx *fixture) buildStatTree() {
	for i := 0; i < fx.sz.statFiles; i++ {
		d := fmt.Sprintf("tree/d%03d", i/filesPerDir)
		if i%filesPerDir == 0 {
			fx.mkdirEverywhere(d)
		}
		rel := fmt.Sprintf("%s/f%05d", d, i)
		fx.addSmall(rel, layerOf(i))
		fx.statPaths = append(fx.statPaths, rel)
	}
}

// buildWideDir: one directory with sz.wideDir entries spread over the layers.
func (fx *fixture) buildWideDir() {
	fx.mkdirEverywhere("wide")
	for i := 0; i < fx.sz.wideDir; i++ {
		fx.addSmall(fmt.Sprintf("wide/e%05d", i), layerOf(i))
	}
}

// buildWalkTree: walk/dNNN/fNNNNNN, empty files, 1000 per dir, spread over
// the layers (not in the plain copy: it is there for the daemons' memory).
func (fx *fixture) buildWalkTree() {
	const perDir = 1000
	fx.walkFiles = fx.sz.walkFiles
	for i := 0; i < fx.walkFiles; i++ {
		d := fmt.Sprintf("walk/d%03d", i/perDir)
		if i%perDir == 0 {
			for _, l := range fx.layers {
				mustMkdir(filepath.Join(l, d))
			}
			fx.walkDirs++
		}
		mustWrite(filepath.Join(fx.layers[layerOf(i)], d, fmt.Sprintf("f%06d", i)), nil)
	}
	fx.walkDirs++ // walk/ itself
}

// buildTarball writes tree.tar with the system tar from a generated tree
// (pNN/sNN/fNNNNN, 100 files per leaf, 0-4 KiB each), then drops the tree.
func (fx *fixture) buildTarball() {
	src := filepath.Join(fx.root, "tarsrc")
	content := make([]byte, 4096)
	for i := range content {
		content[i] = byte('a' + i%26)
	}
	for i := 0; i < fx.sz.untarFiles; i++ {
		leaf := filepath.Join(src, fmt.Sprintf("p%02d", i/(10*filesPerDir)), fmt.Sprintf("s%02d", i/filesPerDir%10))
		if i%filesPerDir == 0 {
			if i%(10*filesPerDir) == 0 {
				fx.tarDirs++
			}
			mustMkdir(leaf)
			fx.tarDirs++
		}
		mustWrite(filepath.Join(leaf, fmt.Sprintf("f%05d", i)), content[:i*37%len(content)])
	}
	fx.tarball = filepath.Join(fx.root, "tree.tar")
	if out, err := exec.Command("tar", "-cf", fx.tarball, "-C", src, ".").CombinedOutput(); err != nil {
		fatal(fmt.Errorf("tar -cf %s: %s", fx.tarball, firstLine(out, err)))
	}
	if err := os.RemoveAll(src); err != nil {
		fatal(err)
	}
}

// buildDepthBranches: branches "0".."max-2" each hold d/ and one own file;
// the bottom "z" holds d/fNNNNN. Short relative names keep the kernel's
// option page (4 KiB) big enough for 500 branches.
func (fx *fixture) buildDepthBranches() {
	maxN := 0
	for _, n := range fx.sz.depths {
		maxN = max(maxN, n)
	}
	for b := 0; b < maxN-1; b++ {
		mustMkdir(filepath.Join(fx.depthDir, strconv.Itoa(b), "d"))
		mustWrite(filepath.Join(fx.depthDir, strconv.Itoa(b), "d", "own"+strconv.Itoa(b)), smallContent)
	}
	mustMkdir(filepath.Join(fx.depthDir, "z", "d"))
	for _, name := range fx.lookupNames() {
		mustWrite(filepath.Join(fx.depthDir, "z", name), smallContent)
	}
}

// lookupNames are the bottom-layer files of the lookup-depth workload,
// relative to a branch.
func (fx *fixture) lookupNames() []string {
	var l []string
	for k := 0; k < fx.sz.lookups; k++ {
		l = append(l, fmt.Sprintf("d/f%05d", k))
	}
	return l
}

// depthBranches returns the relative branch names (top first) of an
// n-branch stack; they resolve against fx.depthDir.
func (fx *fixture) depthBranches(n int) []string {
	var l []string
	for b := 0; b < n-1; b++ {
		l = append(l, strconv.Itoa(b))
	}
	return append(l, "z")
}
