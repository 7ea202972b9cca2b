package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// The direct-report protocol between a gateway's NodeReporter and an admin node's ReportServer: one gRPC
// bidirectional stream per gateway and admin node, JSON messages (no generated code: two small structs).
//
//	gateway → admin: hello {node, instance, registered, secret}, then reports {applied, stalenessMs}
//	admin → gateway: an ack {} once the hello is verified, then an ack {applied} for each report
//
// The hello's secret is the gateway's per-session random secret; the gateway's own registry record (written
// at registration, lease-backed) holds its SHA-256, so an admin node can verify a stream without any shared
// secret, and only the process that wrote the record can report for it.
const (
	reportService = "deact.v1.NodeReports"
	reportMethod  = "/" + reportService + "/Report"
)

// reportMsg is what a gateway sends: the first message of a stream is the hello (Node, Instance, Registered,
// Secret), every later one a report (Applied, StalenessMs).
type reportMsg struct {
	Node       string `json:"node,omitempty"`
	Instance   string `json:"instance,omitempty"`
	Registered int64  `json:"registered,omitempty"` // the revision that created the gateway's record
	Secret     string `json:"secret,omitempty"`

	Applied     int64 `json:"applied,omitempty"`
	StalenessMs int64 `json:"stalenessMs,omitempty"`
}

// reportAck is what an admin node answers: the applied revision it took (0 for the hello's).
type reportAck struct {
	Applied int64 `json:"applied"`
}

// reportKeyHash is what a gateway's record holds of its session secret.
func reportKeyHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// jsonCodec is the report stream's codec; it is forced on both ends, never registered globally.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Name() string                    { return "json" }

// serverCodec is the report listener's codec: JSON for both services' requests and the report stream's acks,
// and a seed's chunks as their sender encoded them (protobuf: the RangeStream response the gateway parses),
// copied into a buffer of gRPC's pool, which gRPC frees once written: the sender reuses its own, and a seed
// of a hundred chunks of a megabyte leaves no garbage on the admin node.
type serverCodec struct{}

func (serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*seedFrame); ok {
		if len(f.head)+len(f.kvs) == 0 {
			return nil, nil // an empty chunk: the seed waits its turn
		}
		pool := mem.DefaultBufferPool()
		b := pool.Get(f.size())
		*b = f.appendTo((*b)[:0])
		return mem.BufferSlice{mem.NewBuffer(b, pool)}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return json.Unmarshal(data.Materialize(), v)
}
func (serverCodec) Name() string { return "json" }

// openReportStream opens a report stream on cc.
func openReportStream(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	desc := &grpc.StreamDesc{StreamName: "Report", ServerStreams: true, ClientStreams: true}
	return cc.NewStream(ctx, desc, reportMethod, grpc.ForceCodec(jsonCodec{}))
}

// reportHandler is the server side of the stream, implemented by ReportServer.
type reportHandler interface {
	report(grpc.ServerStream) error
}

// reportServiceDesc describes the service for grpc.Server.RegisterService.
func reportServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: reportService,
		HandlerType: (*reportHandler)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Report",
			ServerStreams: true,
			ClientStreams: true,
			Handler: func(srv any, stream grpc.ServerStream) error {
				h, ok := srv.(reportHandler)
				if !ok {
					return fmt.Errorf("report service registered with %T", srv)
				}
				return h.report(stream)
			},
		}},
	}
}
