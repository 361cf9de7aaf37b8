package branches

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/strata-fs/strata/internal/sys"
)

// POSIX ACLs (docs/CHOICES.md, POSIX ACLs). The kernel enforces them on
// the mount, reading them through getxattr; setfacl reaches Setxattr, and
// copy-up copies them with every other xattr. What is left to the union
// is what a filesystem does when it creates an object: give it the ACLs
// its parent's default ACL gives (the kernel's posix_acl_create), or else
// apply the caller's umask. Create does it by hand, because it builds the
// object in the workdir, not in the directory it lands in.

// The ACL attributes, as the kernel names them.
const (
	ACLAccess  = "system.posix_acl_access"
	ACLDefault = "system.posix_acl_default"
)

// The xattr form of an ACL (linux/posix_acl_xattr.h): a little-endian
// version word, then per entry a 16-bit tag, 16-bit permissions and a
// 32-bit id.
const (
	aclVersion   = 2
	aclHeader    = 4
	aclEntrySize = 8

	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclEntries checks the xattr form of an ACL and returns its entry count.
func aclEntries(v []byte) (int, bool) {
	if len(v) < aclHeader || binary.LittleEndian.Uint32(v) != aclVersion || (len(v)-aclHeader)%aclEntrySize != 0 {
		return 0, false
	}
	return (len(v) - aclHeader) / aclEntrySize, true
}

// aclEntry returns the offset of entry i.
func aclEntry(i int) int { return aclHeader + i*aclEntrySize }

// inheritACL is the kernel's posix_acl_create_masq: the access ACL an
// object of mode gets from its parent's default ACL def, each class's
// permissions narrowed by the mode asked for, and the mode that ACL
// gives. access is nil when the ACL says no more than the mode (no named
// entry, no mask). A malformed ACL is EIO, as in the kernel.
func inheritACL(def []byte, mode uint32) (access []byte, newMode uint32, err error) {
	n, ok := aclEntries(def)
	if !ok {
		return nil, 0, fmt.Errorf("default ACL of %d bytes: %w", len(def), unix.EIO)
	}
	acl := append([]byte(nil), def...)
	perm := func(i int) uint32 { return uint32(binary.LittleEndian.Uint16(acl[aclEntry(i)+2:])) }
	setPerm := func(i int, p uint32) { binary.LittleEndian.PutUint16(acl[aclEntry(i)+2:], uint16(p)) }
	m := mode & 0o777
	groupObj, mask := -1, -1
	notEquiv := false
	for i := range n {
		switch binary.LittleEndian.Uint16(acl[aclEntry(i):]) {
		case aclUserObj:
			setPerm(i, perm(i)&(m>>6|^uint32(0o7)))
			m &= perm(i)<<6 | ^uint32(0o700)
		case aclUser, aclGroup:
			notEquiv = true
		case aclGroupObj:
			groupObj = i
		case aclOther:
			setPerm(i, perm(i)&(m|^uint32(0o7)))
			m &= perm(i) | ^uint32(0o7)
		case aclMask:
			mask = i
			notEquiv = true
		default:
			return nil, 0, fmt.Errorf("default ACL tag %#x: %w", binary.LittleEndian.Uint16(acl[aclEntry(i):]), unix.EIO)
		}
	}
	class := mask
	if class < 0 {
		class = groupObj
	}
	if class < 0 {
		return nil, 0, fmt.Errorf("default ACL without a group entry: %w", unix.EIO)
	}
	setPerm(class, perm(class)&(m>>3|^uint32(0o7)))
	m &= perm(class)<<3 | ^uint32(0o70)
	newMode = mode&^0o777 | m&0o777
	if !notEquiv {
		return nil, newMode, nil
	}
	return acl, newMode, nil
}

// newObjectACLs is what Create gives a new object from its parent: a
// default ACL makes its access ACL (and, for a directory, its default
// ACL), and the umask is not applied; without one the umask narrows the
// mode (posix_acl_create). A symlink gets neither. parentFD is the upper
// copy of the parent.
func newObjectACLs(parentFD int, obj *NewObject) (access, def []byte, err error) {
	typ := obj.Mode & unix.S_IFMT
	if typ == unix.S_IFLNK {
		return nil, nil, nil
	}
	def, err = sys.Getxattr(parentFD, "", ACLDefault)
	if n, ok := aclEntries(def); sys.IsNoAttr(err) || (err == nil && ok && n == 0) {
		obj.Mode &^= obj.Umask & 0o777
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("default ACL of the parent: %w", err)
	}
	access, obj.Mode, err = inheritACL(def, obj.Mode)
	if err != nil {
		return nil, nil, err
	}
	if typ != unix.S_IFDIR {
		def = nil
	}
	return access, def, nil
}

// setNewACLs sets the ACLs newObjectACLs gave on the temp object tmp in
// the directory workFD (after its mode: setting an access ACL sets the
// mode's group class to the ACL's mask, which the mode already matches).
func setNewACLs(workFD int, tmp string, access, def []byte) error {
	if access != nil {
		if err := sys.Setxattr(workFD, tmp, ACLAccess, access, 0); err != nil {
			return fmt.Errorf("access ACL: %w", err)
		}
	}
	if def != nil {
		if err := sys.Setxattr(workFD, tmp, ACLDefault, def, 0); err != nil {
			return fmt.Errorf("default ACL: %w", err)
		}
	}
	return nil
}

// MapACLIDs returns a copy of the ACL v (either attribute's xattr form)
// with the id of each named user entry passed through uid and of each
// named group entry through gid; the owner, group, mask and other entries
// carry no id. ok is false, and v is returned as it is, when v is not an
// ACL this code knows.
func MapACLIDs(v []byte, uid, gid func(uint32) uint32) (out []byte, ok bool) {
	n, ok := aclEntries(v)
	if !ok {
		return v, false
	}
	out = append([]byte(nil), v...)
	for i := range n {
		e := out[aclEntry(i):]
		switch binary.LittleEndian.Uint16(e) {
		case aclUser:
			binary.LittleEndian.PutUint32(e[4:], uid(binary.LittleEndian.Uint32(e[4:])))
		case aclGroup:
			binary.LittleEndian.PutUint32(e[4:], gid(binary.LittleEndian.Uint32(e[4:])))
		}
	}
	return out, true
}
