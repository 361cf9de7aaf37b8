package branches

import "golang.org/x/sys/unix"

// keptOpenFlags are the open(2) flags of a caller's open that carry over to
// the descriptor opened on a copy: the access mode, O_TRUNC, and the flags
// that change how I/O on the descriptor behaves. Creation flags (O_CREAT,
// O_EXCL) are the union's business, and the rest (O_CLOEXEC, O_NOFOLLOW,
// O_PATH, ...) its own.
const keptOpenFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_TRUNC | unix.O_DIRECT |
	unix.O_NOATIME | unix.O_NONBLOCK | unix.O_SYNC | unix.O_DSYNC

// KeptOpenFlags returns the flags of a caller's open(2) that the union
// passes on when it opens a copy for it (Open, NewObject.OpenFlags).
func KeptOpenFlags(flags int) int { return flags & keptOpenFlags }

// ReopenFlags are KeptOpenFlags for opening a copy whose content the open
// has already decided: a new file (Create) or the copy that replaces one
// an open file was on. O_TRUNC goes: the open truncated once, if at all.
func ReopenFlags(flags int) int { return KeptOpenFlags(flags) &^ unix.O_TRUNC }
