package fsapi

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/basefs/basefs/replica"
)

func TestKindErrno(t *testing.T) {
	want := map[replica.Kind]syscall.Errno{
		replica.Other: syscall.EIO, replica.NotExist: syscall.ENOENT, replica.Exist: syscall.EEXIST,
		replica.IsDir: syscall.EISDIR, replica.NotDir: syscall.ENOTDIR, replica.NotEmpty: syscall.ENOTEMPTY,
		replica.Permission: syscall.EACCES, replica.Invalid: syscall.EINVAL, replica.Unavailable: syscall.EAGAIN,
		replica.Corrupt: syscall.EIO, replica.Busy: syscall.EBUSY,
	}
	for k, e := range want {
		if got := KindErrno(k); got != e {
			t.Errorf("KindErrno(%v) = %v, want %v", k, got, e)
		}
		wrapped := fmt.Errorf("context: %w", replica.NewError(k, "x"))
		if got := Errno(wrapped); got != e {
			t.Errorf("Errno(wrapped %v) = %v, want %v", k, got, e)
		}
	}
	if Errno(nil) != 0 || Errno(errors.New("x")) != syscall.EIO || Errno(fmt.Errorf("a: %w", syscall.EXDEV)) != syscall.EXDEV {
		t.Error("Errno of nil, plain and errno errors")
	}
}

func TestIgnoreMatch(t *testing.T) {
	im := ignoreMatcher(DefaultIgnore())
	for _, p := range []string{"/etc/.app.conf.swp", "/.x.swo", "/a/.b.swx", "/a/.b.swpx", "/a/4913", "/a/app.conf~", "/a/#app.conf#",
		"/a/.#app.conf", "/a/.~lock.report.odt#"} {
		if !im.match(p) {
			t.Errorf("%s should be ignored", p)
		}
	}
	for _, p := range []string{"/", "/etc/app.conf", "/a/swp", "/a/.swp", "/a/sedAbC123", "/a/.app.conf.Ab12Cd", "/a/4914",
		"/a/~x", "/a/#x", "/a/lock"} {
		if im.match(p) {
			t.Errorf("%s should not be ignored", p)
		}
	}
	withSlash := ignoreMatcher{"/tmp/*"}
	if !withSlash.match("/tmp/x") || withSlash.match("/a/tmp/x") {
		t.Error("patterns with a slash match whole paths")
	}
}
