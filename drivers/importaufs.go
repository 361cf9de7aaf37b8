package drivers

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/strata-fs/strata/drivers/archive"
)

// ImportAufs registers the layers of a Docker aufs store (the directory
// holding Docker's aufs layers/, diff/ and mnt/), so hosts that lost aufs
// can still mount their images. dir is only read.
//
// Each layer is copied into the store the way a registry pull would bring
// it: its diff directory is read as an OCI layer tar (archive.Diff, which
// understands .wh. whiteouts and .wh..wh..opq and skips aufs's own
// .wh..wh.* bookkeeping) and applied with ApplyDiff, so it lands in the
// backend's native form: overlay markers for overlay and fuse, a full
// tree for vfs and devicemapper. A layer whose parent is "<its id>-init"
// is a container layer: it and its init layer are imported writable,
// everything else read-only. Parents come before children. A layer that
// already exists with the same parent is kept (so a failed import can be
// run again); one that exists with another parent is an error. Returns
// the ids imported, in order.
func (s *Store) ImportAufs(dir string) ([]string, error) {
	src, err := readAufsStore(dir)
	if err != nil {
		return nil, err
	}
	mounts, err := mountPoints()
	if err != nil {
		return nil, err
	}
	var imported []string
	for _, l := range src.order() {
		if _, busy := mounts[filepath.Join(src.dir, "mnt", l.ID)]; busy {
			return imported, fmt.Errorf("import-aufs %s: layer %s is mounted at %s/mnt/%s (is Docker still running?)", dir, l.ID, src.dir, l.ID)
		}
		if s.Exists(l.ID) {
			have, err := readLayer(s.root, l.ID)
			if err != nil {
				return imported, err
			}
			if have.Parent != l.Parent {
				return imported, fmt.Errorf("import-aufs %s: layer %s: %w with parent %q (the aufs store says %q)", dir, l.ID, ErrExists, have.Parent, l.Parent)
			}
			continue
		}
		if err := s.importAufsLayer(src, l); err != nil {
			return imported, fmt.Errorf("import-aufs %s: layer %s: %w", dir, l.ID, err)
		}
		imported = append(imported, l.ID)
	}
	return imported, nil
}

// importAufsLayer creates one layer and streams its aufs diff into it. A
// failure removes the half-made layer again.
func (s *Store) importAufsLayer(src *aufsStore, l *layer) (err error) {
	create := s.Create
	if l.ReadWrite {
		create = s.CreateReadWrite
	}
	if err := create(l.ID, l.Parent, nil); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Remove(l.ID)
		}
	}()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(archive.Diff(pw, filepath.Join(src.dir, "diff", l.ID), archive.DiffOptions{}))
	}()
	_, err = s.ApplyDiff(l.ID, l.Parent, pr)
	pr.CloseWithError(errors.New("import stopped"))
	return err
}

// aufsStore is what readAufsStore found.
type aufsStore struct {
	dir    string
	layers map[string]*layer
}

// readAufsStore reads every layers/<id> (parent ids, nearest first, one
// per line) and checks the store is consistent: valid ids, a diff/<id>
// directory for each, parents present, and each layer's ancestry its
// parent's plus the parent.
func readAufsStore(dir string) (*aufsStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("import-aufs: %w", err)
	}
	defer root.Close()
	names, err := readDirNames(root, "layers")
	if err != nil {
		return nil, fmt.Errorf("import-aufs %s: not a Docker aufs store: %w", dir, err)
	}
	src := &aufsStore{dir: abs, layers: map[string]*layer{}}
	for _, id := range names {
		if err := ValidateID(id); err != nil {
			return nil, fmt.Errorf("import-aufs %s: layers/%s: %w", dir, id, err)
		}
		raw, err := root.ReadFile("layers/" + id)
		if err != nil {
			return nil, fmt.Errorf("import-aufs %s: %w", dir, err)
		}
		fi, err := root.Lstat("diff/" + id)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return nil, fmt.Errorf("import-aufs %s: layer %s: diff/%s: %w", dir, id, id, err)
		}
		anc := parseAncestors(raw)
		src.layers[id] = &layer{ID: id, Parent: firstOrEmpty(anc), Ancestors: anc}
	}
	for _, id := range names {
		l := src.layers[id]
		if l.Parent == "" {
			continue
		}
		p, ok := src.layers[l.Parent]
		if !ok {
			return nil, fmt.Errorf("import-aufs %s: layer %s: parent %s is not in layers/", dir, id, l.Parent)
		}
		if fmt.Sprint(l.Ancestors[1:]) != fmt.Sprint(p.Ancestors) {
			return nil, fmt.Errorf("import-aufs %s: layers/%s lists ancestors %v, but its parent %s has %v", dir, id, l.Ancestors, l.Parent, p.Ancestors)
		}
		if l.Parent == id+"-init" {
			l.ReadWrite, p.ReadWrite = true, true
		}
	}
	return src, nil
}

// order lists the layers parents first (by depth, then id).
func (a *aufsStore) order() []*layer {
	out := make([]*layer, 0, len(a.layers))
	for _, l := range a.layers {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Ancestors) != len(out[j].Ancestors) {
			return len(out[i].Ancestors) < len(out[j].Ancestors)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
