package unionfs

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
)

// Config says how to mount a stack.
type Config struct {
	Debug bool
	// Logger receives go-fuse's messages; nil means the standard logger.
	Logger *log.Logger
	// NoPassthrough turns FUSE passthrough off: the daemon serves every
	// read and write of an open file.
	NoPassthrough bool
}

// DefaultCacheTimeout lets the kernel cache names and attributes for as
// long as it likes, as kernel overlay does in its dcache and as
// fuse-overlayfs does by default. Every change through the mount reaches
// the kernel as it happens; changes made to the branches behind the
// union's back are not promised to show, as with overlay
// (docs/UNION-SEMANTICS.md, "Out of scope").
const DefaultCacheTimeout = 24 * time.Hour

// Mount serves stack at mountpoint and returns once the kernel has the
// mount (the FUSE INIT handshake is done). The caller owns stack and must
// call server.Unmount() and then server.Wait() before closing it.
func Mount(stack *branches.Stack, mountpoint string, cfg Config) (*fuse.Server, error) {
	root, err := stack.Root()
	if err != nil {
		return nil, err
	}
	timeout := DefaultCacheTimeout
	if t := stack.Options().Compat.Timeout; t != nil {
		timeout = *t // fuse-overlayfs's timeout=
	}
	opts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		// Mode 000 is a real mode in a union; go-fuse would turn it into 0644.
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Mode: unix.S_IFDIR, Ino: root.Ino},
		Logger:          cfg.Logger,
		MountOptions: fuse.MountOptions{
			FsName:   "strata",
			Name:     "strata",
			Debug:    cfg.Debug,
			MaxWrite: 1 << 20,
			// POSIX locks go to the backing file (go-fuse's loopback file
			// takes them there), so they hold between opens of one file.
			EnableLocks: true,
			Logger:      cfg.Logger,
		},
	}
	mo := &opts.MountOptions
	if !stack.Options().Compat.NoACL {
		// POSIX ACLs are the kernel's to enforce, as on the branches
		// (docs/CHOICES.md, POSIX ACLs): it reads them through GETXATTR.
		// With them it leaves the umask to us (DONT_MASK), since a default
		// ACL replaces it (rawfs.go).
		mo.EnableAcl = true
		mo.ExtraCapabilities |= fuse.CAP_DONT_MASK
	}
	mo.Options = append(mo.Options, "default_permissions")
	mo.Options = append(mo.Options, stack.Options().Mount...)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if os.Geteuid() == 0 {
		// As fuse-overlayfs does for root: a union of a container's
		// layers is used by other users and carries setuid binaries.
		mo.AllowOther = true
		mo.DirectMount = true
		flags &^= unix.MS_NOSUID
	}
	if !stack.Writable() {
		flags |= unix.MS_RDONLY
		if !mo.DirectMount {
			mo.Options = append(mo.Options, "ro")
		}
	}
	mo.DirectMountFlags = flags
	logger := cfg.Logger
	if logger == nil {
		logger = log.Default()
	}
	u := &union{stack: stack, owners: newOwners(stack.Options().Compat), noPassthrough: cfg.NoPassthrough, logger: logger, open: map[*Node][]*file{}}
	node := u.newNode(root, stack.Generation())
	// fs.Mount, with the bridge wrapped (rawfs.go).
	raw := &rawFS{RawFileSystem: fs.NewNodeFS(node, opts), owners: u.owners}
	server, err := fuse.NewServer(raw, mountpoint, mo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return server, nil
}
