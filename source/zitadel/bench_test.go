package zitadel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/deploy/local"
	"github.com/deact/deact/source/zitadel"
	"github.com/deact/deact/source/zitadel/zitadeltest"
	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// benchSize is the ZITADEL the benchmarks follow: DEACT_ZITADEL_ORGS orgs [10⁴], one project each with
// DEACT_ZITADEL_APPS_PER_ORG apps [10], so 10⁵ apps by default.
func benchSize() (orgs, appsPerOrg int) {
	orgs, appsPerOrg = 10_000, 10
	if v, err := strconv.Atoi(os.Getenv("DEACT_ZITADEL_ORGS")); err == nil && v > 0 {
		orgs = v
	}
	if v, err := strconv.Atoi(os.Getenv("DEACT_ZITADEL_APPS_PER_ORG")); err == nil && v > 0 {
		appsPerOrg = v
	}
	return orgs, appsPerOrg
}

// BenchmarkZitadelFirstSync: the first reconcile of a large ZITADEL into an empty etcd, then a second one of the
// unchanged ZITADEL. Prints time, records and etcd transactions. Run with -benchtime 1x (make bench-zitadel).
func BenchmarkZitadelFirstSync(b *testing.B) {
	orgs, apps := benchSize()
	fake := zitadeltest.New()
	defer fake.Close()
	t0 := time.Now()
	fake.Populate(orgs, 1, apps)
	fmt.Printf("zitadel fake: %d orgs, %d projects, %d apps populated in %v\n", orgs, orgs, orgs*apps, time.Since(t0).Round(time.Millisecond))
	for b.Loop() {
		srv := etcdtest.Start(b)
		cli := etcdtest.Client(b, srv.Endpoints())
		store := state.NewStore(cli)
		c, err := zitadel.NewClient(zitadel.ClientConfig{URL: fake.URL, Token: fake.Token})
		if err != nil {
			b.Fatal(err)
		}
		rec, err := zitadel.NewReconciler(zitadel.ReconcilerConfig{Client: c, Store: store,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			b.Fatal(err)
		}
		for _, pass := range []string{"first sync", "unchanged sync"} {
			rev0 := revision(b, cli)
			req0 := fake.Requests()
			st, err := rec.Reconcile(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			txns := revision(b, cli) - rev0
			fmt.Printf("%-15s %d orgs, %d projects, %d apps: %v (listing %v), %d records written, %d unchanged, %d etcd transactions, %d ZITADEL requests\n",
				pass+":", st.Orgs, st.Projects, st.Apps, st.Duration.Round(time.Millisecond), st.ListDuration.Round(time.Millisecond),
				st.Written, st.Unchanged, txns, fake.Requests()-req0)
			if pass == "first sync" {
				b.ReportMetric(st.Duration.Seconds(), "first-sync-s")
				b.ReportMetric(float64(txns), "first-sync-txns")
			}
		}
	}
}

func revision(b *testing.B, cli *clientv3.Client) int64 {
	resp, err := cli.Get(context.Background(), "/deact/v1/revision-probe")
	if err != nil {
		b.Fatal(err)
	}
	return resp.Header.Revision
}

// BenchmarkZitadelEventPropagation: on a local cluster of 3 gateways whose admin node follows a ZITADEL of
// benchSize, the time from sending a signed org.deactivated/reactivated event to the admin's webhook until every
// gateway answers accordingly, against deact's own admin write (ZITADEL-compatible API, another org) measured
// alternately in the same run; then both again while a reconcile of the whole ZITADEL runs in a loop. Prints
// p50/p99. DEACT_ZITADEL_ITERATIONS sets the writes per kind and phase [100].
func BenchmarkZitadelEventPropagation(b *testing.B) {
	orgs, apps := benchSize()
	iters := 100
	if v, err := strconv.Atoi(os.Getenv("DEACT_ZITADEL_ITERATIONS")); err == nil && v > 0 {
		iters = v
	}
	fake := zitadeltest.New()
	defer fake.Close()
	ids := fake.Populate(orgs, 1, apps)
	eventOrg, marker := ids[0], ids[len(ids)-1]
	fake.SetOrgState(marker, zitadeltest.Inactive) // denied once the first sync is complete
	const localOrg = "900000000000000001"

	dir := b.TempDir()
	tokenFile, keyFile := filepath.Join(dir, "pat"), filepath.Join(dir, "keys")
	_ = os.WriteFile(tokenFile, []byte(fake.Token), 0o600)
	_ = os.WriteFile(keyFile, []byte(e2eKey), 0o600)
	// The nodes run as deactd child processes, each with its own heap and GC, as in production (the etcd members
	// and the fake ZITADEL stay in this process); DEACT_ZITADEL_INPROCESS=1 runs them in this process instead.
	lc := local.Config{Dir: filepath.Join(dir, "cluster")}
	mode := "deactd child processes"
	if os.Getenv("DEACT_ZITADEL_INPROCESS") == "1" {
		mode = "in this process"
		lc.Daemon = func(dc *daemon.Config) {
			if dc.Role == daemon.AdminNode {
				dc.Zitadel = daemon.ZitadelConfig{URL: fake.URL, TokenFile: tokenFile, SigningKeyFile: keyFile, SyncInterval: time.Hour}
			}
		}
	} else {
		lc.Exec = filepath.Join(dir, "deactd")
		if out, err := exec.Command("go", "build", "-o", lc.Exec, "../../cmd/deactd").CombinedOutput(); err != nil {
			b.Fatalf("go build deactd: %v\n%s", err, out)
		}
		lc.AdminArgs = []string{"--zitadel-url", fake.URL, "--zitadel-token-file", tokenFile,
			"--zitadel-signing-key-file", keyFile, "--zitadel-sync-interval", "1h"}
	}
	start := time.Now()
	c, err := local.Start(lc)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var gws []authv3.AuthorizationClient
	for _, addr := range c.AuthzAddrs() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		gws = append(gws, authv3.NewAuthorizationClient(conn))
	}
	for _, gw := range gws {
		for got, err := check(gw, marker, ""); err != nil || got != int32(code.Code_PERMISSION_DENIED); got, err = check(gw, marker, "") {
			if time.Since(start) > 10*time.Minute {
				b.Fatal("first sync did not finish")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Printf("cluster (nodes as %s) up and first sync of %d orgs / %d apps enforced on every gateway after %v\n", mode, orgs, orgs*apps, time.Since(start).Round(time.Millisecond))

	// flip sends a write and returns when every gateway answers want for org, and how long the writer's answer took.
	type outcome struct {
		all, ack        time.Duration
		status          int
		confirmed       string
		seenOnEveryNode bool
	}
	flip := func(org string, want code.Code, send func() (int, string)) outcome {
		t0 := time.Now()
		var wg sync.WaitGroup
		per := make([]time.Duration, len(gws))
		done := make(chan struct{})
		for i, gw := range gws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(t0) < 10*time.Second {
					if got, err := check(gw, org, ""); err == nil && got == int32(want) {
						per[i] = time.Since(t0)
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
				per[i] = -1
			}()
		}
		go func() { wg.Wait(); close(done) }()
		status, confirmed := send()
		ack := time.Since(t0)
		<-done
		return outcome{all: slices.Max(per), ack: ack, status: status, confirmed: confirmed, seenOnEveryNode: !slices.Contains(per, -1)}
	}
	adminWrite := func(deactivate bool) (int, string) {
		action := "_reactivate"
		if deactivate {
			action = "_deactivate"
		}
		req, _ := http.NewRequest("POST", c.AdminURL()+"/management/v1/orgs/me/"+action, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
		req.Header.Set("x-zitadel-orgid", localOrg)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, ""
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Deact-Confirmed")
	}

	// measure runs at least iters writes of each kind, and on until more() says enough.
	measure := func(phase string, n int, more func() bool) {
		var ev, evAck, adm, admAck []time.Duration
		var failed, unconfirmed, unseen int
		count := func(o outcome, all, ack *[]time.Duration) {
			switch {
			case o.status != http.StatusOK:
				failed++
			case !o.seenOnEveryNode:
				unseen++
			default:
				*all, *ack = append(*all, o.all), append(*ack, o.ack)
			}
			if o.confirmed != "3/3" {
				unconfirmed++
			}
		}
		for i := 0; i < n || more(); i++ {
			deactivate := i%2 == 0
			want, state := code.Code_OK, zitadeltest.Active
			if deactivate {
				want, state = code.Code_PERMISSION_DENIED, zitadeltest.Inactive
			}
			e := fake.SetOrgState(eventOrg, state)
			count(flip(eventOrg, want, func() (int, string) { st, conf, _ := post(c.Admin.AdminAddr, e); return st, conf }), &ev, &evAck)
			count(flip(localOrg, want, func() (int, string) { return adminWrite(deactivate) }), &adm, &admAck)
		}
		fmt.Printf("%-18s event → denied/allowed on all 3 gateways: p50 %s p99 %s (webhook answer p50 %s p99 %s) | "+
			"deact admin write: p50 %s p99 %s (answer p50 %s p99 %s) | %d+%d writes; not 200: %d, not seen on every gateway in 10 s: %d, answered before 3/3 (confirm timeout): %d\n",
			phase+":", pct(ev, 50), pct(ev, 99), pct(evAck, 50), pct(evAck, 99), pct(adm, 50), pct(adm, 99), pct(admAck, 50), pct(admAck, 99),
			len(ev), len(adm), failed, unseen, unconfirmed)
		if failed+unseen > 0 && phase != "warm-up" {
			b.Errorf("%s: %d writes failed, %d were not seen on every gateway", phase, failed, unseen)
		}
	}
	for b.Loop() {
		// The gateways have just applied 1200 transactions of the first sync; let them settle first.
		measure("warm-up", 20, func() bool { return false })
		measure("idle", iters, func() bool { return false })

		// The same while a reconcile of the whole ZITADEL runs in a loop (here, against the cluster's etcd).
		cli := etcdtest.Client(b, c.Etcd.Endpoints())
		zc, _ := zitadel.NewClient(zitadel.ClientConfig{URL: fake.URL, Token: fake.Token})
		rec, err := zitadel.NewReconciler(zitadel.ReconcilerConfig{Client: zc, Store: state.NewStore(cli), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var rounds atomic.Int64
		var mu sync.Mutex
		var last zitadel.SyncStats
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if st, err := rec.Reconcile(ctx); err == nil {
					rounds.Add(1)
					mu.Lock()
					last = st
					mu.Unlock()
				}
			}
		}()
		measure("reconcile running", iters, func() bool { return rounds.Load() < 2 })
		cancel()
		wg.Wait()
		fmt.Printf("  (%d full reconciles of %d orgs / %d apps completed during that phase, the last in %v, %d written)\n",
			rounds.Load(), last.Orgs, last.Apps, last.Duration.Round(time.Millisecond), last.Written)
	}
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return fmt.Sprintf("%.2fms", float64(s[max(i, 0)].Microseconds())/1000)
}
