package sys

import "strings"

// PathWithin reports whether the clean path p is dir itself or below it.
// Both are absolute ("/" holds every path) or both relative to one root
// ("." holds only itself; branches' paths are "." and "a/b"). Callers that
// want strictly below test p != dir as well.
func PathWithin(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}
