package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// Every failover error names each place once: the instance, then the
// interface or field, and never the package (the caller says
// "failover"). Issue 10 item 7 saw `instance "VI_1": instance "VI_1": …`.
func TestErrorsNameEachPlaceOnce(t *testing.T) {
	check := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("no error, want %q", want)
		}
		if got := err.Error(); got != want {
			t.Fatalf("error\n %q\nwant\n %q", got, want)
		}
		if strings.Count(err.Error(), `instance "VI_1"`) > 1 || strings.Contains(err.Error(), "failover:") {
			t.Fatalf("a place named twice: %q", err)
		}
	}
	t.Run("interface missing", func(t *testing.T) {
		m, err := NewManager(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		in := baseInstance(100)
		in.Interface = "gitedge-nx9"
		check(t, m.Apply(context.Background(), Config{Instances: []Instance{in}}),
			`instance "VI_1": interface gitedge-nx9 does not exist on this node: create it or correct the instance's interface`)
	})
	t.Run("capability", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sys := newFakeSystem()
			sys.openErr["eth0"] = &CapabilityError{Interface: "eth0", Missing: []string{CapNetAdmin}}
			m, err := NewManager(Options{System: sys})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			err = m.Apply(context.Background(), Config{Instances: []Instance{baseInstance(100)}})
			check(t, err, `instance "VI_1": interface eth0: not permitted: the process lacks CAP_NET_ADMIN (to add the VIPs when it becomes master); run gitedge as root or grant it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)`)
			if !errors.Is(err, os.ErrPermission) {
				t.Fatal("not an os.ErrPermission")
			}
			if _, ok := errors.AsType[*CapabilityError](err); !ok {
				t.Fatal("not a *CapabilityError")
			}
		})
	})
	t.Run("invalid config", func(t *testing.T) {
		m, err := NewManager(Options{System: newFakeSystem()})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		a := baseInstance(100)
		a.AdvertInterval = 5 * time.Millisecond
		b := baseInstance(0)
		b.Name = "VI_2"
		check(t, m.Apply(context.Background(), Config{Instances: []Instance{a, b}}), `config not applied: instance "VI_1": advertInterval: VRRP v3 needs a multiple of 10ms in 10ms..40.95s, got 5ms`+"\n"+
			`instance "VI_2": priority 0: this node has no priority for it`)
	})
	t.Run("host error on an in-place change", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sys := newFakeSystem()
			m, err := NewManager(Options{System: sys})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			a := baseInstance(100)
			if err := m.Apply(context.Background(), Config{Instances: []Instance{a}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			sys.effects("VI_1").addErr = fmt.Errorf("adding VIP %v to eth0: %w", vip2, syscall.EPERM)
			a.VIPs = append(a.VIPs, vip2)
			check(t, m.Apply(context.Background(), Config{Instances: []Instance{a}}), `instance "VI_1": adding VIP 192.0.2.20/24 to eth0: operation not permitted`)
		})
	})
	t.Run("router", func(t *testing.T) {
		_, err := NewRouter(baseInstance(0), RouterOptions{Transport: (&lan{}).port("192.0.2.11"), Effects: newEffects()})
		check(t, err, `instance "VI_1": priority 0 is reserved for a stopping master (RFC 5798 §5.2.4); give this node 1..254`)
		bad := baseInstance(100)
		bad.AdvertInterval = 5 * time.Millisecond
		_, err = NewRouter(bad, RouterOptions{Transport: (&lan{}).port("192.0.2.11"), Effects: newEffects()})
		check(t, err, `instance "VI_1": advertInterval: VRRP v3 needs a multiple of 10ms in 10ms..40.95s, got 5ms`)
	})
	t.Run("router refuses a restart field", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
			in := baseInstance(100)
			in.Interface, in.VRID = "eth1", 34
			check(t, n.r.Reconfigure(in), `instance "VI_1": Interface, VRID cannot change on a running instance: stop it and start a new one`)
			n.stop()
			check(t, n.r.Reconfigure(in), `instance "VI_1": not running`)
			if !errors.Is(n.r.Reconfigure(in), ErrNotRunning) {
				t.Fatal("not ErrNotRunning")
			}
		})
	})
	t.Run("reconfigure validates", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
			check(t, n.r.Reconfigure(baseInstance(0)), `instance "VI_1": priority 0 is reserved for a stopping master (RFC 5798 §5.2.4); give this node 1..254`)
			time.Sleep(time.Second)
			synctest.Wait()
			if s := n.tr.sentPackets(); len(s) == 0 || s[len(s)-1].p.Priority != 100 {
				t.Fatalf("adverts after a refused change: %v", s)
			}
		})
	})
}
