package drivers

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// The store's subtree for one backend, <root>/<backend>/, in the aufs
// driver's spirit. Every name below is relative to it and is only ever
// opened through the store's os.Root.
const (
	dirDiff    = "diff"    // diff/<id>: the layer's own files (vfs: a full copy)
	dirLayers  = "layers"  // layers/<id>: ancestor ids, nearest first; its presence registers the layer
	dirMeta    = "meta"    // meta/<id>: the rest of the layer's record (JSON)
	dirMnt     = "mnt"     // mnt/<id>: where Get mounts it
	dirWork    = "work"    // work/<id>: the workdir of a writable layer (fuse, overlay)
	dirLinks   = "l"       // l/<short>: a short symlink to ../diff/<id>, to keep mount options small
	dirRefs    = "refs"    // refs/<id>: how many Gets are outstanding (absent: none)
	dirLocks   = "locks"   // locks/<id>: the layer's lock file
	dirEmpty   = "empty"   // an empty directory, the bottom lower where a union needs one
	dirStaging = "staging" // scratch space on the store's filesystem (copies, temporary mounts)
	storeLock  = "lock"    // the store-wide lock file
)

var storeDirs = []string{dirDiff, dirLayers, dirMeta, dirMnt, dirWork, dirLinks, dirRefs, dirLocks, dirEmpty, dirStaging}

// layer is a registered layer's record.
type layer struct {
	ID        string `json:"id"`
	Parent    string `json:"parent,omitempty"`
	ReadWrite bool   `json:"rw,omitempty"`
	// Link is the layer's short name in l/.
	Link string `json:"link"`
	// Device is the thin device id (devicemapper only).
	Device int `json:"device,omitempty"`
	// Ancestors are read from layers/<id>: the parent first, the base last.
	Ancestors []string `json:"-"`
}

func layerPath(dir, id string) string { return dir + "/" + id }

// newLink returns a random short name for l/ (26 base32 characters, as
// Docker's overlay2 uses: unique enough without coordination).
func newLink() string {
	var b [16]byte
	rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:26]
}

// writeFileAtomic replaces name under root with data: a temp file in the
// same directory, written and fsync'd, renamed over name, and the
// directory fsync'd. A crash leaves the old file or the new one, never a
// torn one (a stray temp file at worst, which cleanOrphans removes).
func writeFileAtomic(root *os.Root, name string, data []byte) error {
	dir, base := path.Split(name)
	tmp := dir + ".tmp-" + base + "-" + newLink()[:8]
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	return syncDir(root, dir)
}

// syncDir fsyncs a directory under root, making a rename or removal in it
// durable.
func syncDir(root *os.Root, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	err = d.Sync()
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		// Some filesystems (FUSE ones among them) do not fsync
		// directories; the rename is as durable as they make it.
		return nil
	}
	return err
}

// readLayer loads a registered layer's record; ErrNotFound when id is not
// registered.
func readLayer(root *os.Root, id string) (*layer, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	anc, err := root.ReadFile(layerPath(dirLayers, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", id, err)
	}
	raw, err := root.ReadFile(layerPath(dirMeta, id))
	if err != nil {
		return nil, fmt.Errorf("layer %s: record: %w", id, err)
	}
	l := &layer{}
	if err := json.Unmarshal(raw, l); err != nil {
		return nil, fmt.Errorf("layer %s: record %s: %w", id, layerPath(dirMeta, id), err)
	}
	if l.ID != id {
		return nil, fmt.Errorf("layer %s: record %s names layer %q", id, layerPath(dirMeta, id), l.ID)
	}
	l.Ancestors = parseAncestors(anc)
	if got := firstOrEmpty(l.Ancestors); got != l.Parent {
		return nil, fmt.Errorf("layer %s: %s says parent %q, %s says %q", id, layerPath(dirLayers, id), got, layerPath(dirMeta, id), l.Parent)
	}
	return l, nil
}

// parseAncestors reads the aufs layers/<id> format: one id per line,
// nearest first.
func parseAncestors(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func formatAncestors(ids []string) []byte {
	var b bytes.Buffer
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func firstOrEmpty(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// registerLayer writes the layer's record and then layers/<id>, the
// commit point: before it the layer does not exist (and cleanOrphans
// removes its pieces), after it the layer is complete.
func registerLayer(root *os.Root, l *layer) error {
	raw, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(root, layerPath(dirMeta, l.ID), raw); err != nil {
		return fmt.Errorf("layer %s: writing record: %w", l.ID, err)
	}
	if err := writeFileAtomic(root, layerPath(dirLayers, l.ID), formatAncestors(l.Ancestors)); err != nil {
		return fmt.Errorf("layer %s: registering: %w", l.ID, err)
	}
	return nil
}
