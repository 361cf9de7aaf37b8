package sys

import (
	"bytes"
	"os"
)

// InInitialUserNamespace reports whether this process runs in the initial
// user namespace. Without /proc it assumes so.
func InInitialUserNamespace() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	return isIdentityIDMap(data)
}

// isIdentityIDMap reports whether a uid_map is the initial namespace's:
// one line mapping every id to itself.
func isIdentityIDMap(data []byte) bool {
	return bytes.Equal(bytes.Join(bytes.Fields(data), []byte(" ")), []byte("0 0 4294967295"))
}
