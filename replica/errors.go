package replica

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error the way a user (and the FUSE layer, which maps each
// kind to one errno) needs to know it.
type Kind uint8

// The kinds.
const (
	Other       Kind = iota // anything else (EIO)
	NotExist                // no such file or directory (ENOENT)
	Exist                   // already exists (EEXIST)
	IsDir                   // is a directory (EISDIR)
	NotDir                  // not a directory (ENOTDIR)
	NotEmpty                // directory not empty (ENOTEMPTY)
	Permission              // the key has no authority (EACCES)
	Invalid                 // bad argument: path, mode, name (EINVAL)
	Unavailable             // content not complete on this node yet (EAGAIN)
	Corrupt                 // stored data fails its checks (EIO)
	Busy                    // another process holds the filesystem (EBUSY)
)

var kindText = [...]string{
	Other: "", NotExist: "no such file or directory", Exist: "already exists",
	IsDir: "is a directory", NotDir: "not a directory", NotEmpty: "directory not empty",
	Permission: "permission denied", Invalid: "invalid argument", Unavailable: "not available yet",
	Corrupt: "corrupt data", Busy: "busy",
}

// String names the kind in a user's words.
func (k Kind) String() string {
	if int(k) < len(kindText) {
		return kindText[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is an error of the replica: a kind, the path it concerns and the
// detail, phrased for the user.
type Error struct {
	Kind   Kind
	Path   string // inside the filesystem, when there is one
	Detail string // more words, when the kind and path do not say it all
	Err    error  // the underlying cause, if any
	text   string // the whole message, for errors rebuilt from elsewhere
}

// NewError returns an error of kind k whose message is exactly text (for an
// error that crossed a process boundary and was rendered there already).
func NewError(k Kind, text string) *Error { return &Error{Kind: k, text: text} }

// Error renders the error in a user's words: "KIND: PATH" when there is no
// detail; otherwise the detail, behind the path when the detail does not name
// it, and behind "permission denied: " for Permission (the form scripts match).
func (e *Error) Error() string {
	if e.text != "" {
		return e.text
	}
	if e.Detail == "" {
		s := e.Kind.String()
		if e.Path != "" {
			s += ": " + e.Path
		}
		if e.Err != nil {
			s += ": " + e.Err.Error()
		}
		return s
	}
	s := e.Detail
	if e.Path != "" && !strings.Contains(s, e.Path) {
		s = e.Path + ": " + s
	}
	if e.Kind == Permission {
		s = "permission denied: " + s
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errorf builds an Error of kind k at path with a formatted detail.
func errorf(k Kind, path, format string, args ...any) *Error {
	return &Error{Kind: k, Path: path, Detail: fmt.Sprintf(format, args...)}
}

// pathErr builds an Error of kind k at path, with the kind and path as the
// whole message ("no such file or directory: /etc/x").
func pathErr(k Kind, path string) *Error { return &Error{Kind: k, Path: path} }

// KindOf returns the kind of err (Other when it is not a replica error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Other
}

// IsKind reports whether err is a replica error of kind k.
func IsKind(err error, k Kind) bool { return err != nil && KindOf(err) == k }
