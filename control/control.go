// Package control is the control channel of a strata mount: how `strata
// explain PATH` and `strata trace on|off` reach the daemon serving PATH.
// The daemon serves it (Serve) beside its FUSE server; the CLI finds the
// mount from a path and asks it (FindMount, MountedUnion.Request). It
// talks to branches.Stack only, never to the FUSE layer.
//
// The channel is a Unix socket in the abstract namespace named after
// the mount's device number ("@strata/0:57/control"): the client finds
// that number in /proc/self/mountinfo from the path alone, so any path
// works, including one the union does not show (a whited-out name, the
// usual question), a symlink, or a special file, which virtual xattrs could not serve
// (getxattr needs an existing object, and user.* xattrs exist only on
// files and directories). An abstract socket leaves nothing in the
// filesystem to clean up and goes away with the daemon.
//
// Access: anyone may connect, so the daemon checks the caller's
// credentials (SO_PEERCRED) and answers only root and the user the daemon
// runs as (the mount's owner); everyone else gets a refusal and nothing
// else. The client checks the other way round: the socket must belong to
// the uid the kernel records as the mount's owner (user_id= in
// mountinfo), so another user squatting the name cannot answer for the
// mount.
//
// Protocol: one request per connection, a Request as JSON in one
// message (with a descriptor attached for "trace on"); the answer is a
// Reply as JSON, then the daemon closes the connection.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/branches"
	"github.com/strata-fs/strata/internal/sys"
)

// Request is one request on the control channel.
type Request struct {
	// Op is "explain" or "trace".
	Op string `json:"op"`
	// Path is the union path to explain.
	Path string `json:"path,omitempty"`
	// On turns the trace on (to the descriptor sent with the request) or
	// off.
	On bool `json:"on,omitempty"`
}

// Reply answers a Request.
type Reply struct {
	Error  string           `json:"error,omitempty"`
	Report *branches.Report `json:"report,omitempty"`
}

// ErrRefused is wrapped by the client's error when the daemon refused the
// caller.
var ErrRefused = errors.New("refused by the mount's daemon")

const (
	requestMax  = 64 << 10
	connTimeout = 30 * time.Second
)

func address(major, minor uint32) string {
	return fmt.Sprintf("@strata/%d:%d/control", major, minor)
}

// Channel serves the control channel of one mount.
type Channel struct {
	ln    *net.UnixListener
	stack *branches.Stack
	owner uint32
	dev   uint64 // the mount's device number
	log   *log.Logger

	mu    sync.Mutex
	trace *os.File // where the trace goes, owned here; nil when off
	wg    sync.WaitGroup
}

// Serve starts the control channel of the mount of stack at
// mountpoint (already mounted). trace, when not nil, is the trace file the
// stack already writes to (strata mount --trace): the channel takes it
// over, and closes it when the trace is turned off or replaced.
func Serve(stack *branches.Stack, mountpoint string, trace *os.File, logger *log.Logger) (*Channel, error) {
	if logger == nil {
		logger = log.Default()
	}
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return nil, fmt.Errorf("control channel: %w", err)
	}
	addr := &net.UnixAddr{Name: address(unix.Major(st.Dev), unix.Minor(st.Dev)), Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("control channel %s: %w", addr.Name, err)
	}
	c := &Channel{ln: ln, stack: stack, owner: uint32(os.Geteuid()), dev: uint64(st.Dev), log: logger, trace: trace}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// Close stops the channel and closes the trace file it owns.
func (c *Channel) Close() error {
	err := c.ln.Close()
	c.wg.Wait()
	c.setTrace(nil)
	return err
}

func (c *Channel) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log.Printf("control channel: %v", err)
			}
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(connTimeout))
			reply := c.handle(conn)
			if b, err := json.Marshal(reply); err == nil {
				conn.Write(b)
			}
		}()
	}
}

// handle reads one request and answers it, refusing a caller who is
// neither root nor the mount's owner. The request is read first even then,
// so that the refusal reaches the caller (closing a socket with unread
// data resets the connection).
func (c *Channel) handle(conn *net.UnixConn) Reply {
	buf, oob := make([]byte, requestMax), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return Reply{Error: "reading the request: " + err.Error()}
	}
	fds := receivedFDs(oob[:oobn])
	cred, err := peerCred(conn)
	if err != nil {
		closeAll(fds)
		return Reply{Error: err.Error()}
	}
	if cred.Uid != 0 && cred.Uid != c.owner {
		closeAll(fds)
		return Reply{Error: fmt.Sprintf("%v: uid %d is neither root nor the owner of this mount (uid %d)", ErrRefused, cred.Uid, c.owner)}
	}
	var req Request
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		closeAll(fds)
		return Reply{Error: "bad request: " + err.Error()}
	}
	switch req.Op {
	case "explain":
		closeAll(fds)
		r, err := c.stack.ExplainPath(req.Path)
		if err != nil {
			return Reply{Error: err.Error()}
		}
		return Reply{Report: r}
	case "trace":
		if !req.On {
			closeAll(fds)
			c.setTrace(nil)
			return Reply{}
		}
		if len(fds) != 1 {
			closeAll(fds)
			return Reply{Error: "trace on: send exactly one descriptor to write the trace to"}
		}
		var st unix.Stat_t
		if err := unix.Fstat(fds[0], &st); err != nil || uint64(st.Dev) == c.dev {
			// Writing it would send the daemon requests from inside a
			// decision it is tracing.
			closeAll(fds)
			return Reply{Error: "trace on: the trace file may not be inside the mount it traces"}
		}
		if err := c.setTrace(os.NewFile(uintptr(fds[0]), "trace")); err != nil {
			return Reply{Error: "trace on: " + err.Error()}
		}
		return Reply{}
	}
	closeAll(fds)
	return Reply{Error: fmt.Sprintf("unknown request %q", req.Op)}
}

