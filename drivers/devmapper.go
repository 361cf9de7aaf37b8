package drivers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/whiteout"
)

// DeviceMapperOptions configure the devicemapper backend.
type DeviceMapperOptions struct {
	// DataDevice and MetadataDevice are block devices for the thin pool.
	// Empty: sparse loop files in the store (devicemapper/data and
	// devicemapper/metadata), as Docker's loop-lvm did.
	DataDevice, MetadataDevice string
	// DataLoopSize and MetadataLoopSize size the loop files (defaults
	// 100 GiB and 2 GiB, sparse).
	DataLoopSize, MetadataLoopSize int64
	// BaseSize is the size of every thin device, that is of each layer's
	// filesystem (default 10 GiB).
	BaseSize int64
}

const (
	dmDir            = "devicemapper"
	dmStateFile      = dmDir + "/state.json"
	dmBlockSectors   = 128   // 64 KiB pool blocks, as Docker used
	dmLowWaterBlocks = 32768 // blocks; the pool signals below this
	dmBaseDevice     = 1     // thin id of the empty, formatted base
	dmMaxDeviceID    = 1<<24 - 1
)

// deviceMapperBackend keeps layers in a device-mapper thin pool, in the
// shape of Docker's devicemapper driver: a base thin device with an empty
// ext4 filesystem, and one thin snapshot per layer taken from its
// parent's device (or the base). A layer's tree is rootfs/ on its
// device's filesystem (ext4's lost+found stays outside it).
//
// It has not been exercised on a host with device-mapper: the machines
// this was written on have no /dev/mapper/control.
type deviceMapperBackend struct {
	s     *Store
	opts  DeviceMapperOptions
	pool  string // device-mapper name of the pool
	state dmState
	loops []string // loop devices this backend attached
}

// dmState is kept in devicemapper/state.json.
type dmState struct {
	// NextDevice is the next thin id to use; it is saved before the id is
	// used, so a crash can leak an id but never hand one out twice.
	NextDevice int   `json:"next_device"`
	BaseReady  bool  `json:"base_ready"`
	BaseSize   int64 `json:"base_size"`
}

