package state

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Record is one line of a bulk import: exactly one field is set.
type Record struct {
	Org     *Org     `json:"org,omitempty"`
	Project *Project `json:"project,omitempty"`
	App     *App     `json:"app,omitempty"`
	Account *Account `json:"account,omitempty"`
}

// ImportLineError is an import stopped by its input: a line that is not a valid record, a line that repeats a
// key an earlier line of the same import gave (Other is that line), or a line longer than MaxImportLine. The
// batches before it are committed (see ImportResult). Failures of etcd are other errors.
type ImportLineError struct {
	Line  int
	Other int // the earlier line a duplicate repeats; 0 for other errors
	Err   error
}

func (e *ImportLineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ImportLineError) Unwrap() error { return e.Err }

// ImportReadError is an import stopped because its input could not be read (the client went away, a deadline
// passed, a size limit): no line is at fault. After is the last line read whole.
type ImportReadError struct {
	After int
	Err   error
}

func (e *ImportReadError) Error() string {
	return fmt.Sprintf("the input could not be read after line %d: %v", e.After, e.Err)
}
func (e *ImportReadError) Unwrap() error { return e.Err }

// ImportResult says exactly what an import committed, also when it stopped part way: the batches are
// committed in order, each atomically (one etcd transaction), so what is committed is always lines 1..Lines.
type ImportResult struct {
	Records  int   `json:"records"`  // records committed by this import (skipped lines not counted)
	Batches  int   `json:"batches"`  // transactions committed
	Revision int64 `json:"revision"` // revision of the last committed batch; 0 when none was
	// Lines is the last line committed or skipped: everything up to it is in etcd, nothing after it. An import
	// that stopped part way resumes with Skip = Lines.
	Lines   int `json:"lines"`
	Skipped int `json:"skipped,omitempty"` // lines skipped (ImportOptions.Skip) and not written again
}

// ImportOptions tune an import.
type ImportOptions struct {
	// Skip is the number of leading lines to read but not write: to resume an import that stopped, with the
	// Lines it reported. Skipped lines are still checked (bad lines and duplicates fail as they would have).
	Skip int
	// BatchTimeout bounds each batch's transaction; zero leaves it to ctx.
	BatchTimeout time.Duration
}

// importBatchOps stays below etcd's default --max-txn-ops (128), importBatchBytes below its default
// --max-request-bytes (1.5 MiB): a batch is flushed before it would pass either.
const (
	importBatchOps   = 120
	importBatchBytes = 1 << 20
)

// MaxImportLine is the longest line Import accepts.
const MaxImportLine = 1 << 20

// Import writes records from NDJSON (one Record a line) in transactions of at most importBatchOps operations.
// Records are written as given (upserts), index entries included; it is meant for loading state, not for
// changes that need compare-and-swap. It stops at the first bad line, after committing the batches before it,
// and says which line was bad.
func (s *Store) Import(ctx context.Context, r io.Reader, c Change) (ImportResult, error) {
	return s.ImportWith(ctx, r, c, ImportOptions{})
}

