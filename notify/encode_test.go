package notify

import (
	"testing"
)

func TestSlackCut(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in    string
		limit int
		want  string
	}{
		{"a &amp; b", 20, "a &amp; b"},
		{"abc &amp; d", 7, "abc …"}, // never "abc &a…"
		{"abc &amp; defgh", 11, "abc &amp;…"},
	} {
		if got := slackCut(tt.in, tt.limit); got != tt.want {
			t.Errorf("slackCut(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}