func openDeviceMapper(s *Store) (backend, error) {
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		return nil, notSupported("device-mapper not available: /dev/mapper/control: %v", errors.Unwrap(err))
	}
	if os.Geteuid() != 0 {
		return nil, notSupported("device-mapper not available: needs root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"dmsetup", "mkfs.ext4", "losetup", "blockdev"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, notSupported("device-mapper not available: %s not found on PATH", tool)
		}
	}
	o := s.opts.DeviceMapper
	if o.DataLoopSize == 0 {
		o.DataLoopSize = 100 << 30
	}
	if o.MetadataLoopSize == 0 {
		o.MetadataLoopSize = 2 << 30
	}
	if o.BaseSize == 0 {
		o.BaseSize = 10 << 30
	}
	sum := sha256.Sum256([]byte(s.path))
	d := &deviceMapperBackend{s: s, opts: o, pool: "strata-" + hex.EncodeToString(sum[:6]) + "-pool"}
	if err := d.start(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// start makes sure the pool is active and the base device exists.
func (d *deviceMapperBackend) start() error {
	if err := d.s.root.Mkdir(dmDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	raw, err := d.s.root.ReadFile(dmStateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.state = dmState{NextDevice: dmBaseDevice + 1, BaseSize: d.opts.BaseSize}
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(raw, &d.state); err != nil {
			return fmt.Errorf("%s: %w", dmStateFile, err)
		}
	}
	if !d.active(d.pool) {
		if err := d.createPool(); err != nil {
			return err
		}
	}
	if !d.state.BaseReady {
		if err := d.createBase(); err != nil {
			return err
		}
	}
	return nil
}

func (d *deviceMapperBackend) createPool() error {
	data, meta := d.opts.DataDevice, d.opts.MetadataDevice
	if (data == "") != (meta == "") {
		return errors.New("devicemapper: give both a data and a metadata device, or neither (loop files)")
	}
	if data == "" {
		var err error
		if data, err = d.loopFile("data", d.opts.DataLoopSize); err != nil {
			return err
		}
		if meta, err = d.loopFile("metadata", d.opts.MetadataLoopSize); err != nil {
			return err
		}
	}
	out, err := run("blockdev", "--getsz", data)
	if err != nil {
		return err
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return fmt.Errorf("blockdev --getsz %s: %q", data, out)
	}
	table := fmt.Sprintf("0 %d thin-pool %s %s %d %d 1 skip_block_zeroing", sectors, meta, data, dmBlockSectors, dmLowWaterBlocks)
	_, err = run("dmsetup", "create", d.pool, "--table", table)
	return err
}

// loopFile attaches devicemapper/<name> (created sparse when missing) to
// a loop device, reusing an attachment that already exists.
func (d *deviceMapperBackend) loopFile(name string, size int64) (string, error) {
	p := d.s.abs(dmDir + "/" + name)
	f, err := d.s.root.OpenFile(dmDir+"/"+name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 {
		err = f.Truncate(size) // sparse; a zero superblock means "new pool"
	}
	f.Close()
	if err != nil {
		return "", err
	}
	if out, err := run("losetup", "-j", p); err == nil && strings.Contains(out, ":") {
		return strings.TrimSpace(strings.SplitN(out, ":", 2)[0]), nil
	}
	out, err := run("losetup", "-f", "--show", p)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	d.loops = append(d.loops, dev)
	return dev, nil
}

// createBase makes thin device 1 with an empty ext4 filesystem holding an
// empty rootfs/.
func (d *deviceMapperBackend) createBase() error {
	if err := d.message(fmt.Sprintf("create_thin %d", dmBaseDevice)); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	name := d.deviceName(dmBaseDevice)
	if err := d.activate(name, dmBaseDevice); err != nil {
		return err
	}
	defer d.deactivate(name)
	if _, err := run("mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", "/dev/mapper/"+name); err != nil {
		return err
	}
	dir, remove, err := d.s.probeDir("devicemapper-base", "mnt")
	if err != nil {
		return err
	}
	defer remove()
	if err := unix.Mount("/dev/mapper/"+name, dir+"/mnt", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount base device: %w", err)
	}
	err = os.Mkdir(dir+"/mnt/rootfs", 0o755)
	if err == nil {
		err = os.Chmod(dir+"/mnt/rootfs", 0o755) // past the umask
	}
	if uerr := unix.Unmount(dir+"/mnt", 0); err == nil {
		err = uerr
	}
	if err != nil {
		return err
	}
	d.state.BaseReady = true
	return d.saveState()
}

func (d *deviceMapperBackend) saveState() error {
	raw, _ := json.Marshal(d.state)
	return writeFileAtomic(d.s.root, dmStateFile, raw)
}

func (d *deviceMapperBackend) name() string             { return "devicemapper" }
func (d *deviceMapperBackend) kind() contentKind        { return fullTree }
func (d *deviceMapperBackend) markers() whiteout.Format { return whiteout.Overlay }
func (d *deviceMapperBackend) tracksMounts() bool       { return true }
func (d *deviceMapperBackend) dead(*layer) bool         { return false }

// deviceName is the device-mapper name of thin device id: the pool's
// prefix and the number (a layer id can be 128 characters, more than a
// device-mapper name may be, and could be "pool").
func (d *deviceMapperBackend) deviceName(id int) string {
	return fmt.Sprintf("%s%d", strings.TrimSuffix(d.pool, "pool"), id)
}

func (d *deviceMapperBackend) mountDir(l *layer) string {
	return d.s.abs(layerPath(dirMnt, l.ID)) + "/rootfs"
}

// create takes a thin snapshot of the parent's device (or the base). The
// origin is suspended if it is active, as the kernel documentation asks.
func (d *deviceMapperBackend) create(l, parent *layer) error {
	origin, originName := dmBaseDevice, d.deviceName(dmBaseDevice)
	if parent != nil {
		origin, originName = parent.Device, d.deviceName(parent.Device)
	}
	for tries := 0; ; tries++ {
		id := d.state.NextDevice
		if id > dmMaxDeviceID {
			return errors.New("devicemapper: thin device ids exhausted")
		}
		d.state.NextDevice++
		if err := d.saveState(); err != nil {
			return err
		}
		err := d.snapshot(id, origin, originName)
		if errors.Is(err, fs.ErrExist) && tries < 16 {
			continue // an id leaked by a crash; take the next
		}
		if err != nil {
			return err
		}
		l.Device = id
		return nil
	}
}

func (d *deviceMapperBackend) snapshot(id, origin int, originName string) error {
	if d.active(originName) {
		if _, err := run("dmsetup", "suspend", originName); err != nil {
			return err
		}
		defer run("dmsetup", "resume", originName)
	}
	return d.message(fmt.Sprintf("create_snap %d %d", id, origin))
}

func (d *deviceMapperBackend) remove(l *layer) error {
	if d.active(d.deviceName(l.Device)) {
		if err := d.deactivate(d.deviceName(l.Device)); err != nil {
			return err
		}
	}
	return d.message(fmt.Sprintf("delete %d", l.Device))
}

// mount activates the layer's device and mounts it at mnt/<id>; the tree
// is its rootfs/.
func (d *deviceMapperBackend) mount(l *layer, _ []*layer) (string, error) {
	return d.mountDir(l), d.mountDevice(l, !l.ReadWrite)
}

func (d *deviceMapperBackend) mountDevice(l *layer, readOnly bool) error {
	name := d.deviceName(l.Device)
	if !d.active(name) {
		if err := d.activate(name, l.Device); err != nil {
			return err
		}
	}
	var flags uintptr
	if readOnly {
		flags = unix.MS_RDONLY
	}
	target := d.s.abs(layerPath(dirMnt, l.ID))
	if err := unix.Mount("/dev/mapper/"+name, target, "ext4", flags, "discard"); err != nil {
		d.deactivate(name)
		return fmt.Errorf("mount /dev/mapper/%s on %s: %w", name, target, err)
	}
	return nil
}

func (d *deviceMapperBackend) unmount(l *layer) error {
	target := d.s.abs(layerPath(dirMnt, l.ID))
	if err := unix.Unmount(target, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return d.deactivate(d.deviceName(l.Device))
}

// contentDir mounts the device read-write for ApplyDiff (the store has
// checked that the layer is not mounted).
func (d *deviceMapperBackend) contentDir(l *layer) (string, func() error, error) {
	if err := d.mountDevice(l, false); err != nil {
		return "", nil, err
	}
	return d.mountDir(l), func() error { return d.unmount(l) }, nil
}

func (d *deviceMapperBackend) status() [][2]string {
	data := d.opts.DataDevice
	if data == "" {
		data = "loop file " + d.s.path + "/" + dmDir + "/data"
	}
	return [][2]string{
		{"Pool", d.pool},
		{"Data", data},
		{"Base device size", strconv.FormatInt(d.state.BaseSize, 10)},
		{"Filesystem", "ext4"},
	}
}

// close deactivates the pool (every layer was unmounted by Cleanup first)
// and detaches the loop devices this backend attached.
func (d *deviceMapperBackend) close() error {
	var errs []error
	if d.active(d.pool) {
		_, err := run("dmsetup", "remove", d.pool)
		errs = append(errs, err)
	}
	for _, dev := range d.loops {
		_, err := run("losetup", "-d", dev)
		errs = append(errs, err)
	}
	d.loops = nil
	return errors.Join(errs...)
}

func (d *deviceMapperBackend) active(name string) bool {
	_, err := run("dmsetup", "info", name)
	return err == nil
}

func (d *deviceMapperBackend) activate(name string, id int) error {
	table := fmt.Sprintf("0 %d thin /dev/mapper/%s %d", d.state.BaseSize/512, d.pool, id)
	_, err := run("dmsetup", "create", name, "--table", table)
	return err
}

func (d *deviceMapperBackend) deactivate(name string) error {
	if !d.active(name) {
		return nil
	}
	_, err := run("dmsetup", "remove", "--retry", name)
	return err
}

// message sends a message to the pool; "File exists" comes back as
// fs.ErrExist.
func (d *deviceMapperBackend) message(msg string) error {
	_, err := run("dmsetup", "message", d.pool, "0", msg)
	if err != nil && strings.Contains(err.Error(), "File exists") {
		return fmt.Errorf("%w: %v", fs.ErrExist, err)
	}
	return err
}

// run runs a system tool and returns its standard output, or an error
// with its standard error.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), strataTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return stdout.String(), nil
}
