package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// NullServer is the baseline: an ext_authz gRPC server and an HTTP check endpoint that allow every request
// without looking at it. Measured with the same load as deact, in the same process and on the same machine, it
// is what the transport alone costs; deact's figures are reported as a ratio to it. Safe for concurrent use.
type NullServer struct {
	GRPCAddr string // ext_authz gRPC, on a free loopback port
	HTTPAddr string // HTTP check endpoint (any path answers 200)

	grpc *grpc.Server
	http *http.Server
	done chan struct{}
}

// nullAllow is the one answer of the null server, shared by every call (never modified).
var nullAllow = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}

type nullAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (nullAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return nullAllow, nil
}

// StartNullServer listens on two free loopback ports and serves until Close. Its gRPC options match deactd's.
func StartNullServer() (*NullServer, error) { return startNullServer("127.0.0.1:0", "127.0.0.1:0") }

// startNullServer listens on the given loopback addresses (port 0 picks a free port).
func startNullServer(grpcAddr, httpAddr string) (*NullServer, error) {
	for _, a := range []string{grpcAddr, httpAddr} {
		if err := checkLoopback(a); err != nil {
			return nil, err
		}
	}
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return nil, err
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		gl.Close()
		return nil, err
	}
	s := &NullServer{GRPCAddr: gl.Addr().String(), HTTPAddr: hl.Addr().String(), done: make(chan struct{}, 2)}
	s.grpc = grpc.NewServer(grpc.MaxConcurrentStreams(1024), grpc.MaxRecvMsgSize(4<<20))
	authv3.RegisterAuthorizationServer(s.grpc, nullAuthz{})
	s.http = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
	}
	go func() { defer func() { s.done <- struct{}{} }(); _ = s.grpc.Serve(gl) }()
	go func() {
		defer func() { s.done <- struct{}{} }()
		if err := s.http.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return s, nil
}

// Close stops both servers and waits for them.
func (s *NullServer) Close() {
	s.grpc.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	<-s.done
	<-s.done
}
