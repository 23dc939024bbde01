package failover

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitedge/gitedge/internal/testkit"
)

// goldenSnapshot is testdata/handover/snapshot-v1.json as Go values: a
// master and a backup.
func goldenSnapshot() Snapshot {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return Snapshot{TakenAt: at, PID: 4242, Instances: []InstanceSnapshot{
		{Name: "VI_1", Interface: "eth0", VRID: 33, Version: 2, State: StateMaster, Priority: 101,
			AdvertInterval: time.Second, Source: netip.MustParseAddr("192.0.2.251"),
			VIPs:           []netip.Prefix{netip.MustParsePrefix("192.0.2.254/24")},
			LastAdvertSent: at.Add(-400 * time.Millisecond)},
		{Name: "VI_6", Interface: "eth0", VRID: 66, Version: 3, State: StateBackup, Priority: 100,
			AdvertInterval: 100 * time.Millisecond, Source: netip.MustParseAddr("fe80::1"),
			Master: &MasterSeen{Address: netip.MustParseAddr("fe80::2"), Priority: 150,
				AdvertInterval: 200 * time.Millisecond, LastSeen: at.Add(-50 * time.Millisecond)}},
	}}
}

// The version 1 format is pinned: what this binary writes is the golden
// file byte for byte, and the golden file reads back as the same values,
// so a later binary that still reads format 1 takes over from this one.
func TestSnapshotFormat(t *testing.T) {
	path := filepath.Join("testdata", "handover", "snapshot-v1.json")
	got, err := goldenSnapshot().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	testkit.Golden(t, path, string(got))
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSnapshot(want)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(goldenSnapshot(), back, cmpAddrs); d != "" {
		t.Fatalf("ParseSnapshot(%s) (-want +got):\n%s", path, d)
	}
	if d := cmp.Diff([]netip.Prefix{netip.MustParsePrefix("192.0.2.254/24")}, back.VIPsHeld(), cmpAddrs); d != "" {
		t.Fatalf("VIPsHeld (-want +got):\n%s", d)
	}
}

// A snapshot the new process cannot trust is refused with every problem
// listed; the Manager then starts normally.
func TestParseSnapshotErrors(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "handover", "snapshot-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(golden), old) {
			t.Fatalf("%q not in the golden file", old)
		}
		return strings.Replace(string(golden), old, new, 1)
	}
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"hand-over snapshot: EOF"}},
		{"another format", edit(`"format": 1`, `"format": 2`), []string{"format 2, this binary reads format 1"}},
		{"unknown field", edit(`"pid": 4242`, `"pid": 4242, "epoch": 3`), []string{`unknown field "epoch"`}},
		{"trailing data", string(golden) + "{}", []string{"data after the JSON object"}},
		{"bad state", edit(`"state": "BACKUP"`, `"state": "FAULT"`), []string{`instances[1] "VI_6": state: "FAULT": want MASTER or BACKUP`}},
		{"master without VIPs", edit(`"vips": [
        "192.0.2.254/24"
      ],`, ``), []string{`instances[0] "VI_1": vips: a master holds its VIPs; none listed`}},
		{"several problems", edit(`"vrid": 33,
      "version": 2`, `"vrid": 0,
      "version": 4`), []string{`instances[0] "VI_1": vrid: must be 1..255`, `instances[0] "VI_1": version: must be 2 or 3, got 4`}},
		{"duplicate name", edit(`"VI_6"`, `"VI_1"`), []string{`instances[1] "VI_1": name: used twice`}},
		{"bad duration", edit(`"advertInterval": "200ms"`, `"advertInterval": "soon"`), []string{`instances[1] "VI_6": master.advertInterval: time: invalid duration "soon"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSnapshot([]byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// Whatever ParseSnapshot accepts encodes and parses back to the same.
func FuzzParseSnapshot(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "handover", "snapshot-v1.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte(`{"format":1,"takenAt":"2025-03-01T12:00:00Z","instances":[]}`))
	f.Add([]byte(`{"format":1,"takenAt":"2025-03-01T12:00:00Z","instances":[{"name":"a","interface":"e","vrid":1,"version":3,"state":"BACKUP","priority":1,"advertInterval":"1ns"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSnapshot(b)
		if err != nil {
			return
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("a parsed snapshot does not encode: %v", err)
		}
		back, err := ParseSnapshot(out)
		if err != nil {
			t.Fatalf("an encoded snapshot does not parse: %v\n%s", err, out)
		}
		if d := cmp.Diff(s, back, cmpAddrs); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}
