package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/notify"
)

// TestPrintStatusFeedbackErrorsHaveTimes: gitedge status says when the
// forge and a notification sink last failed (a failure they no longer
// have is cleared by forge and notify themselves).
func TestPrintStatusFeedbackErrorsHaveTimes(t *testing.T) {
	at := time.Now().Add(-90 * time.Second)
	var out strings.Builder
	printStatus(&out, nodeStatus{
		Forge: &forge.Snapshot{Forge: "github", Repository: "infra/edge", Context: "gitedge/lb-0",
			LastError: "success for 0123456789ab: answered 422", LastErrorAt: at},
		Notify: &notify.Snapshot{Sinks: []notify.SinkStatus{{Kind: "slack", URL: "https://hooks.example/…", Sent: 2, Failed: 1,
			LastError: "answered 404 Not Found", LastErrorAt: at}}},
	})
	for _, want := range []string{
		`forge: +github infra/edge as gitedge/lb-0, 0 waiting, last error 1m3\ds ago: success for 0123456789ab: answered 422\n`,
		`notify: +slack https://hooks.example/…: 2 sent, 1 failed, last error 1m3\ds ago: answered 404 Not Found\n`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("gitedge status lacks %s:\n%s", want, out.String())
		}
	}
}
