package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// SnapshotFormat is the version of the hand-over snapshot's JSON this
// binary writes and reads. A binary meets a snapshot of another format
// only across an upgrade or a downgrade; it then starts normally.
const SnapshotFormat = 1

// SnapshotMaxAge bounds how old a snapshot may be when the successor
// applies it. An upgrade hands it over within seconds (tableflip gives a
// successor one minute to become ready); an older one is left over from
// an upgrade that failed, and the state it describes is no longer known
// to be true, so it is not inherited.
const SnapshotMaxAge = time.Minute

// Snapshot is what a process hands its successor when gitedge upgrades in
// place (Manager.Handover): the state of each instance that is MASTER or
// BACKUP, so the successor resumes it without a new election. It is plain
// data; Marshal and ParseSnapshot convert it to and from versioned JSON.
type Snapshot struct {
	// TakenAt is when the old process took it (SnapshotMaxAge).
	TakenAt time.Time
	// PID is the old process's, for the logs.
	PID       int
	Instances []InstanceSnapshot
}

// InstanceSnapshot is one instance as the old process ran it.
type InstanceSnapshot struct {
	// The instance's identity: the successor inherits the state only if
	// its config has the same name, interface, VRID and version.
	Name      string
	Interface string
	VRID      uint8
	Version   int
	// State is StateMaster or StateBackup.
	State          State
	Priority       uint8
	AdvertInterval time.Duration
	// Source is the address the adverts went out from.
	Source netip.Addr
	// VIPs are the addresses this node holds for the instance now: the
	// configured VIPs of a master, none for a backup.
	VIPs []netip.Prefix
	// LastAdvertSent is when the instance last sent an advertisement with
	// its priority (zero if never).
	LastAdvertSent time.Time
	// Master is the master as a backup last saw it; nil for a master or a
	// backup that has heard none.
	Master *MasterSeen
}

// MasterSeen is another router's mastership as a backup last saw it.
type MasterSeen struct {
	Address        netip.Addr
	Priority       uint8
	AdvertInterval time.Duration // RFC 5798 §6.4.2 Master_Adver_Interval
	LastSeen       time.Time
}

// VIPsHeld returns every VIP the snapshot's masters hold.
func (s Snapshot) VIPsHeld() []netip.Prefix {
	var out []netip.Prefix
	for _, in := range s.Instances {
		out = append(out, in.VIPs...)
	}
	return out
}

// The JSON file format, kept apart from the Go types so either can change
// without the other (durations as strings, states by name).
type snapshotFile struct {
	Format    int            `json:"format"`
	TakenAt   time.Time      `json:"takenAt"`
	PID       int            `json:"pid,omitempty"`
	Instances []instanceFile `json:"instances"`
}

type instanceFile struct {
	Name           string         `json:"name"`
	Interface      string         `json:"interface"`
	VRID           uint8          `json:"vrid"`
	Version        int            `json:"version"`
	State          string         `json:"state"`
	Priority       uint8          `json:"priority"`
	AdvertInterval string         `json:"advertInterval"`
	Source         netip.Addr     `json:"source,omitzero"`
	VIPs           []netip.Prefix `json:"vips,omitempty"`
	LastAdvertSent time.Time      `json:"lastAdvertSent,omitzero"`
	Master         *masterFile    `json:"master,omitempty"`
}

type masterFile struct {
	Address        netip.Addr `json:"address"`
	Priority       uint8      `json:"priority"`
	AdvertInterval string     `json:"advertInterval"`
	LastSeen       time.Time  `json:"lastSeen,omitzero"`
}