// ImportWith is Import with options. The input is streamed: memory holds one batch, plus about 30 bytes per
// key written, to refuse a key (org, project, app, account, domain, client ID) given twice in one import
// wherever the two lines are (an *ImportLineError naming both lines).
func (s *Store) ImportWith(ctx context.Context, r io.Reader, c Change, opts ImportOptions) (ImportResult, error) {
	var res ImportResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxImportLine)
	var ops []clientv3.Op
	seen := newKeySet()
	pendingRecords, pendingFirst, pendingBytes, line := 0, 0, 0, 0
	flush := func() error {
		if len(ops) == 0 {
			res.Lines = max(res.Lines, line)
			return nil
		}
		audit, err := s.auditOp(AuditEntry{At: s.now(), Actor: c.Actor, Action: "import", Key: StatePrefix,
			Reason: fmt.Sprintf("lines %d-%d: %d records, %d operations", pendingFirst, line, pendingRecords, len(ops))})
		if err != nil {
			return err
		}
		bctx, cancel := ctx, context.CancelFunc(func() {})
		if opts.BatchTimeout > 0 {
			bctx, cancel = context.WithTimeout(ctx, opts.BatchTimeout)
		}
		defer cancel()
		resp, err := s.cli.Txn(bctx).Then(append(ops, audit)...).Commit()
		if err != nil {
			return fmt.Errorf("import batch %d (lines %d-%d): %w", res.Batches+1, pendingFirst, line, err)
		}
		res.Batches++
		res.Records += pendingRecords
		res.Revision = resp.Header.Revision
		res.Lines = line
		ops, pendingRecords, pendingFirst, pendingBytes = ops[:0], 0, 0, 0
		return nil
	}
	for sc.Scan() {
		var recOps []clientv3.Op
		var err error
		if b := sc.Bytes(); len(b) > 0 {
			recOps, err = s.recordOps(b, c)
		}
		if err == nil && len(recOps) > importBatchOps {
			err = fmt.Errorf("the record needs %d writes (its index entries included), more than the %d of one transaction", len(recOps), importBatchOps)
		}
		if err == nil {
			err = seen.add(recOps, line+1)
		}
		if err != nil {
			le := &ImportLineError{Line: line + 1, Err: err}
			var dup *duplicateError
			if errors.As(err, &dup) {
				le.Other = dup.line
			}
			return res, le
		}
		recBytes := 0
		for _, op := range recOps {
			recBytes += len(op.KeyBytes()) + len(op.ValueBytes())
		}
		if len(ops)+len(recOps) > importBatchOps || pendingBytes+recBytes > importBatchBytes {
			if err := flush(); err != nil {
				return res, err
			}
		}
		line++
		if line <= opts.Skip {
			res.Skipped, res.Lines = line, line
			continue
		}
		if len(recOps) > 0 {
			if pendingFirst == 0 {
				pendingFirst = line
			}
			ops = append(ops, recOps...)
			pendingRecords++
			pendingBytes += recBytes
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return res, &ImportLineError{Line: line + 1, Err: fmt.Errorf("the line is longer than %d bytes", MaxImportLine)}
		}
		return res, &ImportReadError{After: line, Err: err}
	}
	return res, flush()
}

// keySet remembers the keys an import wrote, by a 128-bit hash (two seeded 64-bit hashes: a false duplicate is
// out of reach), with the line that wrote each.
type keySet struct {
	seeds [2]maphash.Seed
	lines map[[2]uint64]int32
}

func newKeySet() *keySet {
	return &keySet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, lines: map[[2]uint64]int32{}}
}

type duplicateError struct {
	what string
	line int
}

func (e *duplicateError) Error() string {
	return fmt.Sprintf("%s is already given on line %d", e.what, e.line)
}

// Unwrap makes a duplicate a conflict: two lines claim one ID (an app ID under two projects among them).
func (e *duplicateError) Unwrap() error { return ErrConflict }

// add records the keys of one line's operations, or fails when one of them was written by an earlier line
// (etcd refuses a key twice in one transaction; across batches the later line would silently win).
func (k *keySet) add(ops []clientv3.Op, line int) error {
	for _, op := range ops {
		key := op.KeyBytes()
		h := [2]uint64{maphash.Bytes(k.seeds[0], key), maphash.Bytes(k.seeds[1], key)}
		if prev, ok := k.lines[h]; ok && int(prev) != line {
			return &duplicateError{what: describeKey(string(key)), line: int(prev)}
		}
		k.lines[h] = int32(line)
	}
	return nil
}

// importLine is one import line as it is read: each kind decoded strictly on its own.
type importLine struct {
	Org     json.RawMessage `json:"org"`
	Project json.RawMessage `json:"project"`
	App     json.RawMessage `json:"app"`
	Account json.RawMessage `json:"account"`
}

// strict decodes b into v, refusing unknown fields and trailing data: a misspelt field ("stat", "disabledLogin")
// must not silently leave a deactivation out.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the record")
	}
	return nil
}

// describeKey names the record or index entry behind a state key, for messages.
func describeKey(key string) string {
	for _, p := range []struct{ prefix, name string }{
		{orgsPrefix, "org"}, {projPrefix, "project"}, {appsPrefix, "app"}, {clientPrefix, "client id"},
		{domainPrefix, "domain"}, {acctPrefix, "account"}, {AppIDsPrefix, "app id"},
	} {
		if id, ok := strings.CutPrefix(key, p.prefix); ok {
			return fmt.Sprintf("%s %q", p.name, id)
		}
	}
	return fmt.Sprintf("key %q", key)
}

