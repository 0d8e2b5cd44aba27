package syncproto

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves goroutines behind (a session,
// stream or server that never ended).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
