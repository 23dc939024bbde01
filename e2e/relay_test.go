//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/gitsource"
)

// The relay (issue 17): the push webhook goes to the VIP only, so only
// the master hears it; it tells the other nodes, which fetch at once.
// The nodes poll every 10 minutes, so only the relay can explain a node
// serving a commit within seconds. Commit-to-live on the last node goes
// to the figures table; no timing is asserted (CI is noisy).

const relayPoll = "@every 10m"

func relayInstance(nodes int) instanceSpec {
	in := fleetInstance()
	if nodes > 2 {
		in.prio["n3"] = 99
	}
	return in
}

func relayFleet(t *testing.T, nodes int) *fleet {
	t.Helper()
	f := newFleet(t, fleetOpts{nodes: nodes, backends: 3, spec: webSpec(relayInstance(nodes)), first: []string{"n2"}, poll: relayPoll})
	f.node("n2").d.waitState(t, "VI_1", "MASTER", 5*time.Second)
	f.mon.waitHolders(t, fleetVIP, []string{"n2"}, 5*time.Second)
	return f
}

// TestRelayTwoNodes: two nodes, the webhook to the VIP only → both serve
// every commit, each fetched once per node.
func TestRelayTwoNodes(t *testing.T) {
	f := relayFleet(t, 2)
	relayPushes(t, f, 3, "2 nodes")
}

// TestRelayThreeNodes walks the relay through its cases on one lab of
// three nodes.
func TestRelayThreeNodes(t *testing.T) {
	f := relayFleet(t, 3)
	t.Run("vip-webhook-reaches-every-node", func(t *testing.T) { relayPushes(t, f, 5, "3 nodes") })
	t.Run("forged-and-replayed-refused", func(t *testing.T) { relayRefused(t, f) })
	t.Run("missing-commit-changes-nothing", func(t *testing.T) { relayMissingCommit(t, f) })
	t.Run("peer-down-catches-up", func(t *testing.T) { relayPeerDown(t, f) })
}