// present reports whether a field of the line was given a value other than null.
func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// recordOps validates one import line and returns its writes. A line holds exactly one record; its fields must
// be ones deact knows, with the right types; "state" must be exactly "active" or "deactivated" (or absent,
// which is active), and an org's state must agree with its flags.
func (s *Store) recordOps(line []byte, c Change) ([]clientv3.Op, error) {
	var rec importLine
	if err := strict(line, &rec); err != nil {
		return nil, err
	}
	n := 0
	for _, raw := range []json.RawMessage{rec.Org, rec.Project, rec.App, rec.Account} {
		if present(raw) {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New(`a record needs exactly one of "org", "project", "app" or "account"`)
	}
	meta := Meta{Reason: c.Reason, ChangedBy: c.Actor, ChangedAt: s.now()}
	put := func(key string, v any) clientv3.Op {
		b, _ := json.Marshal(v)
		return clientv3.OpPut(key, string(b))
	}
	switch {
	case present(rec.Org):
		var j orgJSON
		if err := strict(rec.Org, &j); err != nil {
			return nil, fmt.Errorf("org: %w", err)
		}
		var o Org
		if err := o.fromJSON(&j, true); err != nil {
			return nil, fmt.Errorf("org %s: %w", j.ID, err)
		}
		if err := ValidateID("org", o.ID); err != nil {
			return nil, err
		}
		domains, err := normalizeAll("domain", o.Domains, NormalizeDomain)
		if err != nil {
			return nil, err
		}
		o.Domains, o.Meta = domains, meta
		ops := []clientv3.Op{put(OrgKey(o.ID), o)}
		for _, d := range domains {
			ops = append(ops, put(DomainKey(d), Domain{Domain: d, OrgID: o.ID}))
		}
		return ops, nil
	case present(rec.Project):
		var p Project
		if err := strict(rec.Project, &p); err != nil {
			return nil, fmt.Errorf("project: %w", err)
		}
		if err := errors.Join(ValidateID("project", p.ID), ValidateID("org", p.OrgID), checkState(p.State)); err != nil {
			return nil, err
		}
		p.State = stateName(p.State == Deactivated)
		p.Meta = meta
		return []clientv3.Op{put(ProjectKey(p.ID), p)}, nil
	case present(rec.App):
		var a App
		if err := strict(rec.App, &a); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		if err := errors.Join(ValidateID("project", a.ProjectID), ValidateID("app", a.ID), ValidateID("org", a.OrgID), checkState(a.State)); err != nil {
			return nil, err
		}
		clients, err := normalizeAll("client", a.ClientIDs, func(s string) string { return s })
		if err != nil {
			return nil, err
		}
		if len(clients) > importBatchOps-2 {
			return nil, fmt.Errorf("app %s has more than %d client ids", a.ID, importBatchOps-2)
		}
		a.State = stateName(a.State == Deactivated)
		a.ClientIDs, a.Meta = clients, meta
		ops := []clientv3.Op{put(AppKey(a.ProjectID, a.ID), a), put(AppIDKey(a.ID), AppID{AppID: a.ID, ProjectID: a.ProjectID, OrgID: a.OrgID})}
		for _, id := range clients {
			ops = append(ops, put(ClientKey(id), a.clientEntry(id)))
		}
		return ops, nil
	}
	var a Account
	if err := strict(rec.Account, &a); err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	if err := errors.Join(ValidateID("account", a.ID), ValidateID("org", a.OrgID)); err != nil {
		return nil, err
	}
	return []clientv3.Op{put(AccountKey(a.ID), a)}, nil
}

// BuildSnapshot makes a snapshot from records at revision rev, through the same code the replica applies
// etcd's records with. It is for benchmarks and fuzz targets of the decision, which need state without etcd;
// it stays exported because those are in other packages (authz).
func BuildSnapshot(rev int64, recs ...Record) (*Snapshot, error) {
	s := &Store{now: func() time.Time { return time.Time{} }}
	b := newBuilder(nil)
	for i, rec := range recs {
		line, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		ops, err := s.recordOps(line, Change{})
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		for _, op := range ops {
			if err := b.put(string(op.KeyBytes()), op.ValueBytes(), rev); err != nil {
				return nil, err
			}
		}
	}
	snap := b.snapshot()
	snap.revision = rev
	return snap, nil
}
