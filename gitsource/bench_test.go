package gitsource

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The benchmark repository: benchFiles route files, benchCommits commits.
const (
	benchFiles   = 10000
	benchCommits = 100
)

func routeYAML(i, gen int) string {
	return fmt.Sprintf(`apiVersion: gitedge/v1
kind: Route
metadata: {name: route-%05d}
spec:
  hosts: [app-%05d.example.org, "*.app-%05d.example.org"]
  http: {backend: pool-%03d}
  tls:  {backend: pool-%03d-tls}
# generation %d
`, i, i, i, i%500, i%500, gen)
}

// fastImport appends commits to the bare repository with git fast-import:
// each commit sets the given files. It returns the new head.
type fastImport struct {
	t     testing.TB
	bare  string
	env   []string
	mark  int
	when  int64
	first bool
}

func (fi *fastImport) commit(msg string, files map[string]string) string {
	fi.t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	fi.mark++
	fi.when++
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.org> %d +0000\ndata %d\n%s\n", fi.when, len(msg), msg)
	if !fi.first {
		fmt.Fprintf(w, "from refs/heads/main^0\n")
	}
	fi.first = false
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", n, len(files[n]), files[n])
	}
	w.WriteString("done\n")
	w.Flush()
	cmd := exec.Command("git", "fast-import", "--quiet", "--done")
	cmd.Dir, cmd.Env, cmd.Stdin = fi.bare, fi.env, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		fi.t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return run(fi.t, fi.bare, fi.env, "git", "rev-parse", "refs/heads/main")
}

type benchRig struct {
	fi  *fastImport
	h   *httpGit
	f   *follower
	gen int
	rng *rand.Rand
}

// rig builds the 10,000-file, 100-commit repository behind git
// http-backend and starts a follower process on it.
func rig(b *testing.B) *benchRig {
	u := &upstream{t: b, root: b.TempDir(), env: gitEnv(b)}
	u.bare = u.root + "/repo.git"
	run(b, u.root, u.env, "git", "init", "-q", "--bare", "-b", "main", u.bare)
	r := &benchRig{fi: &fastImport{t: b, bare: u.bare, env: u.env, when: 1_700_000_000, first: true},
		rng: rand.New(rand.NewPCG(1, 2))}
	all := make(map[string]string, benchFiles)
	for i := range benchFiles {
		all[fmt.Sprintf("edge/routes/r%05d.yaml", i)] = routeYAML(i, 0)
	}
	r.fi.commit("initial routes", all)
	for c := 1; c < benchCommits; c++ {
		r.fi.commit(fmt.Sprint("change ", c), r.changes(10))
	}
	r.h = startHTTPGit(b, u.root, "", "")
	r.f = startFollower(b, r.h.URL)
	return r
}

func (r *benchRig) changes(n int) map[string]string {
	r.gen++
	m := map[string]string{}
	for range n {
		i := r.rng.IntN(benchFiles)
		m[fmt.Sprintf("edge/routes/r%05d.yaml", i)] = routeYAML(i, r.gen)
	}
	return m
}

func countFiles(rev Revision) int {
	entries, err := fs.ReadDir(rev.Files, "routes")
	if err != nil {
		return -1
	}
	return len(entries)
}

// follower is a child process (this test binary) that does what a node
// does with its source, and nothing else: a Git source following the
// remote and the webhook in front of it. Its memory is the node's.
type follower struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   *bufio.Scanner
	hookURL string
	clone   time.Duration
	// Memory after the last revision, MiB: peak RSS, RSS, Go heap in use.
	hwm, rss, heap float64
	maxRSS         float64
}

const followerEnv = "GITSOURCE_BENCH_FOLLOWER"

func startFollower(b *testing.B, url string) *follower {
	b.Helper()
	secret := testkit.TempFile(b, "secret", testSecret)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), followerEnv+"="+url, "FOLLOWER_STATE="+b.TempDir(), "FOLLOWER_SECRET="+secret)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	f := &follower{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	b.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	f.hookURL = strings.TrimPrefix(f.line(b), "hook ")
	start := time.Now()
	commit, n := f.rev(b)
	f.clone = time.Since(start)
	if n != benchFiles {
		b.Fatalf("follower cloned %s with %d files, want %d", short(commit), n, benchFiles)
	}
	return f
}

