package source

import (
	"errors"
	"fmt"
)

// ErrSuspiciousListing is wrapped by CheckRemovals' refusals. A reconcile that gets it writes nothing, reports
// the error (status, metric class "suspicious", log) and keeps the mirrored state.
var ErrSuspiciousListing = errors.New("suspicious upstream listing")

// DefaultMaxRemoveFraction is the share of held records one reconcile may remove before CheckRemovals refuses.
const DefaultMaxRemoveFraction = 0.5

// CheckRemovals decides whether a reconcile may tombstone `removing` of the `held` live records of one kind
// that the upstream's listing no longer shows. An upstream answer that looks like "everything disappeared" (an
// empty listing after a permission change, a filter gone wrong) is an error, never a mass change: it refuses when
// the listing drops every held record, or more than maxFraction of them once ten or more are held (fewer are not
// a signal). maxFraction ≤ 0 takes DefaultMaxRemoveFraction. An operator who really removed that much upstream
// sees the error and can delete the source's mirror subtree by hand.
func CheckRemovals(kind string, held, removing int, maxFraction float64) error {
	if maxFraction <= 0 {
		maxFraction = DefaultMaxRemoveFraction
	}
	switch {
	case removing <= 0:
		return nil
	case removing >= held:
		return fmt.Errorf("%w: the upstream lists none of the %d %ss deact holds (a permission change?); nothing was removed",
			ErrSuspiciousListing, held, kind)
	case held >= 10 && float64(removing) > maxFraction*float64(held):
		return fmt.Errorf("%w: the upstream no longer lists %d of the %d %ss deact holds (more than %.0f%%); nothing was removed",
			ErrSuspiciousListing, removing, held, kind, maxFraction*100)
	}
	return nil
}
