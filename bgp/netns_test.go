package bgp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Scenarios against FRR in network namespaces (lab_test.go). Each quotes
// its figures in the test log (go test -v -run TestFRR ./bgp/).

func (l *lab) addrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range l.nodes {
		out = append(out, n.addr)
	}
	return out
}

func vipAddr(p netip.Prefix) string {
	return net.JoinHostPort(p.Addr().String(), fmt.Sprint(servePort))
}

// spread opens n connections (8 at a time) and counts who answered.
func (l *lab) spread(p netip.Prefix, n int) (map[string]int, int) {
	var mu sync.Mutex
	counts := map[string]int{}
	failed := 0
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for range 8 {
		wg.Go(func() {
			for range jobs {
				node, c, err := l.pool.hello(vipAddr(p), time.Second)
				if c != nil {
					c.Close()
				}
				mu.Lock()
				if err != nil {
					failed++
				} else {
					counts[node]++
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return counts, failed
}

// 1. Three speakers: sessions open before the proxy serves and nothing
// is announced; once they serve, the router's FIB holds the prefix with
// three next hops, and 3,000 new connections spread within ±20% of a
// third each.
func TestFRRSpread(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	for _, n := range l.nodes {
		l.apply(n, l.config(n, 3*time.Second, vip1))
	}
	l.waitEstablished(20*time.Second, l.addrs()...)
	if st := l.status(l.nodes[0]); st.State != "waitingForProxy" || st.Announcements[0].Announced {
		t.Fatalf("before the proxy serves: %+v", st)
	}
	if gws := l.fib.now(vip1); len(gws) != 0 {
		t.Fatalf("the router routes %s via %v before any node serves", vip1, gws)
	}
	for _, n := range l.nodes {
		l.serve(n)
	}
	l.fib.waitFor(t, vip1, 10*time.Second, sameSet(l.addrs()...))
	const total = 3000
	start := time.Now()
	counts, failed := l.spread(vip1, total)
	t.Logf("spread of %d connections over 3 nodes: %v, %d failed, in %v", total, counts, failed, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d connections failed", failed)
	}
	for _, n := range l.nodes {
		if c := counts[n.name]; c < total/3*8/10 || c > total/3*12/10 {
			t.Errorf("%s got %d of %d connections, want %d±20%%", n.name, c, total, total/3)
		}
	}
	st := l.status(l.nodes[0])
	if st.State != "announcing" || len(st.Peers) != 1 || st.Peers[0].State != StateEstablished || st.Peers[0].PrefixesAnnounced != 1 || !st.Announcements[0].Announced {
		t.Fatalf("status: %+v", st)
	}
}
