package authz

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/state"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// Benchmarks report ns/op and allocs/op, and the decision benchmarks cpu-ns/op (the process's CPU time per
// decision, which a loaded machine disturbs less than wall time); they never assert timings. Run with
//
//	go test -run '^$' -bench . -benchmem ./authz/

func benchDecide(b *testing.B, a *Authorizer, req *Request, wantAllow bool) {
	b.Helper()
	var d Decision
	if err := a.decideNow(req, &d); err != nil || d.Allow != wantAllow {
		b.Fatalf("decision %+v %v, want allow=%v", d, err, wantAllow)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, ok := processCPU()
	for b.Loop() {
		_ = a.decideNow(req, &d)
	}
	if cpu1, _ := processCPU(); ok {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkDecideHeader: route facts from context_extensions plus x-zitadel-orgid, the path every Envoy route
// with an op takes.
func BenchmarkDecideHeader(b *testing.B) {
	a := testAuthorizer(b, Config{}, testSnapshot(b), 0)
	benchDecide(b, a, headerRequest(), true)
}

func headerRequest() *Request {
	return &Request{Method: "POST", Path: "/ui/login/loginname",
		Headers: map[string]string{"x-zitadel-orgid": orgAcme, "content-type": "application/x-www-form-urlencoded",
			"user-agent": "Mozilla/5.0", "accept": "text/html"},
		Route: map[string]string{FactOp: "login", FactOrgID: orgOther, FactAppID: appPortal}}
}

// BenchmarkDecideHeaderGateway: the header path as deactd configures it, with a fence and a deny-after bound
// for every op (gatewayAuthorizer).
func BenchmarkDecideHeaderGateway(b *testing.B) {
	benchDecide(b, gatewayAuthorizer(b, Config{}, testSnapshot(b)), headerRequest(), true)
}

// gatewayAuthorizer decides against snap as deactd configures an Authorizer: with a fence that costs what
// state.NodeReporter.FencedAt does (an atomic load against the clock reading) and stays open, and a deny-after
// bound of an hour for every op, over a real (unstarted) replica's staleness.
func gatewayAuthorizer(tb testing.TB, cfg Config, snap *state.Snapshot) *Authorizer {
	tb.Helper()
	epoch := time.Now()
	var fence atomic.Int64
	fence.Store(math.MaxInt64)
	rep := state.NewReplica(state.ReplicaConfig{})
	policy, err := ParseStalenessPolicy("all=deny-after:1h")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Logger, cfg.Staleness = quietLogger(), policy
	cfg.Fenced = func(now time.Time) bool { return int64(now.Sub(epoch)) >= fence.Load() }
	a, err := newAuthorizer(cfg, func() *state.Snapshot { return snap }, rep.StalenessAt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	return a
}

// BenchmarkDecideTokenForm: a token request with its client_id in the form body and Basic auth.
func BenchmarkDecideTokenForm(b *testing.B) {
	a := testAuthorizer(b, Config{}, testSnapshot(b), 0)
	req := &Request{Method: "POST", Path: "/oauth/v2/token",
		Headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "authorization": "Basic " + basicCLI},
		Body:    "grant_type=refresh_token&refresh_token=abcdefghijklmnop&client_id=cli&scope=openid"}
	benchDecide(b, a, req, true)
}

func benchToken(b *testing.B) string {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return signJWT(b, key, zitadelClaims(orgAcme, clientPortal, projMain, clientPortal))
}

// BenchmarkDecideJWTCached: an API request whose bearer JWT's claims are in the cache.
func BenchmarkDecideJWTCached(b *testing.B) {
	a := testAuthorizer(b, Config{}, testSnapshot(b), 0)
	req := &Request{Method: "GET", Path: "/management/v1/projects/300",
		Headers: map[string]string{"authorization": "Bearer " + benchToken(b), "accept": "application/json"}}
	var d Decision
	_ = a.decideNow(req, &d)
	a.cache.c.Wait()
	if _, ok := a.cache.get(bearerToken(req.Headers["authorization"])); !ok {
		b.Fatal("token not cached")
	}
	benchDecide(b, a, req, true)
}

// BenchmarkDecideJWTFirstSight: the same request with the cache disabled, so every decision parses the token.
func BenchmarkDecideJWTFirstSight(b *testing.B) {
	a := testAuthorizer(b, Config{TokenCacheEntries: -1}, testSnapshot(b), 0)
	req := &Request{Method: "GET", Path: "/management/v1/projects/300",
		Headers: map[string]string{"authorization": "Bearer " + benchToken(b), "accept": "application/json"}}
	benchDecide(b, a, req, true)
}

// BenchmarkDecideDeny: a deny by a deactivated org named in a context extension (decision only, no shaping).
func BenchmarkDecideDeny(b *testing.B) {
	a := testAuthorizer(b, Config{}, testSnapshot(b), 0)
	req := &Request{Method: "POST", Path: "/webconsole/api/Subclient/1/action/backup",
		Route: map[string]string{FactOrgID: "671"}}
	benchDecide(b, a, req, false)
}

// BenchmarkCheckGRPC: a full Check over loopback gRPC (client marshalling, HTTP/2, server, decision, response).
func BenchmarkCheckGRPC(b *testing.B) {
	a := testAuthorizer(b, Config{RevisionHeader: true}, testSnapshot(b), 0)
	client := serveGRPC(b, a)
	req := checkRequest(b, httpReq(`{"method":"POST","path":"/oauth/v2/token",
		"headers":{"content-type":"application/x-www-form-urlencoded","authorization":"Basic `+basicCLI+`","x-request-id":"abc"},
		"body":"grant_type=client_credentials&scope=openid"}`, `"context_extensions":{"op":"token"}`))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func() *authv3.CheckResponse {
		resp, err := client.Check(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		return resp
	}
	if resp := check(); resp.GetStatus().GetCode() != int32(codes.OK) {
		b.Fatalf("denied: %v", resp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		check()
	}
}

// BenchmarkCheckGRPCParallel: the same with concurrent callers, as Envoy's workers send.
func BenchmarkCheckGRPCParallel(b *testing.B) {
	a := testAuthorizer(b, Config{}, testSnapshot(b), 0)
	client := serveGRPC(b, a)
	req := checkRequest(b, httpReq(`{"method":"GET","path":"/x","headers":{"x-zitadel-orgid":"100"}}`, `"context_extensions":{"op":"login"}`))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Check(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCheckDirect: Check called in process, without gRPC: conversion, decision, response, metrics.
func BenchmarkCheckDirect(b *testing.B) {
	a := testAuthorizer(b, Config{RevisionHeader: true}, testSnapshot(b), 0)
	req := checkRequest(b, httpReq(`{"method":"GET","path":"/x","headers":{"x-zitadel-orgid":"100"}}`, `"context_extensions":{"op":"login","org_id":"101"}`))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
