package state

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mathrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// Seeding: a gateway's first snapshot taken from an admin node's replica instead of a list of etcd.
//
// A list of 10⁶ records costs etcd about 4.5 s of CPU (a bbolt seek and a protobuf round trip per key) and a
// gateway cannot be ready before etcd has sent it: on a small host that bound is above 3 s, and a fleet of 1,000
// gateways restarting together would ask etcd for 1,000 such lists. An admin node that keeps a replica serves
// it instead, from memory, the way the Kubernetes API server serves lists from its watch cache: the records of
// its snapshot at a revision R that it holds everything up to, re-encoded (Snapshot.eachRecord) in the very
// stream format of etcd's RangeStream, so that the gateway builds its snapshot with the code an etcd list uses.
// The gateway then watches etcd from R+1, and is not ready until it is current with etcd: a linearizable read of
// etcd's revision, applied (Replica.markCurrent). An admin node that is behind only makes the watch replay more;
// one that is too far behind (its revision compacted) makes the watch fail, and the gateway lists etcd. Any
// failure of the seed itself (no admin node, refused, cut) falls back to the etcd list: the seed can make a
// gateway ready sooner, never let it decide on less than etcd's state.
//
// The stream is authenticated like the report stream, by a secret whose SHA-256 the gateway has written to
// etcd: a ticket under SeedTicketsPrefix, on a short lease (the gateway is not registered yet: it registers
// once ready). Only a process that can write to deact's etcd can read a snapshot.
const (
	seedService = "deact.v1.Snapshots"
	seedMethod  = "/" + seedService + "/Seed"
	// SeedTicketsPrefix holds the tickets of seeds in progress, each on a lease of seedTicketTTL.
	SeedTicketsPrefix = Prefix + "seedtickets/"
	seedTicketTTL     = 30 * time.Second
	// seedChunk is the size of the chunks an admin node sends, about etcd's own (its request size limit).
	seedChunk = 1 << 20
	// defaultSeedMaxStaleness is how stale an admin node's replica may be and still seed. A stale seed is safe
	// (the gateway is ready only once current with etcd), only slower: the watch replays more, and a revision
	// compacted meanwhile fails it, which relists etcd. A replica just listed is as stale as its list was long.
	defaultSeedMaxStaleness = 30 * time.Second
	// seedConcurrency bounds the seeds one admin node encodes at once; more wait their turn, so a fleet that
	// restarts together costs the admin node a few cores, not one per gateway.
	seedConcurrency = 4
	// A gateway gives a seed up (and lists etcd) when no chunk came for seedStall; an admin node sends one at
	// least every seedKeepWaiting, an empty one while the seed waits its turn.
	seedStall       = 15 * time.Second
	seedKeepWaiting = 2 * time.Second
	// seedCountsHeader is the response header in which an admin node sends how many records of each kind its
	// snapshot holds (kindOrg to kindAccount, comma-separated): the gateway sizes its tables by it, as a list
	// sizes them by counting etcd first, a count that would cost etcd a walk of its index (0.3 s at 10⁶).
	seedCountsHeader = "deact-seed-counts"
	// maxSeedCount bounds a count the gateway sizes a table by; a larger one is ignored (tables still grow).
	maxSeedCount = 1 << 27
)

// seedRequest is a gateway's request for a seed: the ticket it wrote and the secret whose hash the ticket holds.
type seedRequest struct {
	Node   string `json:"node"`
	Ticket string `json:"ticket"`
	Secret string `json:"secret"`
}

// seedTicket is the value of a ticket's key.
type seedTicket struct {
	Node string `json:"node"`
	Hash string `json:"hash"` // SHA-256 of the secret, hex
}

// seedFrame is one chunk of a seed as sent: a RangeStreamResponse, whose RangeResponse is head (the final
// chunk's header; nil for others) then kvs, its KeyValues as the sender encoded them. The codec writes it
// (serverCodec); an empty frame is an empty message.
type seedFrame struct{ head, kvs []byte }

