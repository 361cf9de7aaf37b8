package sys

import "testing"

func TestIsIdentityIDMap(t *testing.T) {
	for data, want := range map[string]bool{
		"         0          0 4294967295\n": true, // as the kernel prints it
		"0 0 4294967295":                     true,
		"         0          0          1\n": false, // unshare --map-root-user by root
		"         0       1000          1\n": false, // by a user
		"0 0 65536\n":                        false,
		"0 100000 65536\n1 1 1\n":            false,
		"":                                   false,
	} {
		if got := isIdentityIDMap([]byte(data)); got != want {
			t.Errorf("isIdentityIDMap(%q) = %v, want %v", data, got, want)
		}
	}
}
