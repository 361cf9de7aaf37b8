package drivers

import (
	"errors"
	"io"

	"github.com/strata-fs/strata/drivers/archive"
)

// ProtoDriver is the lifecycle and mount half of a graphdriver, in the
// shape of Docker's daemon/graphdriver.ProtoDriver.
type ProtoDriver interface {
	// String is the backend's name ("fuse", "overlay", "devicemapper", "vfs").
	String() string
	// Create makes a read-only layer id on top of parent ("" for a base
	// layer). Its content comes from ApplyDiff; a mount of it is read-only
	// where the backend can enforce that (fuse, overlay, devicemapper).
	Create(id, parent string, opts *CreateOpts) error
	// CreateReadWrite makes a writable layer (a container layer, or
	// Docker's "<id>-init" layer) on top of parent.
	CreateReadWrite(id, parent string, opts *CreateOpts) error
	// Remove deletes a layer. It fails with ErrMounted while the layer is
	// mounted and with ErrHasChildren while another layer sits on it.
	Remove(id string) error
	// Get mounts the layer with its ancestors on the first call and
	// returns the directory that shows the merged tree; later calls return
	// the same directory and count one more user. mountLabel is accepted
	// for Docker compatibility and ignored (no SELinux labelling).
	Get(id, mountLabel string) (dir string, err error)
	// Put drops one user of a Get; the last Put unmounts. Put without a
	// Get fails with ErrNotMounted.
	Put(id string) error
	// Exists reports whether the layer is registered.
	Exists(id string) bool
	// Status describes the backend as key/value rows, Docker's
	// "docker info" style: the backend, how it was chosen, and for auto
	// selection each rejected backend with the reason.
	Status() [][2]string
	// GetMetadata describes one layer's storage (its directories, parent,
	// whether it is writable), for tools that want to look inside.
	GetMetadata(id string) (map[string]string, error)
	// Cleanup unmounts every mounted layer of the store and releases what
	// the backend holds (a device-mapper pool). The store stays on disk.
	Cleanup() error
}

// DiffDriver is the diff half: OCI image-spec layer tars in and out,
// whatever the backend's own on-disk form.
type DiffDriver interface {
	// Diff streams the layer as an OCI layer tar: its changes relative to
	// parent, which must be its registered parent or "".
	Diff(id, parent string) (io.ReadCloser, error)
	// Changes lists what the layer adds, modifies and deletes relative to
	// parent, as "docker diff" shows them.
	Changes(id, parent string) ([]archive.Change, error)
	// ApplyDiff unpacks an OCI layer tar into the layer, converting
	// whiteouts to the backend's native form, and returns its DiffSize.
	// The layer must not be mounted. A failed apply leaves it as it was.
	ApplyDiff(id, parent string, diff io.Reader) (size int64, err error)
	// DiffSize is the number of bytes of regular files the layer adds or
	// changes relative to parent (hard links counted once).
	DiffSize(id, parent string) (size int64, err error)
}

// Driver is a complete graphdriver.
type Driver interface {
	ProtoDriver
	DiffDriver
}

// CreateOpts are per-layer options, as Docker passes them.
type CreateOpts struct {
	// MountLabel is accepted and ignored (no SELinux labelling).
	MountLabel string
	// StorageOpt holds backend options; none is supported yet, and any
	// given is refused rather than silently ignored.
	StorageOpt map[string]string
}

// Errors, for errors.Is. Every error returned wraps one of them (or an
// errno) and names the layer.
var (
	ErrNotFound     = errors.New("layer does not exist")
	ErrExists       = errors.New("layer already exists")
	ErrInvalidID    = errors.New("invalid layer id")
	ErrMounted      = errors.New("layer is mounted")
	ErrNotMounted   = errors.New("layer is not mounted (Put without Get)")
	ErrHasChildren  = errors.New("layer has child layers")
	ErrWrongParent  = errors.New("not the layer's parent")
	ErrNotSupported = errors.New("backend not usable here")
	// ErrBackendMismatch: the store was created with another backend.
	ErrBackendMismatch = errors.New("store belongs to another backend")
)
