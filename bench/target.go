package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Transports a check run can use.
const (
	TransportGRPC = "grpc" // Envoy ext_authz gRPC (envoy.service.auth.v3.Authorization/Check)
	TransportHTTP = "http" // the HTTP check endpoint, as nginx auth_request calls it
)

// sender sends one prepared request to a check server over one of its connections and returns whether it was
// denied. An answer that is neither an allow nor a deny is an error.
type sender interface {
	send(ctx context.Context, conn int, t *template) (deny bool, err error)
	conns() int
	// target names connection conn's address.
	target(conn int) string
	close()
}

// checkLoopback refuses addresses that are not on this machine: deactbench loads only loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q: deactbench sends load only to loopback addresses (127.0.0.0/8, ::1, localhost)", addr)
	}
	return nil
}

// checkLoopbackURL is checkLoopback for a base URL such as http://127.0.0.1:8080.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("URL %q: want http://host:port", raw)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return checkLoopback(host)
}

// grpcSender holds conns gRPC connections spread round-robin over the addresses.
type grpcSender struct {
	cc      []*grpc.ClientConn
	clients []authv3.AuthorizationClient
	addrs   []string
}

func newGRPCSender(addrs []string, conns int) (*grpcSender, error) {
	s := &grpcSender{}
	for i := range max(conns, len(addrs)) {
		addr := addrs[i%len(addrs)]
		if err := checkLoopback(addr); err != nil {
			s.close()
			return nil, err
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
		}
		cc.Connect()
		s.cc = append(s.cc, cc)
		s.clients = append(s.clients, authv3.NewAuthorizationClient(cc))
		s.addrs = append(s.addrs, addr)
	}
	return s, nil
}

func (s *grpcSender) send(ctx context.Context, conn int, t *template) (bool, error) {
	resp, err := s.clients[conn%len(s.clients)].Check(ctx, t.grpc)
	if err != nil {
		return false, err
	}
	switch c := resp.GetStatus().GetCode(); c {
	case int32(code.Code_OK):
		return false, nil
	case int32(code.Code_PERMISSION_DENIED):
		return true, nil
	default:
		return false, fmt.Errorf("check answered status %d (%s)", c, resp.GetStatus().GetMessage())
	}
}

func (s *grpcSender) conns() int             { return len(s.clients) }
func (s *grpcSender) target(conn int) string { return s.addrs[conn%len(s.addrs)] }

func (s *grpcSender) close() {
	for _, cc := range s.cc {
		cc.Close()
	}
}

// httpSender calls /check on the addresses; each address gets its own pool of at most conns/len(addrs)
// keep-alive connections (HTTP/1.1, as nginx's upstream keepalive uses).
type httpSender struct {
	clients []*http.Client
	urls    []string
	addrs   []string
}

func newHTTPSender(addrs []string, conns int) (*httpSender, error) {
	s := &httpSender{}
	per := max(conns/len(addrs), 1)
	for _, addr := range addrs {
		if err := checkLoopback(addr); err != nil {
			return nil, err
		}
		tr := &http.Transport{MaxIdleConns: per, MaxIdleConnsPerHost: per, MaxConnsPerHost: per,
			IdleConnTimeout: time.Minute, DisableCompression: true, ForceAttemptHTTP2: false}
		s.clients = append(s.clients, &http.Client{Transport: tr, Timeout: 30 * time.Second})
		s.urls = append(s.urls, "http://"+addr+"/check")
		s.addrs = append(s.addrs, addr)
	}
	return s, nil
}

func (s *httpSender) send(ctx context.Context, conn int, t *template) (bool, error) {
	i := conn % len(s.clients)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.urls[i], nil)
	if err != nil {
		return false, err
	}
	req.Header = t.header // read only: neither the client nor the transport writes to it
	resp, err := s.clients[i].Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return false, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return true, nil
	default:
		return false, fmt.Errorf("check answered HTTP %d", resp.StatusCode)
	}
}

func (s *httpSender) conns() int             { return len(s.clients) }
func (s *httpSender) target(conn int) string { return s.addrs[conn%len(s.addrs)] }

func (s *httpSender) close() {
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
}

func newSender(transport string, addrs []string, conns int) (sender, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no check server address")
	}
	switch transport {
	case TransportGRPC, "":
		return newGRPCSender(addrs, conns)
	case TransportHTTP:
		return newHTTPSender(addrs, conns)
	}
	return nil, fmt.Errorf("transport %q: want grpc or http", transport)
}
