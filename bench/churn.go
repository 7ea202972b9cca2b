package bench

import (
	"context"
	mrand "math/rand/v2"
	"time"
)

// runChurn flips random orgs through the admin API at lr.churn per second until stop, one write at a time.
func (lr *loadRun) runChurn(ctx context.Context, out *ChurnResult, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(lr.cfg.Seed, 0x636875726e))
	waits := newSampleSet(0)
	defer func() { out.ConfirmWait = waits.percentiles() }()
	tick := time.NewTicker(time.Duration(float64(time.Second) / lr.churn))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := rng.IntN(len(lr.model.orgs))
		if lr.model.orgs[i].state.Load().pending {
			continue // an earlier write to it was never confirmed: leave it alone
		}
		prev := lr.model.begin(i)
		a, err := setOrg(ctx, lr.admin, lr.model.orgs[i].id, !prev.deactivated)
		out.Flips++
		switch {
		case err != nil:
			if ctx.Err() == nil {
				out.Failed++
			}
		case !confirmedByAll(a.Confirmation):
			out.Unconfirmed++
		default:
			lr.model.commit(i, !prev.deactivated, time.Now())
			waits.add(time.Duration(a.Confirmation.WaitedMs * float64(time.Millisecond)))
		}
	}
}