// Marshal encodes the snapshot as indented JSON of SnapshotFormat.
func (s Snapshot) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	f := snapshotFile{Format: SnapshotFormat, TakenAt: s.TakenAt, PID: s.PID, Instances: []instanceFile{}}
	for _, in := range s.Instances {
		fi := instanceFile{Name: in.Name, Interface: in.Interface, VRID: in.VRID, Version: in.Version,
			State: in.State.String(), Priority: in.Priority, AdvertInterval: in.AdvertInterval.String(),
			Source: in.Source, VIPs: in.VIPs, LastAdvertSent: in.LastAdvertSent}
		if m := in.Master; m != nil {
			fi.Master = &masterFile{Address: m.Address, Priority: m.Priority, AdvertInterval: m.AdvertInterval.String(), LastSeen: m.LastSeen}
		}
		f.Instances = append(f.Instances, fi)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseSnapshot decodes and checks a snapshot Marshal wrote. Unknown
// fields, another format and impossible values are errors (every problem
// is listed): the successor then starts normally rather than resume a
// state it does not understand.
func ParseSnapshot(b []byte) (Snapshot, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f snapshotFile
	if err := dec.Decode(&f); err != nil {
		return Snapshot{}, fmt.Errorf("hand-over snapshot: %w", err)
	}
	if dec.More() {
		return Snapshot{}, errors.New("hand-over snapshot: data after the JSON object")
	}
	if f.Format != SnapshotFormat {
		return Snapshot{}, fmt.Errorf("hand-over snapshot: format %d, this binary reads format %d", f.Format, SnapshotFormat)
	}
	s := Snapshot{TakenAt: f.TakenAt, PID: f.PID}
	var errs []error
	for i, fi := range f.Instances {
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("hand-over snapshot: instances[%d] %q: %s: %s", i, fi.Name, field, fmt.Sprintf(format, args...)))
		}
		in := InstanceSnapshot{Name: fi.Name, Interface: fi.Interface, VRID: fi.VRID, Version: fi.Version,
			Priority: fi.Priority, Source: fi.Source, VIPs: fi.VIPs, LastAdvertSent: fi.LastAdvertSent}
		var err error
		if in.State, err = parseState(fi.State); err != nil {
			bad("state", "%v", err)
		}
		if in.AdvertInterval, err = time.ParseDuration(fi.AdvertInterval); err != nil {
			bad("advertInterval", "%v", err)
		}
		if m := fi.Master; m != nil {
			in.Master = &MasterSeen{Address: m.Address, Priority: m.Priority, LastSeen: m.LastSeen}
			if in.Master.AdvertInterval, err = time.ParseDuration(m.AdvertInterval); err != nil {
				bad("master.advertInterval", "%v", err)
			}
		}
		s.Instances = append(s.Instances, in)
	}
	if len(errs) > 0 {
		return Snapshot{}, errors.Join(errs...)
	}
	if err := s.Validate(); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

func parseState(s string) (State, error) {
	for _, st := range []State{StateMaster, StateBackup} {
		if s == st.String() {
			return st, nil
		}
	}
	return 0, fmt.Errorf("%q: want MASTER or BACKUP", s)
}

// Validate checks that the snapshot describes states a successor can
// resume, listing every problem.
func (s Snapshot) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, in := range s.Instances {
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("hand-over snapshot: instances[%d] %q: %s: %s", i, in.Name, field, fmt.Sprintf(format, args...)))
		}
		switch {
		case in.Name == "":
			bad("name", "empty")
		case names[in.Name]:
			bad("name", "used twice")
		}
		names[in.Name] = true
		if in.Interface == "" {
			bad("interface", "empty")
		}
		if in.VRID == 0 {
			bad("vrid", "must be 1..255")
		}
		if in.Version != 2 && in.Version != 3 {
			bad("version", "must be 2 or 3, got %d", in.Version)
		}
		if in.Priority == 0 {
			bad("priority", "must be 1..255")
		}
		if in.AdvertInterval <= 0 {
			bad("advertInterval", "must be positive, got %s", in.AdvertInterval)
		}
		switch in.State {
		case StateMaster:
			if len(in.VIPs) == 0 {
				bad("vips", "a master holds its VIPs; none listed")
			}
			if in.Master != nil {
				bad("master", "only a backup records another master")
			}
		case StateBackup:
			if len(in.VIPs) > 0 {
				bad("vips", "a backup holds no VIPs; got %v", in.VIPs)
			}
		default:
			bad("state", "%v: want MASTER or BACKUP", in.State)
		}
		for j, v := range in.VIPs {
			if !v.IsValid() || slices.Contains(in.VIPs[:j], v) {
				bad(fmt.Sprintf("vips[%d]", j), "invalid or repeated: %v", v)
			}
		}
		if m := in.Master; m != nil {
			if !m.Address.IsValid() {
				bad("master.address", "missing")
			}
			if m.AdvertInterval <= 0 {
				bad("master.advertInterval", "must be positive, got %s", m.AdvertInterval)
			}
		}
	}
	return errors.Join(errs...)
}
