package drivers

import (
	"fmt"
)

// maxIDLength leaves room under NAME_MAX (255) for the store's own
// suffixes (temp names) and matches what Docker produces (64 hex digits,
// "-init" added).
const maxIDLength = 128

// ValidateID checks a layer id before it is used as a file name in the
// store: 1 to 128 characters from [A-Za-z0-9._-], not starting with a dot
// (so never ".", ".." or a hidden temp name). Slashes, colons and commas
// are refused: an id must name exactly one directory entry and must be
// safe inside mount option strings.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > maxIDLength:
		return fmt.Errorf("%w %.20q...: longer than %d characters", ErrInvalidID, id, maxIDLength)
	case id[0] == '.':
		return fmt.Errorf("%w %q: starts with a dot", ErrInvalidID, id)
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w %q: character %q is not allowed (only letters, digits, '.', '_', '-')", ErrInvalidID, id, c)
		}
	}
	return nil
}
