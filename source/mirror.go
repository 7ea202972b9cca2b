package source

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"unicode/utf8"

	"github.com/deact/deact/state"
)

// MaxListed and MaxName are the bounds state.ApplyMirror sets on one mirrored record: entries of each list
// (an app's client IDs, an org's domains) and bytes of its name. A source trims to them before writing, so an
// upstream object with more is mirrored with what fits instead of being refused.
const (
	MaxListed = 100
	MaxName   = 200
)

// ClipName shortens a display name to MaxName bytes, on a rune boundary.
func ClipName(name string) string {
	if len(name) <= MaxName {
		return name
	}
	cut := MaxName
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut]
}

// MirrorWrites are the sums of the state.MirrorResults of a WriteMirror. They may be read while it runs (to log
// progress).
type MirrorWrites struct {
	Written, Unchanged, Stale atomic.Int64
	Revision                  atomic.Int64 // the highest revision a batch committed at
}

// WriteMirror applies changes to store as c, in batches of batchSize (≥ 1), n batches at a time, adding each
// batch's result to w. The first batch that fails stops the others from starting and is the error.
func WriteMirror(ctx context.Context, store *state.Store, changes []state.MirrorRecord, batchSize, n int, c state.Change, w *MirrorWrites) error {
	batches := slices.Collect(slices.Chunk(changes, batchSize))
	return Parallel(ctx, n, batches, func(ctx context.Context, b []state.MirrorRecord) error {
		res, err := store.ApplyMirror(ctx, b, c)
		if err != nil {
			return fmt.Errorf("write mirrored records: %w", err)
		}
		w.Written.Add(int64(res.Written))
		w.Unchanged.Add(int64(res.Unchanged))
		w.Stale.Add(int64(res.Stale))
		for {
			cur := w.Revision.Load()
			if res.Revision <= cur || w.Revision.CompareAndSwap(cur, res.Revision) {
				return nil
			}
		}
	})
}
