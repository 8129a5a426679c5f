package kafkaopts

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Logger returns a franz-go logger writing to log. franz-go logs
// connections, metadata and group changes at its info level, which is
// chatty for a daemon: its levels map one step down, so that its info and
// debug lines are slog debug lines, its warnings warnings, and its errors
// (mostly retried internally) warnings too.
func Logger(log *slog.Logger) kgo.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return slogger{log}
}

type slogger struct{ l *slog.Logger }

// Level returns the most detailed franz-go level that log would print.
func (s slogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case s.l.Enabled(ctx, slog.LevelDebug-4):
		return kgo.LogLevelDebug
	case s.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case s.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelNone
}

// Log writes one franz-go log line.
func (s slogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError, kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelDebug
	default:
		l = slog.LevelDebug - 4
	}
	s.l.Log(context.Background(), l, "franz-go: "+msg, keyvals...)
}
