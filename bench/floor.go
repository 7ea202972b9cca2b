package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/deact/deact/state"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdObserver watches the deployment's etcd directly, beside deact, for the propagation benchmark:
//
//   - the floor: a raw put of a key outside deact's prefix (no gateway watches it), and the moment each of n
//     watchers, a client of its own each as each gateway has, receives its event. It is what etcd itself takes to
//     carry a change to n watchers on this cluster, in this run, under the same load.
//   - the stages of an admin write as etcd sees them: when the write's record event reaches a watcher (the
//     admin's transaction committed), and when every gateway's node record shows it applied (when gateways
//     report through their records, the fallback; on report streams to the admin nodes they write none).
//
// Times are taken in the watch goroutines when the events arrive, so the measuring loop's own scheduling does
// not count.
type etcdObserver struct {
	writer   *clientv3.Client
	watchers []*clientv3.Client
	floorKey string
	floor    []chan int64 // per watcher: the revisions of floor events, with their arrival below
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu      sync.Mutex
	arrived map[floorArrival]time.Time
	record  map[int64]time.Time    // ModRevision of the watched record's events → arrival
	applied map[string][]nodeApply // node key → the node's reports, in arrival order
	changed chan struct{}
}

type floorArrival struct {
	watcher int
	rev     int64
}

type nodeApply struct {
	rev int64
	at  time.Time
}

// newEtcdObserver connects n+1 clients to endpoints (a writer and n watchers) and starts watching the floor key,
// recordKey and the node registry.
func newEtcdObserver(ctx context.Context, endpoints []string, n int, runID, recordKey string) (*etcdObserver, error) {
	if len(endpoints) == 0 || n <= 0 {
		return nil, errors.New("etcd observer: no endpoints or watchers")
	}
	o := &etcdObserver{
		floorKey: "/deactbench/floor/" + runID, arrived: map[floorArrival]time.Time{}, record: map[int64]time.Time{},
		applied: map[string][]nodeApply{}, changed: make(chan struct{}),
	}
	dial := func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	}
	var err error
	if o.writer, err = dial(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.cancel = cancel
	start := func(cli *clientv3.Client, key string, opts []clientv3.OpOption, each func(*clientv3.Event, time.Time)) {
		wch := cli.Watch(wctx, key, opts...)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for wr := range wch {
				at := time.Now()
				o.mu.Lock()
				for _, ev := range wr.Events {
					each(ev, at)
				}
				close(o.changed)
				o.changed = make(chan struct{})
				o.mu.Unlock()
			}
		}()
	}
	// Every watch starts at the current revision, so that no event is missed between here and the first write.
	resp, err := o.writer.Get(ctx, o.floorKey)
	if err != nil {
		o.close()
		return nil, err
	}
	from := clientv3.WithRev(resp.Header.Revision + 1)
	for i := range n {
		cli, err := dial()
		if err != nil {
			o.close()
			return nil, err
		}
		o.watchers = append(o.watchers, cli)
		start(cli, o.floorKey, []clientv3.OpOption{from}, func(ev *clientv3.Event, at time.Time) {
			o.arrived[floorArrival{i, ev.Kv.ModRevision}] = at
		})
	}
	// The stages are watched on the writer's client, not a floor watcher's: they must not delay the floor.
	start(o.writer, recordKey, []clientv3.OpOption{from}, func(ev *clientv3.Event, at time.Time) {
		o.record[ev.Kv.ModRevision] = at
	})
	start(o.writer, state.NodesPrefix, []clientv3.OpOption{from, clientv3.WithPrefix()}, func(ev *clientv3.Event, at time.Time) {
		var node state.Node
		if ev.Type == clientv3.EventTypePut && json.Unmarshal(ev.Kv.Value, &node) == nil {
			key := strings.Clone(string(ev.Kv.Key))
			o.applied[key] = append(o.applied[key], nodeApply{node.AppliedRevision, at})
		}
	})
	return o, nil
}

func (o *etcdObserver) close() {
	if o.cancel != nil {
		o.cancel()
	}
	for _, c := range o.watchers {
		_ = c.Close()
	}
	if o.writer != nil {
		_ = o.writer.Close()
	}
	o.wg.Wait()
}

// floorSample is one raw put: how long until etcd acknowledged it, and until the last watcher had its event.
type floorSample struct {
	ack, all time.Duration
	each     []time.Duration
}

// measureFloor puts the floor key once and waits (up to timeout) for every watcher's event.
func (o *etcdObserver) measureFloor(ctx context.Context, i int, timeout time.Duration) (floorSample, error) {
	start := time.Now()
	resp, err := o.writer.Put(ctx, o.floorKey, fmt.Sprint(i))
	if err != nil {
		return floorSample{}, fmt.Errorf("floor put: %w", err)
	}
	s := floorSample{ack: time.Since(start)}
	rev := resp.Header.Revision
	err = o.await(ctx, timeout, func() bool {
		s.each = s.each[:0]
		for w := range o.watchers {
			at, ok := o.arrived[floorArrival{w, rev}]
			if !ok {
				return false
			}
			s.each = append(s.each, at.Sub(start))
		}
		return true
	})
	if err != nil {
		return s, fmt.Errorf("floor put at revision %d: not seen by every watcher: %w", rev, err)
	}
	for _, d := range s.each {
		s.all = max(s.all, d)
	}
	o.mu.Lock()
	for w := range o.watchers {
		delete(o.arrived, floorArrival{w, rev})
	}
	o.mu.Unlock()
	return s, nil
}

// writeStages are the moments etcd's watchers saw of one admin write at revision rev, from start.
type writeStages struct {
	committed time.Duration // the record's event reached a watcher
	reported  time.Duration // every one of nodes had reported rev applied in its record, if they all did
	// recorded says they did: gateways that report on streams to the admin nodes (the normal case) do not
	// rewrite their records per change, and their confirmation is visible only in the admin's answer.
	recorded bool
}

// stages waits (up to timeout) until the record event of rev has been seen, notes whether nodes node records
// already showed rev or later applied (called after the admin's confirmed answer: when gateways report through
// their records, they have), and forgets what it saw before.
func (o *etcdObserver) stages(ctx context.Context, start time.Time, rev int64, nodes int, timeout time.Duration) (writeStages, error) {
	var st writeStages
	err := o.await(ctx, timeout, func() bool {
		at, ok := o.record[rev]
		if !ok {
			return false
		}
		st.committed = at.Sub(start)
		var last time.Time
		seen := 0
		for _, reports := range o.applied {
			for _, r := range reports {
				if r.rev >= rev {
					seen++
					if r.at.After(last) {
						last = r.at
					}
					break
				}
			}
		}
		if seen >= nodes {
			st.reported, st.recorded = last.Sub(start), true
		}
		return true
	})
	o.mu.Lock()
	clear(o.record)
	for key, reports := range o.applied {
		// Keep the last report: it may be the one that covers the next write already.
		o.applied[key] = append(reports[:0], reports[len(reports)-1])
	}
	o.mu.Unlock()
	if err != nil {
		return st, fmt.Errorf("revision %d: record event not seen: %w", rev, err)
	}
	return st, nil
}

// await calls done under the lock at each event until it returns true, or timeout passes.
func (o *etcdObserver) await(ctx context.Context, timeout time.Duration, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		o.mu.Lock()
		ok, changed := done(), o.changed
		o.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
