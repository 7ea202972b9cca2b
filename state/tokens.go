package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Token roles: an admin token may write, a read-only token may only read.
const (
	RoleAdmin    = "admin"
	RoleReadOnly = "read-only"
)

// Token is an admin API credential as stored under TokensPrefix, keyed by the SHA-256 of the secret: the secret
// itself is never stored, so a copy of etcd does not hand out admin access. A token acts for the orgs in Orgs,
// or for every org when AllOrgs is set; HomeOrg is the org a request means when it names none (ZITADEL's "me").
type Token struct {
	Hash      string    `json:"hash"` // hex SHA-256 of the secret; also the key suffix
	Name      string    `json:"name,omitempty"`
	HomeOrg   string    `json:"homeOrg,omitempty"`
	AllOrgs   bool      `json:"allOrgs"`
	Orgs      []string  `json:"orgs,omitempty"`
	Role      string    `json:"role"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// RevokedTokensPrefix holds one record per revoked token hash. It is kept for good: a revoked secret can never
// become a token again, whoever presents it (a restart with the same --admin-token, an import, a replayed create).
const RevokedTokensPrefix = Prefix + "revoked-tokens/"

// ErrRevoked is returned when a token is created with a hash that was revoked before.
var ErrRevoked = errors.New("token was revoked")

// Revocation is the record DeleteToken leaves under RevokedTokensPrefix.
type Revocation struct {
	RevokedAt time.Time `json:"revokedAt"`
	RevokedBy string    `json:"revokedBy,omitempty"`
	Name      string    `json:"name,omitempty"`
}

func revokedKey(hash string) string { return RevokedTokensPrefix + hash }

// NewToken returns a fresh random token secret (256 bits, URL-safe base64 with a "deact_" prefix).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "deact_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashToken returns the hex SHA-256 of a token secret, the form tokens are stored and looked up by.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenKey is the key of the token with the given hash.
func TokenKey(hash string) string { return TokensPrefix + hash }

// Allows reports whether the token may act on org.
func (t *Token) Allows(org string) bool {
	return t.AllOrgs || slices.Contains(t.Orgs, org)
}

// Covers reports whether every org that o may act on, t may act on too: a token may only create tokens it covers.
func (t *Token) Covers(o *Token) bool {
	if t.AllOrgs {
		return true
	}
	if o.AllOrgs {
		return false
	}
	for _, org := range o.Orgs {
		if !t.Allows(org) {
			return false
		}
	}
	return o.HomeOrg == "" || t.Allows(o.HomeOrg)
}

// Validate checks a token record before it is stored.
func (t *Token) Validate() error {
	if len(t.Hash) != sha256.Size*2 {
		return fmt.Errorf("%w: token hash must be %d hex characters", ErrInvalidID, sha256.Size*2)
	}
	if _, err := hex.DecodeString(t.Hash); err != nil {
		return fmt.Errorf("%w: token hash is not hex", ErrInvalidID)
	}
	if t.Role != RoleAdmin && t.Role != RoleReadOnly {
		return fmt.Errorf("token role %q is neither %q nor %q", t.Role, RoleAdmin, RoleReadOnly)
	}
	if !t.AllOrgs && len(t.Orgs) == 0 {
		return fmt.Errorf("a token needs a scope: all orgs or a list")
	}
	for _, org := range t.Orgs {
		if err := ValidateID("org", org); err != nil {
			return err
		}
	}
	if t.HomeOrg != "" {
		if err := ValidateID("org", t.HomeOrg); err != nil {
			return err
		}
		if !t.Allows(t.HomeOrg) {
			return fmt.Errorf("home org %s is outside the token's scope", t.HomeOrg)
		}
	}
	if len(t.Name) > MaxIDLen {
		return fmt.Errorf("token name is longer than %d bytes", MaxIDLen)
	}
	return nil
}

// CreateToken stores a new token record, with an audit entry. It fails with ErrConflict when a token with the
// same hash exists (the secret was reused), and with ErrRevoked when that hash was revoked before.
func (s *Store) CreateToken(ctx context.Context, t Token, c Change) (Result, error) {
	if err := t.Validate(); err != nil {
		return Result{}, err
	}
	now := s.now()
	if t.Created.IsZero() {
		t.Created = now
	}
	if t.CreatedBy == "" {
		t.CreatedBy = c.Actor
	}
	b, err := json.Marshal(t)
	if err != nil {
		return Result{}, err
	}
	key := TokenKey(t.Hash)
	audit, err := s.auditOp(AuditEntry{At: now, Actor: c.Actor, Action: "create token", Key: key, Reason: c.Reason, After: b})
	if err != nil {
		return Result{}, err
	}
	revoked := revokedKey(t.Hash)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(revoked), "=", 0)).
		Then(clientv3.OpPut(key, string(b)), audit).Else(clientv3.OpGet(revoked, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return Result{}, fmt.Errorf("commit %s: %w", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return Result{}, fmt.Errorf("token %.12s: %w", t.Hash, ErrRevoked)
		}
		return Result{}, fmt.Errorf("token %.12s exists: %w", t.Hash, ErrConflict)
	}
	return Result{Revision: resp.Header.Revision, ChangedAt: now, OrgID: t.HomeOrg}, nil
}

// GetToken reads the token with the given hash; an unknown one is ErrNotFound.
func (s *Store) GetToken(ctx context.Context, hash string) (Versioned[Token], error) {
	if len(hash) != sha256.Size*2 {
		return Versioned[Token]{}, fmt.Errorf("%w: token hash must be %d hex characters", ErrInvalidID, sha256.Size*2)
	}
	return get[Token](ctx, s, TokenKey(hash))
}

// ListTokens lists token records in hash order after the cursor.
func (s *Store) ListTokens(ctx context.Context, after string, limit int64) (Page[Token], error) {
	return list[Token](ctx, s, TokensPrefix, after, limit)
}

// TokenRevoked reports whether the token with the given hash was revoked (DeleteToken).
func (s *Store) TokenRevoked(ctx context.Context, hash string) (bool, error) {
	if len(hash) != sha256.Size*2 {
		return false, fmt.Errorf("%w: token hash must be %d hex characters", ErrInvalidID, sha256.Size*2)
	}
	resp, err := s.cli.Get(ctx, revokedKey(hash), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read %s: %w", revokedKey(hash), err)
	}
	return resp.Count > 0, nil
}

// DeleteToken revokes the token with the given hash; an unknown one is ErrNotFound. It leaves a revocation
// record in the same transaction, so the hash can never be created again (CreateToken fails with ErrRevoked).
func (s *Store) DeleteToken(ctx context.Context, hash string, c Change) (Result, error) {
	cur, err := s.GetToken(ctx, hash)
	if err != nil {
		return Result{}, err
	}
	now := s.now()
	before, _ := json.Marshal(cur.Record)
	key := TokenKey(hash)
	audit, err := s.auditOp(AuditEntry{At: now, Actor: c.Actor, Action: "delete token", Key: key, Reason: c.Reason, Before: before})
	if err != nil {
		return Result{}, err
	}
	rev, _ := json.Marshal(Revocation{RevokedAt: now, RevokedBy: c.Actor, Name: cur.Record.Name})
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.Revision)).
		Then(clientv3.OpDelete(key), clientv3.OpPut(revokedKey(hash), string(rev)), audit).Commit()
	if err != nil {
		return Result{}, fmt.Errorf("commit %s: %w", key, err)
	}
	if !resp.Succeeded {
		return Result{}, fmt.Errorf("token %.12s changed meanwhile: %w", hash, ErrConflict)
	}
	return Result{Revision: resp.Header.Revision, ChangedAt: now, OrgID: cur.Record.HomeOrg}, nil
}
