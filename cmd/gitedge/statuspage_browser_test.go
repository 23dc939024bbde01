package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gitedge/gitedge/internal/testkit"
)

// chromiumPath finds the browser: $GITEDGE_CHROMIUM, or Debian's chromium
// (make deps installs it).
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("GITEDGE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testkit.Missing(t, "no chromium: `make deps` installs it (apt-get install chromium), or set GITEDGE_CHROMIUM to a Chrome binary")
	return ""
}

// artifactsDir is where the browser test leaves its screenshots:
// $GITEDGE_ARTIFACTS, or bin/artifacts at the repository's root.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("GITEDGE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// TestStatusPageInBrowser loads the status page of a running node (the
// built binary, a git daemon, two routes and two backends) in headless
// Chromium: the live commit and the route's host are in the rendered
// DOM, the page reports no console error, exception or CSP violation, the
// refresh script replaces the content in place, a phone-width viewport
// needs no horizontal scrolling, a refused commit whose error quotes
// markup shows it as text and runs nothing, and screenshots land in the
// artifacts directory. With -update it also rewrites docs/status-page.png.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	f := newFleetNode(t)
	files := maps.Clone(f.goodFiles)
	files["backends.yaml"] = fmt.Sprintf("apiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: one}\nspec:\n  servers: [{name: s1, address: %q, weight: 3}]\n"+
		"---\napiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: two}\nspec:\n  servers: [{name: s2, address: %q, maxConn: 100}]\n", f.one, f.two)
	files["routes/b.yaml"] = "apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: apps}\nspec:\n  hosts: [b.test, \"*.apps.test\"]\n  http: {backend: two}\n"
	f.good = f.remote.commit("main", "route b.test and *.apps.test to two", files)
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	n.waitStatus("the commit live with its backends", func(s nodeStatus) bool {
		return s.Live != nil && s.Live.Commit == f.good && len(s.Backends) == 2 && len(s.Routes) == 2
	})
	url := "http://" + f.admin + "/"

	// The page as served: its weight and headers.
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	t.Logf("page weight: %d bytes (HTML with inline CSS and script; nothing else is loaded)", len(body))

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900), chromedp.Flag("disable-gpu", true))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Every console error or warning, uncaught exception and browser log
	// entry (a CSP violation, a failed load) is a failure.
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	if err := chromedp.Listen(bctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				report("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			report("uncaught exception: %s (line %d)", msg, d.LineNumber)
		case *log.EventEntryAdded:
			if e := ev.Entry; e.Level == log.EntryLevelError || e.Level == log.EntryLevelWarning {
				report("browser log %s (%s): %s %s", e.Level, e.Source, e.Text, e.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#live-commit"))); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	t.Logf("first load: %s (navigation until the live commit is visible)", time.Since(start).Round(time.Millisecond))
	nav, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](
		`(() => { const n = performance.getEntriesByType("navigation")[0]; return {ttfb: n.responseStart - n.requestStart, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes: n.transferSize, resources: performance.getEntriesByType("resource").length}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("navigation timing: server %.1f ms, DOMContentLoaded %.1f ms, load %.1f ms, %.0f bytes transferred, %.0f other resources",
		nav["ttfb"], nav["dom"], nav["load"], nav["bytes"], nav["resources"])
	if nav["resources"] != 0 {
		t.Errorf("the page loaded %v other resources, want none", nav["resources"])
	}

	commit, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#live-commit")))
	if err != nil || strings.TrimSpace(commit) != f.good {
		t.Errorf("#live-commit = %q, %v; want %s", commit, err, f.good)
	}
	hosts, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#routes td.host")].map(e => e.textContent)`))
	if err != nil || !slices.Equal(hosts, []string{"*.apps.test", "a.test", "b.test"}) {
		t.Errorf("route hosts in the DOM = %q, %v; want [*.apps.test a.test b.test]", hosts, err)
	}
	servers, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#routes tbody tr:nth-child(2) .srv").textContent`))
	if err != nil || servers != "s1 up · w3 · 0 active" {
		t.Errorf("the route's server = %q, %v", servers, err)
	}
	if health, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#health"))); health != "OK" {
		t.Errorf("health badge = %q, want OK", health)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(artifactsDir(t), name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
		if testkit.Updating() && name == "statuspage-desktop.png" {
			docs := filepath.Join("..", "..", "docs", "status-page.png")
			if err := os.WriteFile(docs, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", docs)
		}
	}
	shot("statuspage-desktop.png")

	// The refresh script replaces the content in place: the render time
	// changes, the pause button still works.
	first, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("main").dataset.generated`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.getElementById("main").dataset.generated !== `+fmt.Sprintf("%q", first), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Errorf("the page did not refresh itself within 20s: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#pause"))); err != nil {
		t.Fatal(err)
	}
	if label, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#refresh"))); label != "paused" {
		t.Errorf("after pause the page says %q", label)
	}

	// A phone: 390 CSS pixels wide, no horizontal scrolling of the page.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#live-commit"))); err != nil {
		t.Fatal(err)
	}
	over, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](`[document.documentElement.scrollWidth, document.documentElement.clientWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(over) != 2 || over[0] > over[1] {
		t.Errorf("on a 390px phone the page is %v px wide for a %v px viewport (horizontal scrolling)", over[0], over[1])
	}
	shot("statuspage-phone.png")

	// A refused commit whose error quotes hostile text: the page says
	// PROBLEM and shows the text as text, and nothing runs.
	hostileFiles := maps.Clone(files)
	hostileFiles["routes/a.yaml"] = "apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: a}\nspec:\n  hosts: [a.test]\n  http: {backend: \"<img src=x onerror=window.pwned=1>\"}\n"
	f.bad = f.remote.commit("main", "<script>window.pwned=2</script>", hostileFiles)
	n.waitStatus("the hostile commit refused", func(s nodeStatus) bool { return s.LastAttempt != nil && s.LastAttempt.Commit == f.bad })
	if err := chromedp.Do(bctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#problems"))); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]any](`({imgs: document.querySelectorAll("img").length, scripts: document.scripts.length, pwned: window.pwned === undefined ? 0 : window.pwned,
		error: document.querySelector("#attempts pre").textContent, health: document.getElementById("health").textContent, live: document.getElementById("live-commit").textContent})`))
	if err != nil {
		t.Fatal(err)
	}
	if got["imgs"] != 0.0 || got["scripts"] != 1.0 || got["pwned"] != 0.0 || got["health"] != "PROBLEM" || got["live"] != f.good ||
		!strings.Contains(fmt.Sprint(got["error"]), "<img src=x onerror=window.pwned=1>") {
		t.Errorf("the page after a hostile commit was refused: %v", got)
	}
	shot("statuspage-problem.png")

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the browser: %s", p)
	}
}
