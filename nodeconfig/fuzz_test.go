package nodeconfig

import (
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

// FuzzParse: any bytes give a Config or an error naming the file, never
// a panic, and never a decoder's prefix ("json:", "yaml:") in place of a
// located message.
func FuzzParse(f *testing.F) {
	testkit.SeedFiles(f, "../examples/nodes/*.yaml")
	f.Add([]byte("node: a\nsource: {url: /x}\nwebhook: {listen: ':9', secretFile: /s, relay: {port: 9443, window: 5s, peers: {b: 'https://b:1/x'}}}\n"))
	f.Add([]byte("node: a\nsource: {url: /x}\nwebhook: {listen: ':9', secretFile: /s, relay: false}\n"))
	f.Add([]byte("node: a\nsource: {url: /x}\nwebhook: {listen: ':9', secretFile: /s, relay: [no]}\n"))
	f.Add([]byte("node: a\nsource: {url: /x, depth: [1]}\nwebhook: {listen: ':9', secretFile: /s, limits: {bodyTimeout: x}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("gitedge.yaml", data)
		if err == nil {
			if c == nil || c.Node == "" {
				t.Fatalf("no error and config %+v", c)
			}
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "node config gitedge.yaml") {
			t.Fatalf("error does not name the file: %s", msg)
		}
		if strings.Contains(msg, "json: ") || strings.Contains(msg, "error unmarshaling") || strings.Contains(msg, "error converting YAML") {
			t.Fatalf("a decoder's prefix in the message: %s", msg)
		}
	})
}
