package main

import (
	"fmt"
	"io"
	"log/slog"
)

// newLogger makes the logger of every command: level debug, info, warn or
// error; format text (key=value) or json. Durations are written as Go
// durations ("1.5s") in both formats, never as nanoseconds.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: expected debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv, ReplaceAttr: readableDurations}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: expected text or json", format)
}

// readableDurations writes a duration attribute as its String: slog's JSON
// handler would write nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