// appendTo appends the frame's RangeStreamResponse to b.
func (f *seedFrame) appendTo(b []byte) []byte {
	b = protowire.AppendTag(b, fieldStreamRange, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(f.head)+len(f.kvs)))
	return append(append(b, f.head...), f.kvs...)
}

// size is the length of the frame's RangeStreamResponse.
func (f *seedFrame) size() int {
	n := len(f.head) + len(f.kvs)
	return protowire.SizeTag(fieldStreamRange) + protowire.SizeBytes(n)
}

// SeedConfig lets a replica take its first snapshot from an admin node (see above).
type SeedConfig struct {
	NodeID string      // the gateway's node ID, named in its ticket
	TLS    *tls.Config // client TLS for the admin nodes' report listener; nil dials plaintext
	// Stall is how long a seed may go without a chunk before the gateway gives it up and lists etcd [15s].
	Stall time.Duration
}

// seed lists the state from an admin node: hint is called with how many records of each kind to expect before
// the first record, put for every record, and the revision the admin node holds everything up to is returned.
// Admin nodes that serve seeds are tried in random order, at most two.
func (r *Replica) seed(ctx context.Context, hint func([nKinds]int), put func(key, value []byte, modRev int64)) (int64, error) {
	cli := r.cfg.Client
	resp, err := cli.Get(ctx, AdminsPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	var addrs []string
	for _, kv := range resp.Kvs {
		var a AdminNode
		if json.Unmarshal(kv.Value, &a) == nil && a.Seeds && a.ReportAddr != "" {
			addrs = append(addrs, a.ReportAddr)
		}
	}
	if len(addrs) == 0 {
		return 0, errors.New("no admin node serves seeds")
	}
	mathrand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	req, revoke, err := r.seedTicket(ctx)
	if err != nil {
		return 0, err
	}
	defer revoke()
	var errs []error
	for _, addr := range addrs[:min(2, len(addrs))] {
		rev, got, err := r.seedFrom(ctx, addr, req, hint, put)
		if err == nil {
			return rev, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if got > 0 {
			break // records of a broken seed are in the builder: the caller starts over from etcd
		}
	}
	return 0, errors.Join(errs...)
}

// seedTicket writes this seed's ticket on a lease of its own, and returns the request that names it and a
// function that revokes the lease.
func (r *Replica) seedTicket(ctx context.Context) (seedRequest, func(), error) {
	var id, secret [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return seedRequest{}, nil, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return seedRequest{}, nil, err
	}
	req := seedRequest{Node: r.cfg.Seed.NodeID, Ticket: hex.EncodeToString(id[:]), Secret: hex.EncodeToString(secret[:])}
	b, err := json.Marshal(seedTicket{Node: req.Node, Hash: reportKeyHash(req.Secret)})
	if err != nil {
		return seedRequest{}, nil, err
	}
	lease, revoke, err := grantLease(ctx, r.cfg.Client, seedTicketTTL)
	if err != nil {
		return seedRequest{}, nil, err
	}
	if _, err := r.cfg.Client.Put(ctx, SeedTicketsPrefix+req.Ticket, string(b), clientv3.WithLease(lease.ID)); err != nil {
		revoke()
		return seedRequest{}, nil, fmt.Errorf("write seed ticket: %w", err)
	}
	return req, revoke, nil
}

// seedFrom takes the seed from one admin node; got is the number of records put before an error. hint, if not
// nil, gets the admin node's counts (or etcd's, from an admin node that sent none) before the first record.
func (r *Replica) seedFrom(ctx context.Context, addr string, req seedRequest, hint func([nKinds]int),
	put func(key, value []byte, modRev int64)) (rev int64, got int, err error) {
	creds := insecure.NewCredentials()
	if r.cfg.Seed.TLS != nil {
		creds = credentials.NewTLS(r.cfg.Seed.TLS)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, 0, err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cc.NewStream(sctx, &grpc.StreamDesc{StreamName: "Seed", ServerStreams: true}, seedMethod,
		grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(rangeCodec{}))
	if err != nil {
		return 0, 0, err
	}
	if err := st.SendMsg(&req); err != nil {
		return 0, 0, recvErr(st, err)
	}
	if err := st.CloseSend(); err != nil {
		return 0, 0, err
	}
	counted := func(key, value []byte, modRev int64) {
		got++
		put(key, value, modRev)
	}
	// A seed that stalls (an admin node frozen or cut mid-stream) is given up, and etcd listed: the admin node
	// sends a chunk at least every seedKeepWaiting, an empty one while the seed waits its turn.
	limit := r.cfg.Seed.Stall
	if limit <= 0 {
		limit = seedStall
	}
	stall := time.AfterFunc(limit, cancel)
	defer stall.Stop()
	if hint != nil {
		md, err := st.Header()
		if err != nil {
			return 0, 0, err
		}
		counts, ok := parseSeedCounts(md.Get(seedCountsHeader))
		if !ok {
			counts = r.countKinds(ctx)
		}
		hint(counts)
	}
	rev, err = recvRange(st, counted, func() { stall.Reset(limit) })
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("no chunk for %v: %w", limit, err)
	}
	return rev, got, err
}

// seedHandler is the server side of the seed stream, implemented by ReportServer.
type seedHandler interface {
	seed(grpc.ServerStream) error
}

// seedServiceDesc describes the seed service for grpc.Server.RegisterService.
func seedServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: seedService,
		HandlerType: (*seedHandler)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Seed",
			ServerStreams: true,
			Handler: func(srv any, stream grpc.ServerStream) error {
				h, ok := srv.(seedHandler)
				if !ok {
					return fmt.Errorf("seed service registered with %T", srv)
				}
				return h.seed(stream)
			},
		}},
	}
}

