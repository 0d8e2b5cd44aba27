package gossip

import (
	"context"
	"log/slog"
	"strings"
)

// slogWriter adapts Serf's and memberlist's log.Logger output to slog, at
// debug level whatever the line's own level ("[WARN] …" is kept as the
// serf_level attribute): Serf logs routine trouble (a failed probe, an
// unreachable peer) as warnings and errors, which would spam a node's log.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	if !w.l.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	s := strings.TrimRight(string(p), "\r\n")
	level := ""
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			level, s = s[1:i], strings.TrimSpace(s[i+1:])
		}
	}
	w.l.Debug(s, "serf_level", level)
	return len(p), nil
}
