package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// Record is the last commit a node applied, kept across restarts: a
// restart applies it before any fetch, whatever the branch tip holds.
type Record struct {
	Commit    string    `json:"commit"`
	Signer    string    `json:"signer,omitempty"`
	Author    string    `json:"author,omitempty"`
	Message   string    `json:"message,omitempty"`
	AppliedAt time.Time `json:"appliedAt"`
	// Files are the YAML files the loader consumed (links resolved), by
	// path in the routes directory; they load again to the same state.
	Files Files `json:"files"`
}

// RecordStore keeps the last applied Record. Load returns (nil, nil) when
// nothing was ever recorded and an error for a record that cannot be
// trusted (unreadable, half-written, corrupted, from a newer gitedge).
// Save replaces the record atomically: after a crash at any point, Load
// returns either the old record or the new one.
type RecordStore interface {
	Load() (*Record, error)
	Save(*Record) error
}

// RecordFileName is the record's name in the node's state directory.
const RecordFileName = "last-applied"

// recordMagic and recordVersion open the record's header line.
const (
	recordMagic   = "gitedge-last-applied"
	recordVersion = 1
)

// StateFile is the RecordStore of a node: one file in its state directory.
//
// The format is a header line and a JSON body:
//
//	gitedge-last-applied 1 sha256:<hex of the body> <length of the body>
//	{"commit":"…","signer":"…","author":"…","message":"…","appliedAt":"…","files":{"edge.yaml":"<base64>",…}}
//
// The length detects a half-written file and the checksum any other
// corruption; a record of another version is refused, never guessed at.
// `tail -n +2 FILE | jq` shows it.
type StateFile struct {
	Path string
}

// NewStateFile returns the store at dir/last-applied.
func NewStateFile(dir string) *StateFile {
	return &StateFile{Path: filepath.Join(dir, RecordFileName)}
}

var _ RecordStore = (*StateFile)(nil)

// Load reads and checks the record.
func (s *StateFile) Load() (*Record, error) {
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state record %s: %w", s.Path, err)
	}
	r, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("state record %s: %w", s.Path, err)
	}
	return r, nil
}

func decodeRecord(data []byte) (*Record, error) {
	header, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return nil, errors.New("half-written: no header line")
	}
	var magic, sum string
	var version, length int
	if _, err := fmt.Sscanf(string(header), "%s %d sha256:%s %d", &magic, &version, &sum, &length); err != nil || magic != recordMagic {
		return nil, errors.New("not a gitedge state record (bad header line)")
	}
	if version != recordVersion {
		return nil, fmt.Errorf("format version %d, this gitedge reads version %d", version, recordVersion)
	}
	if len(body) != length {
		return nil, fmt.Errorf("half-written: %d bytes of a %d-byte body", len(body), length)
	}
	if h := sha256.Sum256(body); hex.EncodeToString(h[:]) != sum {
		return nil, errors.New("corrupted: the checksum does not match")
	}
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("corrupted: %v", err)
	}
	if r.Commit == "" || len(r.Files) == 0 {
		return nil, errors.New("corrupted: no commit or no files")
	}
	return &r, nil
}

func encodeRecord(r *Record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(body)
	var b bytes.Buffer
	b.Grow(len(body) + 128)
	b.WriteString(recordMagic + " " + strconv.Itoa(recordVersion) + " sha256:" + hex.EncodeToString(h[:]) + " " + strconv.Itoa(len(body)) + "\n")
	b.Write(body)
	return b.Bytes(), nil
}

// Save writes the record atomically: a temporary file in the same
// directory, fsync, rename over the record, fsync of the directory. On any
// failure the previous record stays as it was.
func (s *StateFile) Save(r *Record) error {
	data, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("state record %s: %w", s.Path, err)
	}
	if err := writeAtomic(s.Path, data); err != nil {
		return fmt.Errorf("state record %s: %w", s.Path, err)
	}
	return nil
}

// writeAtomic replaces the record durably (atomicfile.WriteFileSync),
// making its directory first.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return atomicfile.WriteFileSync(path, data, 0o600)
}
