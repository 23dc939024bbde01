package forge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// The token never shows: not in any log line (Debug included), error,
// snapshot, String, fmt verb or JSON, even when the forge echoes it back in
// an error body or the caller puts it in a description.
func TestTokenNeverShown(t *testing.T) {
	t.Parallel()
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			creds := r.Header.Get("Authorization") + r.Header.Get("Private-Token")
			answer(code, fmt.Sprintf(`{"message":"refused credentials %s"}`, creds))(w, r)
		}
	}
	for _, kind := range []Kind{GitHub, Gitea, GitLab} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f := newFakeForge(echo(500), echo(422), echo(401), created)
			g := newRig(t, Config{Kind: kind, API: "/api", Repository: "infra/edge", RetryMin: 1}, f, false)
			g.r.Report(commitA, Failure, "bad commit; the token is "+testToken)
			var sent [][]byte
			for range 2 {
				sent = append(sent, f.Next(t).Body)
			}
			waitLog(t, g.log, "forge status given up")
			g.r.Report(commitB, Success, "")
			f.Next(t) // 401: the token file is re-read, unchanged: given up
			waitLog(t, g.log, "forge status given up")

			snap := g.r.Snapshot()
			js, err := json.Marshal(snap)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			tok := *g.r.tok.Load()
			slog.New(slog.NewTextHandler(&b, nil)).Info("x", "token", tok, "reporter", g.r, "config", g.r.cfg)
			outputs := map[string]string{
				"log":       g.log.Text(),
				"snapshot":  string(js),
				"lastError": snap.LastError,
				"fmt":       fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%v|%+v", tok, tok, tok, tok, tok, tok, g.r, g.r.cfg),
				"slog":      b.String(),
				"bodies":    string(bytes.Join(sent, nil)),
			}
			if j, _ := json.Marshal(tok); string(j) != `"[redacted]"` {
				t.Errorf("token JSON %s", j)
			}
			for name, out := range outputs {
				if strings.Contains(out, testToken) {
					t.Errorf("%s shows the token:\n%s", name, out)
				}
			}
			if !strings.Contains(outputs["log"], "refused credentials") || !strings.Contains(outputs["log"], redacted) {
				t.Errorf("the echoed error did not reach the log (so the check proves nothing):\n%s", outputs["log"])
			}
			if !strings.Contains(outputs["bodies"], "the token is [redacted]") {
				t.Errorf("description not scrubbed: %s", outputs["bodies"])
			}
		})
	}
}