func (f *follower) line(b *testing.B) string {
	if !f.lines.Scan() {
		b.Fatalf("follower ended: %v", f.lines.Err())
	}
	return f.lines.Text()
}

// rev waits for the follower's next revision: its commit and file count,
// and records the follower's memory at that moment.
func (f *follower) rev(b *testing.B) (string, int) {
	l := f.line(b)
	var commit string
	var n int
	if _, err := fmt.Sscanf(l, "rev %s %d %g %g %g", &commit, &n, &f.hwm, &f.rss, &f.heap); err != nil {
		b.Fatalf("follower said %q: %v", l, err)
	}
	if os.Getenv("FOLLOWER_TRACE") != "" {
		b.Logf("rev %s hwm %.1f rss %.1f heap %.1f", short(commit), f.hwm, f.rss, f.heap)
	}
	f.maxRSS = max(f.maxRSS, f.rss)
	return commit, n
}

// runFollower is the follower process's body (see TestMain).
func runFollower() {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "follower:", err); os.Exit(2) }
	depth, _ := strconv.Atoi(os.Getenv("FOLLOWER_DEPTH"))
	g, err := New(Config{URL: os.Getenv(followerEnv), Path: "edge", StateDir: os.Getenv("FOLLOWER_STATE"), Depth: depth}, Options{})
	if err != nil {
		fail(err)
	}
	w, err := NewWebhook(WebhookConfig{SecretFile: os.Getenv("FOLLOWER_SECRET"), Ref: g.cfg.Ref()}, g.Trigger, Options{})
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin) // the benchmark closes stdin when done
		cancel()
	}()
	go w.Serve(ctx, ln)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "hook http://%s/hook\n", ln.Addr())
	out.Flush()
	for {
		rev, err := g.Next(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fail(err)
		}
		// Memory now, with the revision (the loader's input) still held,
		// as a node holds its live revision.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(out, "rev %s %d %.1f %.1f %.1f\n", rev.Commit, countFiles(rev),
			procStatus("VmHWM"), procStatus("VmRSS"), float64(ms.HeapInuse)/(1<<20))
		out.Flush()
		if p := os.Getenv("FOLLOWER_HEAPPROFILE"); p != "" {
			if f, err := os.Create(p); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		runtime.KeepAlive(rev)
	}
	os.Exit(0)
}

// BenchmarkWebhookToFiles measures, per new commit, the time from sending
// a signed GitHub push webhook to a follower process having the new
// commit's files: one ref listing, one incremental fetch over git
// http-backend, and the read of 10,000 files (changed blobs only). It
// reports the median and p90, the initial clone time, and the follower's
// peak RSS (VmHWM, which includes the clone and any compaction), the
// highest RSS seen at a revision, and its Go heap in use at the last one.
// FOLLOWER_HEAPPROFILE=file writes the follower's heap profile;
// FOLLOWER_DEPTH=n sets the follower's source.depth (measured: depth 1 on
// every fetch makes each fetch resend the whole tree, 300 ms and 150 MiB). It uses b.Loop, so the setup runs once.
func BenchmarkWebhookToFiles(b *testing.B) {
	r := rig(b)
	var lat []time.Duration
	client := &http.Client{}
	for b.Loop() {
		b.StopTimer()
		want := r.fi.commit(fmt.Sprint("bench change ", r.gen), r.changes(3))
		body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, want))
		req := forgeRequest(b, r.f.hookURL, ForgeGitHub, "push", body, "good")
		b.StartTimer()

		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("webhook: %d", resp.StatusCode)
		}
		got, n := r.f.rev(b)
		lat = append(lat, time.Since(start))
		if got != want || n != benchFiles {
			b.Fatalf("got %s with %d files, want %s with %d", short(got), n, short(want), benchFiles)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms/median")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "ms/p90")
	b.ReportMetric(float64(r.f.clone.Milliseconds()), "ms/clone")
	b.ReportMetric(r.f.hwm, "MiB-VmHWM")
	b.ReportMetric(r.f.maxRSS, "MiB-maxVmRSS")
	b.ReportMetric(r.f.heap, "MiB-heap")
}

// procStatus reads a kB field of /proc/self/status, in MiB.
func procStatus(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}
