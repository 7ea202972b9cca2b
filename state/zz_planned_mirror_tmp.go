package state

// TEMPORARY (removed before merging zitadel-state): the planned mirror API, so source/zitadel compiles.

import (
	"context"
	"errors"
	"time"
)

type MirrorKind uint8

const (
	MirrorOrg MirrorKind = iota + 1
	MirrorProject
	MirrorApp
)

type MirrorRecord struct {
	Source               string
	Kind                 MirrorKind
	ID, ProjectID, OrgID string
	Disabled             Ops
	Deactivated          bool
	Removed              bool
	RemovedAt            time.Time
	ClientIDs            []string
	Domains              []string
	Sequence             uint64
	ChangedAt            time.Time
	Name                 string
}

type MirrorResult struct {
	Written, Unchanged, Stale int
	Revision                  int64
}

func (s *Store) ApplyMirror(ctx context.Context, recs []MirrorRecord, c Change) (MirrorResult, error) {
	return MirrorResult{}, errors.New("not yet")
}

func (s *Store) ListMirror(ctx context.Context, source string, kind MirrorKind, fn func(MirrorRecord, int64) error) error {
	return errors.New("not yet")
}
