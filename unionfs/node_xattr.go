package unionfs

import (
	"context"
	"strings"
	"syscall"
)

// Getxattr reads an attribute of the serving copy; the union's own
// attributes are hidden (ENODATA).
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, err := n.u.stack.Getxattr(n.current(), attr)
	if err != nil {
		return 0, toErrno(err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr lists the attributes of the serving copy, the union's own
// omitted.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	names, err := n.u.stack.Listxattr(n.current())
	if err != nil {
		return 0, toErrno(err)
	}
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		b.WriteByte(0)
	}
	if len(dest) < b.Len() {
		return uint32(b.Len()), syscall.ERANGE
	}
	return uint32(copy(dest, b.String())), 0
}

// Setxattr sets an attribute, copying the object up first; the union's
// own attributes are refused (EOPNOTSUPP, as kernel overlay does).
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	gen := n.u.stack.Generation()
	e, err := n.u.stack.Setxattr(n.current(), attr, data, int(flags))
	if err != nil {
		return toErrno(err)
	}
	n.set(e, gen)
	return 0
}

// Removexattr removes an attribute, copying the object up first.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	gen := n.u.stack.Generation()
	e, err := n.u.stack.Removexattr(n.current(), attr)
	if err != nil {
		return toErrno(err)
	}
	n.set(e, gen)
	return 0
}