// setTrace points the stack's trace at f (nil: off) and closes the file
// it wrote to before.
func (c *Channel) setTrace(f *os.File) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f == nil {
		c.stack.SetTrace(nil)
	} else if err := c.stack.SetTrace(f); err != nil {
		f.Close()
		return err
	}
	if c.trace != nil && c.trace != f {
		c.trace.Close()
	}
	c.trace = f
	return nil
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return nil, fmt.Errorf("control channel: peer credentials: %w", err)
	}
	return cred, nil
}

func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// MountedUnion is a strata mount found from a path inside it.
type MountedUnion struct {
	// MountPoint is where it is mounted.
	MountPoint string
	// Owner is the uid the kernel records as the mount's owner.
	Owner uint32
	addr  string
}

// FindMount finds the strata mount holding the path p (absolute or
// relative to the working directory; it need not exist, so a whited-out
// name can be asked about) and returns it with p's path in the union.
func FindMount(p string) (*MountedUnion, string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, "", err
	}
	// Resolve symlinks in the directories on the way, not in the last
	// component: explaining a symlink means the symlink.
	dir, base := filepath.Split(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		abs = filepath.Join(real, base)
	}
	mounts, err := sys.Mounts()
	if err != nil {
		return nil, "", err
	}
	m, ok := sys.MountOf(mounts, abs)
	if !ok || m.FSType != "fuse.strata" {
		what := "no mount"
		if ok {
			what = fmt.Sprintf("%s, mounted at %s", m.FSType, m.MountPoint)
		}
		return nil, "", fmt.Errorf("%s is not inside a strata mount (it is on %s)", p, what)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(abs, m.MountPoint), "/")
	unionPath := path.Join(strings.TrimPrefix(m.Root, "/"), rel)
	if unionPath == "" {
		unionPath = "."
	}
	owner, err := mountOwner(m.SuperOptions)
	if err != nil {
		return nil, "", fmt.Errorf("strata mount at %s: %w", m.MountPoint, err)
	}
	return &MountedUnion{MountPoint: m.MountPoint, Owner: owner, addr: address(m.Major, m.Minor)}, unionPath, nil
}

// mountOwner reads user_id= from a FUSE mount's options.
func mountOwner(superOptions string) (uint32, error) {
	for _, o := range strings.Split(superOptions, ",") {
		if v, ok := strings.CutPrefix(o, "user_id="); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			return uint32(n), err
		}
	}
	return 0, errors.New("no user_id in its options")
}

// Request sends req to the mount's daemon, with f's descriptor attached
// when f is not nil, and returns the answer. An answer carrying an error
// is returned as that error.
func (m *MountedUnion) Request(req Request, f *os.File) (*Reply, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: m.addr, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("strata mount at %s: cannot reach its daemon's control channel: %w", m.MountPoint, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(connTimeout))
	cred, err := peerCred(conn)
	if err != nil {
		return nil, err
	}
	if cred.Uid != m.Owner {
		return nil, fmt.Errorf("strata mount at %s: the control socket belongs to uid %d, not to the mount's owner (uid %d); not trusting it", m.MountPoint, cred.Uid, m.Owner)
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var oob []byte
	if f != nil {
		oob = unix.UnixRights(int(f.Fd()))
	}
	if _, _, err := conn.WriteMsgUnix(msg, oob, nil); err != nil && !errors.Is(err, unix.EPIPE) {
		return nil, fmt.Errorf("strata mount at %s: %w", m.MountPoint, err)
	}
	var reply Reply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return nil, fmt.Errorf("strata mount at %s: reading the answer: %w", m.MountPoint, err)
	}
	if rest, refused := strings.CutPrefix(reply.Error, ErrRefused.Error()); refused {
		return nil, fmt.Errorf("strata mount at %s: %w%s", m.MountPoint, ErrRefused, rest)
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("strata mount at %s: %s", m.MountPoint, reply.Error)
	}
	return &reply, nil
}