// relayPushes pushes n commits, each with one webhook to the VIP, and
// waits until every node routes its new host (through each node's own
// proxy); it records the commit-to-live on the last node, and checks
// that each node fetched each commit once and that the master's peers
// acknowledged the last one.
func relayPushes(t *testing.T, f *fleet, n int, label string) {
	fetched, received := map[string]float64{}, map[string]float64{}
	for _, nd := range f.nodes {
		fetched[nd.name] = nd.metric(t, "gitedge_gitsource_fetches_total", `result="ok"`)
		received[nd.name] = nd.metric(t, "gitedge_gitsource_relays_received_total", `result="accepted"`)
	}
	master := f.node("n2")
	masterReceived := master.metric(t, "gitedge_gitsource_relays_received_total")
	var last []time.Duration
	spec := f.spec.clone()
	var head string
	for k := 1; k <= n; k++ {
		host := fmt.Sprintf("relay%d-%d.lab", len(f.nodes), k)
		be := fmt.Sprintf("be%d", 2+k%2)
		spec.setBackend(backendSpec{name: "rb" + strconv.Itoa(k), servers: []string{be + ":80"}})
		spec.setRoute(routeSpec{name: fmt.Sprintf("relay%d", k), hosts: []string{host}, http: "rb" + strconv.Itoa(k), tls: "secure"})
		head = f.git.commit(t, f.render(spec), "route "+host, false)
		at := time.Now()
		if err := f.git.hook(fleetVIP+":9000", head); err != nil {
			t.Fatal(err)
		}
		// Far below the 10-minute poll: only the relay brings it.
		lat := f.waitRouteAll(t, host, be, at, 20*time.Second)
		if len(lat) != len(f.nodes) {
			t.Fatalf("%d nodes route %s, want %d", len(lat), host, len(f.nodes))
		}
		last = append(last, slicesMax(lat))
	}
	f.spec, f.head = spec, head
	figure("relay", "commit-to-live on the last node, webhook to the VIP only ("+label+", median of "+strconv.Itoa(n)+")",
		"%v (ms: %s)", medianOf(last).Round(time.Millisecond), msList(last))
	for _, nd := range f.nodes {
		nd.waitLive(t, head, 10*time.Second)
		// Each node fetched each commit once: no second fetch for a relay
		// of a commit it has.
		if got := nd.metric(t, "gitedge_gitsource_fetches_total", `result="ok"`) - fetched[nd.name]; got != float64(n) {
			t.Errorf("%s fetched %v times for %d commits, want once each\n%s", nd.name, got, n, nd.d.logTail(30))
		}
	}
	// No loops: only the master relays (what a relay made a peer find is
	// never relayed), so it hears none, and each peer takes each commit
	// once.
	if got := master.metric(t, "gitedge_gitsource_relays_received_total") - masterReceived; got != 0 {
		t.Errorf("the master received %v relays, want none: a relay was relayed again", got)
	}
	for _, nd := range f.nodes {
		if nd == master {
			continue
		}
		if got := nd.metric(t, "gitedge_gitsource_relays_received_total", `result="accepted"`) - received[nd.name]; got != float64(n) {
			t.Errorf("%s accepted %v relays, want %d (one per commit)", nd.name, got, n)
		}
		master.waitStatus(t, nd.name+" acknowledging "+short(head), 10*time.Second, func(s nodeStatus) bool {
			for _, p := range s.Relay {
				if p.Name == nd.name {
					return p.Commit == head && p.Acknowledged
				}
			}
			return false
		})
	}
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// relayRefused: a relay signed with another key is refused (403), a
// valid one sent twice is refused the second time (409); both counted.
func relayRefused(t *testing.T, f *fleet) {
	n1 := f.node("n1")
	forged0 := n1.metric(t, "gitedge_gitsource_relays_received_total", `result="refused-signature"`)
	replay0 := n1.metric(t, "gitedge_gitsource_relays_received_total", `result="refused-replay"`)
	msg := gitsource.NewRelayMessage("n2", "refs/heads/main", f.head, time.Now()).Marshal()
	if code := f.sendRelay(t, n1, msg, "not-the-fleet's-secret"); code != http.StatusForbidden {
		t.Errorf("forged relay: status %d, want 403", code)
	}
	if code := f.sendRelay(t, n1, msg, f.git.secret); code/100 != 2 {
		t.Errorf("valid relay: status %d, want 2xx", code)
	}
	if code := f.sendRelay(t, n1, msg, f.git.secret); code != http.StatusConflict {
		t.Errorf("replayed relay: status %d, want 409", code)
	}
	if got := n1.metric(t, "gitedge_gitsource_relays_received_total", `result="refused-signature"`) - forged0; got != 1 {
		t.Errorf("refused-signature counted %v, want 1", got)
	}
	if got := n1.metric(t, "gitedge_gitsource_relays_received_total", `result="refused-replay"`) - replay0; got != 1 {
		t.Errorf("refused-replay counted %v, want 1", got)
	}
}

// relayMissingCommit: a valid relay naming a commit the remote does not
// have makes the node look once; it finds the head unchanged, fetches
// nothing and keeps serving its commit.
func relayMissingCommit(t *testing.T, f *fleet) {
	n1 := f.node("n1")
	skipped0 := n1.metric(t, "gitedge_gitsource_fetch_skipped_total")
	fetches0 := n1.metric(t, "gitedge_gitsource_fetches_total")
	missing := strings.Repeat("5a", 20)
	msg := gitsource.NewRelayMessage("n2", "refs/heads/main", missing, time.Now()).Marshal()
	if code := f.sendRelay(t, n1, msg, f.git.secret); code != http.StatusAccepted {
		t.Fatalf("relay of a missing commit: status %d, want 202 (a hint: the look decides)", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for n1.metric(t, "gitedge_gitsource_fetch_skipped_total") <= skipped0 {
		if time.Now().After(deadline) {
			t.Fatalf("n1 did not look after the relay within 15s\n%s", n1.d.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := n1.metric(t, "gitedge_gitsource_fetches_total"); got != fetches0 {
		t.Errorf("n1 fetched (%v → %v) for a commit the remote lacks", fetches0, got)
	}
	if s, err := n1.status(); err != nil || s.live() != f.head {
		t.Errorf("n1 serves %q (%v), want %s still", s.live(), err, short(f.head))
	}
}

// relayPeerDown: n3 is stopped during a push; n1 and n2 serve the commit,
// the master skips n3 quietly (connection refused: no warning); n3 serves
// the commit once it runs again.
func relayPeerDown(t *testing.T, f *fleet) {
	n2, n3 := f.node("n2"), f.node("n3")
	n3.stop(t)
	mark := n2.d.mark()
	spec := f.spec.clone()
	spec.setRoute(routeSpec{name: "down", hosts: []string{"down.lab"}, http: "app", tls: "secure"})
	head := f.git.commit(t, f.render(spec), "while n3 is down", false)
	if err := f.git.hook(fleetVIP+":9000", head); err != nil {
		t.Fatal(err)
	}
	f.spec, f.head = spec, head
	f.node("n1").waitLive(t, head, 20*time.Second)
	n2.waitLive(t, head, 20*time.Second)
	n2.waitStatus(t, "n3 skipped", 30*time.Second, func(s nodeStatus) bool {
		for _, p := range s.Relay {
			if p.Name == "n3" {
				return p.Commit == head && !p.Acknowledged && p.Result == "skipped" && p.LastError != ""
			}
		}
		return false
	})
	if lines := n2.d.linesSince(mark, `"level":"WARN","msg":"relay`); len(lines) > 0 {
		t.Errorf("a peer down warned: %v", lines)
	}
	n3.start(t)
	n3.waitLive(t, head, 20*time.Second)
}

// sendRelay posts a relay body signed with key to node n's relay
// endpoint, from the git server's namespace, and returns the status.
func (f *fleet) sendRelay(t *testing.T, n *edgeNode, body []byte, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+n.addr.String()+":9000"+gitsource.RelayPath("/hook"), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(gitsource.HeaderRelaySignature, gitsource.SignRelay([]byte(key), body))
	resp, err := f.git.hooks.Do(req)
	if err != nil {
		t.Fatalf("relay to %s: %v", n.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric sums the samples of the node's metric name whose labels include
// every one of labels (as `result="accepted"`).
func (n *edgeNode) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := n.admin.Get("http://127.0.0.1:9100/metrics")
	if err != nil {
		t.Fatalf("%s: /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: metric line %q: %v", n.name, line, err)
		}
		sum += v
	}
	return sum
}
