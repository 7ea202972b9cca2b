package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// listStream reads the whole state prefix with etcd's RangeStream (etcd ≥ 3.7) at one linearizable revision,
// calling put for each record in key order, and returns that revision.
//
// It is the client's GetStream without the client's decoding: each chunk of the stream is parsed where gRPC
// received it, and put sees the key and value as slices of the received frame, valid during the call only.
// Decoding into KeyValue messages made about 330 bytes of garbage per record (the message, a copy of its key
// and of its value), a third of all a large list allocated; it is what pushed a gateway's peak memory up.
func (r *Replica) listStream(ctx context.Context, put func(key, value []byte, modRev int64)) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we stop reading early
	st, err := r.cfg.Client.ActiveConnection().NewStream(sctx, &grpc.StreamDesc{ServerStreams: true},
		pb.KV_RangeStream_FullMethodName,
		grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(rangeCodec{}))
	if err != nil {
		return 0, err
	}
	req := &pb.RangeRequest{Key: []byte(StatePrefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(StatePrefix))}
	if err := st.SendMsg(req); err != nil {
		return 0, recvErr(st, err)
	}
	if err := st.CloseSend(); err != nil {
		return 0, err
	}
	return recvRange(st, put, nil)
}

// recvRange receives a range stream (etcd's, or an admin node's seed), calling put for each record and got
// (if not nil) after each chunk, and returns the revision its final chunk carries.
func recvRange(st grpc.ClientStream, put func(key, value []byte, modRev int64), got func()) (int64, error) {
	c := &rangeChunk{put: put}
	for {
		err := st.RecvMsg(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		if got != nil {
			got()
		}
	}
	if c.rev == 0 {
		return 0, errors.New("range stream ended without its final chunk")
	}
	return c.rev, nil
}

// recvErr is the stream's own error after a failed send (gRPC reports io.EOF from SendMsg and the status from
// RecvMsg).
func recvErr(st grpc.ClientStream, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if rerr := st.RecvMsg(&rangeChunk{put: func([]byte, []byte, int64) {}}); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return err
}

// rangeChunk receives the chunks of one range stream: put is called for every record, and rev is the revision
// of the header (which the final chunk carries).
type rangeChunk struct {
	put func(key, value []byte, modRev int64)
	rev int64
	buf []byte // a chunk's bytes, when it came in more than one buffer
}

// rangeCodec is the protobuf codec of the list's stream: it marshals the request as usual and parses each
// response into its rangeChunk in place (parse), never building the response message.
type rangeCodec struct{}

func (rangeCodec) Name() string { return "proto" }

func (rangeCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*seedRequest); ok { // a seed's request (seed.go)
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("range stream: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rangeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c, ok := v.(*rangeChunk)
	if !ok {
		return fmt.Errorf("range stream: cannot unmarshal into %T", v)
	}
	if len(data) == 1 {
		return c.parse(data[0].ReadOnlyData())
	}
	// A chunk spans many frames: it is copied into the stream's own buffer, reused from chunk to chunk. (gRPC's
	// pools are sync.Pools, which every collection empties, so under a list's collections they allocated anew.)
	n := data.Len()
	if cap(c.buf) < n {
		c.buf = make([]byte, n+n/4) // room for the next chunks, which etcd sizes alike
	}
	c.buf = c.buf[:n]
	data.CopyTo(c.buf)
	return c.parse(c.buf)
}

// Field numbers of the messages parse reads (etcdserverpb's rpc.proto, mvccpb's kv.proto).
const (
	fieldStreamRange   = 1 // RangeStreamResponse.range_response
	fieldRangeHeader   = 1 // RangeResponse.header
	fieldRangeKvs      = 2 // RangeResponse.kvs
	fieldHeaderRev     = 3 // ResponseHeader.revision
	fieldKVKey         = 1 // KeyValue.key
	fieldKVModRevision = 3 // KeyValue.mod_revision
	fieldKVValue       = 5 // KeyValue.value
)

// parse reads one RangeStreamResponse. It allocates nothing: loops, no closures, over the frame's bytes.
func (c *rangeChunk) parse(b []byte) error {
	for len(b) > 0 {
		num, typ, v, _, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if num == fieldStreamRange && typ == protowire.BytesType {
			if err := c.parseRange(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseRange reads one RangeResponse.
func (c *rangeChunk) parseRange(b []byte) error {
	for len(b) > 0 {
		num, typ, v, _, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case fieldRangeHeader:
			for len(v) > 0 {
				num, typ, _, x, rest, err := nextField(v)
				if err != nil {
					return err
				}
				v = rest
				if num == fieldHeaderRev && typ == protowire.VarintType {
					c.rev = int64(x)
				}
			}
		case fieldRangeKvs:
			var key, value []byte
			var modRev int64
			for len(v) > 0 {
				num, typ, f, x, rest, err := nextField(v)
				if err != nil {
					return err
				}
				v = rest
				switch {
				case num == fieldKVKey && typ == protowire.BytesType:
					key = f
				case num == fieldKVValue && typ == protowire.BytesType:
					value = f
				case num == fieldKVModRevision && typ == protowire.VarintType:
					modRev = int64(x)
				}
			}
			c.put(key, value, modRev)
		}
	}
	return nil
}

// nextField reads the first field of the protobuf message b: v is a length-delimited field's bytes, x a
// varint's value (other wire types are skipped over), rest what follows.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, v []byte, x uint64, rest []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, 0, nil, protowire.ParseError(n)
	}
	b = b[n:]
	switch typ {
	case protowire.BytesType:
		v, n = protowire.ConsumeBytes(b)
	case protowire.VarintType:
		x, n = protowire.ConsumeVarint(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return 0, 0, nil, 0, nil, protowire.ParseError(n)
	}
	return num, typ, v, x, b[n:], nil
}