// seed serves one gateway's seed: a verified request, then the records of this node's replica at a revision
// it holds everything up to, in chunks, the last carrying the revision.
func (s *ReportServer) seed(ss grpc.ServerStream) error {
	r := s.cfg.Replica
	if r == nil {
		return status.Error(codes.Unimplemented, "this admin node keeps no replica to seed from")
	}
	ctx := ss.Context()
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	req, err := recvWithin[seedRequest](hctx, ss)
	if err == nil {
		err = s.verifySeed(hctx, req)
	}
	cancel()
	if err != nil {
		return s.refuse("seed", req.Node, err)
	}
	// The counts of the snapshot now, before the seed may wait its turn: a hint, not the seed's own snapshot.
	if err := ss.SendHeader(metadata.Pairs(seedCountsHeader, formatSeedCounts(r.Snapshot().kindCounts()))); err != nil {
		return err
	}
	// Its turn: meanwhile an empty chunk (no records, no revision) every seedKeepWaiting tells the gateway that
	// the seed is coming, so that it tells a seed that waits from one that stalls.
	wait := time.NewTicker(seedKeepWaiting)
	defer wait.Stop()
	for queued := true; queued; {
		select {
		case s.seeding <- struct{}{}:
			queued = false
			defer func() { <-s.seeding }()
		case <-wait.C:
			if err := ss.SendMsg(&seedFrame{}); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !r.Ready() || r.Staleness() > s.cfg.SeedMaxStaleness {
		return status.Error(codes.Unavailable, "this admin node's replica is not current")
	}
	// The applied revision first, then the snapshot: the snapshot published before the revision was applied
	// holds everything up to it, and any later one too.
	rev := r.AppliedRevision()
	snap := r.Snapshot()
	var kvs []byte
	send := func(final bool) error {
		f := &seedFrame{kvs: kvs}
		if final {
			h := protowire.AppendVarint(protowire.AppendTag(nil, fieldHeaderRev, protowire.VarintType), uint64(rev))
			f.head = protowire.AppendBytes(protowire.AppendTag(nil, fieldRangeHeader, protowire.BytesType), h)
		}
		// kvs is reused: the codec copies the frame as SendMsg encodes it, into a buffer gRPC frees once written.
		err := ss.SendMsg(f)
		kvs = kvs[:0]
		return err
	}
	err = snap.eachRecord(func(key []byte, modRev int64, value []byte) error {
		// KeyValue{key, mod_revision, value}, written once: its size first.
		n := protowire.SizeTag(fieldKVKey) + protowire.SizeBytes(len(key)) + protowire.SizeTag(fieldKVModRevision) +
			protowire.SizeVarint(uint64(modRev)) + protowire.SizeTag(fieldKVValue) + protowire.SizeBytes(len(value))
		kvs = protowire.AppendVarint(protowire.AppendTag(kvs, fieldRangeKvs, protowire.BytesType), uint64(n))
		kvs = protowire.AppendBytes(protowire.AppendTag(kvs, fieldKVKey, protowire.BytesType), key)
		kvs = protowire.AppendVarint(protowire.AppendTag(kvs, fieldKVModRevision, protowire.VarintType), uint64(modRev))
		kvs = protowire.AppendBytes(protowire.AppendTag(kvs, fieldKVValue, protowire.BytesType), value)
		if len(kvs) >= seedChunk {
			return send(false)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := send(true); err != nil {
		return err
	}
	s.seeds.Add(1)
	return nil
}

// formatSeedCounts and parseSeedCounts write and read the value of seedCountsHeader. A value that is not
// nKinds-1 counts, each in [0, maxSeedCount], is not read (ok false).
func formatSeedCounts(n [nKinds]int) string {
	var b []byte
	for k := kindOrg; k <= kindAccount; k++ {
		if k > kindOrg {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(n[k]), 10)
	}
	return string(b)
}

func parseSeedCounts(vals []string) (n [nKinds]int, ok bool) {
	if len(vals) != 1 {
		return n, false
	}
	fields := strings.Split(vals[0], ",")
	if len(fields) != int(kindAccount) {
		return n, false
	}
	for i, f := range fields {
		c, err := strconv.Atoi(f)
		if err != nil || c < 0 || c > maxSeedCount {
			return [nKinds]int{}, false
		}
		n[kindOrg+kind(i)] = c
	}
	return n, true
}

// verifySeed checks a seed request against its ticket in etcd (a linearizable read).
func (s *ReportServer) verifySeed(ctx context.Context, req seedRequest) error {
	if ValidateID("node", req.Node) != nil || ValidateID("ticket", req.Ticket) != nil || req.Secret == "" {
		return errors.New("malformed request")
	}
	resp, err := s.cfg.Client.Get(ctx, SeedTicketsPrefix+req.Ticket)
	if err != nil {
		return fmt.Errorf("read ticket: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return errors.New("no such ticket")
	}
	var t seedTicket
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return errors.New("unreadable ticket")
	}
	if t.Node != req.Node || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(reportKeyHash(req.Secret))) != 1 {
		return errors.New("the ticket does not hold that secret")
	}
	return nil
}

// recvWithin receives a stream's first message into m before ctx ends. (A receive cannot be cancelled alone:
// it ends with the stream, which the caller ends when it returns.)
// The message is received into a value of its own, which a receive that ends late cannot write over.
func recvWithin[T any](ctx context.Context, ss grpc.ServerStream) (T, error) {
	type received struct {
		m   T
		err error
	}
	got := make(chan received, 1)
	go func() {
		var r received
		r.err = ss.RecvMsg(&r.m)
		got <- r
	}()
	select {
	case r := <-got:
		if errors.Is(r.err, io.EOF) {
			r.err = errors.New("the stream ended before its first message")
		}
		return r.m, r.err
	case <-ctx.Done():
		var zero T
		return zero, errors.New("no first message in time")
	}
}
