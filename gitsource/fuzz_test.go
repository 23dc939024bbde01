package gitsource

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseEvent feeds arbitrary bodies and headers to the webhook parser:
// it must not panic, and what it accepts as a forge's push names a full ref.
// The signature check must accept exactly the bodies signed with the secret.
func FuzzParseEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "webhook", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, forge := range []string{"github", "gitea", "gitlab", "generic"} {
			f.Add(forge, "push", "application/json", b)
		}
	}
	f.Add("gitlab", "Tag Push Hook", "application/json", []byte(`{"object_kind":"tag_push","ref":"refs/tags/v1"}`))
	f.Add("github", "push", "application/x-www-form-urlencoded", []byte(`payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D`))
	f.Add("github", "push", "application/x-www-form-urlencoded; charset=utf-8", []byte(`payload=%zz`))
	f.Add("generic", "", "", []byte{})
	f.Add("github", "push", "application/json", []byte(`{"ref":"main"}`))
	f.Add("gitea", "push", "application/json", []byte(`{"ref":null,"after":7}`))
	f.Add("gitlab", "Push Hook", "application/json", []byte(`{"object_kind":"push","ref":"refs/heads/`+strings.Repeat("a", 300)+`"}`))

	f.Fuzz(func(t *testing.T, forge, event, contentType string, body []byte) {
		h := http.Header{}
		h.Set("Content-Type", contentType)
		switch Forge(forge) {
		case ForgeGitHub:
			h.Set(HeaderGitHubEvent, event)
		case ForgeGitea:
			h.Set(HeaderGiteaEvent, event)
		case ForgeGitLab:
			h.Set(HeaderGitLabEvent, event)
		default:
			if event != "" {
				h.Set(HeaderGenericEvent, event)
			}
		}
		fg := DetectForge(h)
		ev, err := ParseEvent(fg, h, body)
		if err == nil && ev.Kind == "push" {
			if ev.Ref == "" && fg != ForgeGeneric {
				t.Fatalf("%s push accepted without a ref", fg)
			}
			if ev.Ref != "" && !strings.HasPrefix(ev.Ref, "refs/") {
				t.Fatalf("ref %q accepted", ev.Ref)
			}
		}
		// The same body as the beginning of a longer one: what it finds
		// is what the whole body says, or less.
		pev, perr := parseEvent(fg, h, body, true)
		if perr == nil && pev.Kind == "push" && pev.Ref != "" && !strings.HasPrefix(pev.Ref, "refs/") {
			t.Fatalf("ref %q accepted from a prefix", pev.Ref)
		}
		if err == nil && perr == nil && pev.Ref != "" && pev.Ref != ev.Ref {
			t.Fatalf("prefix found ref %q, the whole body %q", pev.Ref, ev.Ref)
		}

		secret := []byte("fuzz-secret")
		switch fg {
		case ForgeGitHub:
			h.Set(HeaderGitHubSignature, "sha256="+hmacHex(secret, body))
		case ForgeGitea:
			h.Set(HeaderGiteaSignature, hmacHex(secret, body))
		case ForgeGitLab:
			h.Set(HeaderGitLabToken, string(secret))
		default:
			h.Set(HeaderGenericSignature, "sha256="+hmacHex(secret, body))
		}
		if err := CheckSignature(fg, h, body, secret); err != nil {
			t.Fatalf("signed body refused: %v", err)
		}
		if fg != ForgeGitLab {
			tampered := append([]byte("x"), body...)
			if CheckSignature(fg, h, tampered, secret) == nil {
				t.Fatal("tampered body accepted")
			}
		}
		if CheckSignature(fg, h, body, []byte("other-secret")) == nil {
			t.Fatal("accepted under another secret")
		}
	})
}

// FuzzMemFSLink resolves arbitrary link targets: no panic, no escape, and
// what a link yields is a file of the tree or an error.
func FuzzMemFSLink(f *testing.F) {
	for _, s := range []string{"f", "../top", "../../etc/passwd", "/etc/passwd", "", ".", "..", "./f/", "d/../f", "l", "in/l", "../in/l", "//f", "a/b/../../f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		m := NewMemFS(map[string][]byte{"in/f": []byte("x"), "top": []byte("t")}, map[string]string{"in/l": target, "in/m": "l"})
		for _, name := range []string{"in/l", "in/m"} {
			b, err := m.ReadFile(name)
			if err == nil && string(b) != "x" && string(b) != "t" {
				t.Fatalf("link to %q read %q", target, b)
			}
			if strings.HasPrefix(target, "/") && !errors.Is(err, ErrLinkOutside) {
				t.Fatalf("absolute link %q: %v", target, err)
			}
			if p, _, err := m.resolve("open", name, true); err == nil &&
				(strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") || slices.Contains(strings.Split(p, "/"), "")) {
				t.Fatalf("link %q resolved to %q", target, p)
			}
			if got, err := m.ReadLink("in/l"); got != target || err != nil {
				t.Fatalf("ReadLink = %q, %v", got, err)
			}
		}
	})
}

// FuzzParseRelay: any body gives a message or ErrRelayMessage, never a
// panic; a message parsed is one Marshal gives back the same way.
func FuzzParseRelay(f *testing.F) {
	f.Add(NewRelayMessage("lb-0", "refs/heads/main", commitA, time.UnixMilli(1764800000000)).Marshal())
	f.Add([]byte(`{"from":"lb-0","commit":"` + commitA + `","time":1,"nonce":"00112233445566778899aabbccddeeff"}`))
	f.Add([]byte(`{"from":"lb-0","commit":"` + commitA + `","time":1,"nonce":"00112233445566778899aabbccddeeff"} {}`))
	f.Add([]byte(`{"from":"","commit":"0000000000000000000000000000000000000000","time":-1,"nonce":"x","files":1}`))
	f.Add([]byte(`{"from":"lb\u0000","ref":"main","commit":"` + strings.ToUpper(commitA) + `","time":1e3,"nonce":"00"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseRelay(body)
		if err != nil {
			if !errors.Is(err, ErrRelayMessage) {
				t.Fatalf("error %v is not ErrRelayMessage", err)
			}
			return
		}
		again, err := ParseRelay(m.Marshal())
		if err != nil || again != m {
			t.Fatalf("round trip: %+v → %+v, %v", m, again, err)
		}
	})
}
