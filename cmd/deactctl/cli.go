package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/deploy/nginx"
	"github.com/deact/deact/envoy"
	"github.com/deact/deact/state"
)

const usage = `usage: deactctl [flags] COMMAND

commands:
  deactivate org ID [--ops login,token] [--exact]   deactivate an org (ops: login, token, backup, restore, all)
  deactivate project ID [--org ORG]
  deactivate app PROJECT APP [--org ORG]
  reactivate org ID | project ID | app PROJECT APP [--org ORG]
  status org ID | project ID | app PROJECT APP      show the state of each layer: local (admin APIs) and each
                                                    source's mirror (sequence, removed); deny wins
  list orgs | projects | apps [--limit N]           list everything (all pages)
  register org ID [--name N] [--domains a.com,b.com]
  register app PROJECT APP --org ORG [--clients c1,c2]
  register account ID --org ORG
  nodes                                             gateway nodes, their applied revision and staleness
  sources                                           upstream sources: leader, last reconcile, events, lag, errors
  audit [--limit N]                                 latest changes, newest first
  import FILE [--skip N]                            NDJSON records ("-" reads standard input); --skip N resumes
                                                    an import that committed lines 1..N
  token create --scope all|ORG,ORG [--org HOME] [--role admin|read-only] [--name N]
  token list
  token delete HASH
  envoy-config --preset zitadel|commvault --upstream HOST:PORT [--listen A] [--deact A]
                                                    print a validated Envoy bootstrap (YAML) with deact's ext_authz
  nginx-config --upstream HOST:PORT [--presets zitadel,commvault] [--listen A] [--deact A] [--prefix DIR]
               [--tenants host=org,...]             print an nginx configuration using deact's /check
  caddy-config --upstream HOST:PORT [--presets P] [--listen SITE] [--deact A] [--tenants host=org,...]
                                                    print a Caddyfile using forward_auth to deact's /check
  traefik-config --upstream URL [--presets P] [--listen ENTRYPOINTS] [--deact A] [--max-body N] [--tenants ...]
                                                    print a Traefik dynamic configuration using ForwardAuth
  istio-config [--namespace NS] [--gateway-namespace NS] [--scope all|preset-paths] [--presets P]
                                                    print Istio manifests: ext_authz provider, CUSTOM policy
  envoy-gateway-config [--namespace NS] [--gateway NAME] [--gateway-namespace NS] [--tenants httproute=org,...]
                                                    print Envoy Gateway manifests: SecurityPolicy extAuth.grpc

flags (anywhere on the line):
`

// cli holds the parsed flags and the HTTP client of one run.
type cli struct {
	addr, token, output   string
	ops, reason, org      string
	scope, role, name     string
	domains, clients      string
	preset, upstream      string
	listen, deact         string
	prefix, tenants       string
	presets               string
	namespace, gateway    string
	gatewayNamespace      string
	maxBody               int64
	exact                 bool
	limit                 int
	timeout, confirmAfter time.Duration
	skip                  int
	stdin                 io.Reader
	out                   io.Writer
	http                  *http.Client
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: stdin, out: stdout}
	fs := flag.NewFlagSet("deactctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	addr := getenv("DEACT_ADMIN_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.addr, "addr", addr, "admin API address (env DEACT_ADMIN_ADDR)")
	fs.StringVar(&c.token, "token", getenv("DEACT_ADMIN_TOKEN"), "admin token (env DEACT_ADMIN_TOKEN)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	fs.StringVar(&c.ops, "ops", "", "operations an org deactivation disables (default login,token), or a reactivation enables whichever API disabled them (default all)")
	fs.BoolVar(&c.exact, "exact", false, "what the native API disabled becomes exactly --ops (other APIs' deactivations stay)")
	fs.StringVar(&c.reason, "reason", "", "reason recorded in the audit log")
	fs.StringVar(&c.org, "org", "", "owning org (projects, apps, accounts) or home org (tokens)")
	fs.StringVar(&c.scope, "scope", "", "token scope: all, or a comma-separated list of orgs")
	fs.StringVar(&c.role, "role", state.RoleAdmin, "token role: admin or read-only")
	fs.StringVar(&c.name, "name", "", "org or token name")
	fs.StringVar(&c.domains, "domains", "", "org domains, comma-separated")
	fs.StringVar(&c.clients, "clients", "", "app client IDs, comma-separated")
	fs.StringVar(&c.preset, "preset", "zitadel", "envoy-config: route preset (zitadel or commvault)")
	fs.StringVar(&c.presets, "presets", "zitadel,commvault", "nginx-config: route presets")
	fs.StringVar(&c.upstream, "upstream", "", "envoy-config, nginx-config: the protected service, host:port")
	fs.StringVar(&c.listen, "listen", "", "envoy-config, nginx-config: the proxy's listen address")
	fs.StringVar(&c.deact, "deact", "", "envoy-config: deact's ext_authz address; nginx-config: its HTTP check address")
	fs.StringVar(&c.prefix, "prefix", "", "nginx-config: directory for nginx's pid, logs and temp files")
	fs.StringVar(&c.tenants, "tenants", "", "nginx-config: host=org pairs for requests that do not name their org")
	fs.StringVar(&c.namespace, "namespace", "", "istio-config, envoy-gateway-config: deact's namespace (default deact)")
	fs.StringVar(&c.gateway, "gateway", "", "envoy-gateway-config: the Gateway to protect (default eg)")
	fs.StringVar(&c.gatewayNamespace, "gateway-namespace", "", "istio-config: the ingress gateway's namespace (default istio-system); envoy-gateway-config: the Gateway's (default default)")
	fs.Int64Var(&c.maxBody, "max-body", 0, "traefik-config, istio-config, envoy-gateway-config: body bytes sent to deact (default 65536, deactd's limit)")
	fs.IntVar(&c.limit, "limit", 0, "page size (list) or number of entries (audit)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound on each request")
	fs.IntVar(&c.skip, "skip", 0, "import: lines already committed, not written again")
	fs.DurationVar(&c.confirmAfter, "confirm-timeout", 0, "how long the server waits for gateway nodes (default: the server's)")
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) == 0 || pos[0] == "help" {
		fs.Usage()
		return 2
	}
	if c.output != "table" && c.output != "json" {
		fmt.Fprintln(stderr, "deactctl: -o must be table or json")
		return 2
	}
	c.addr = strings.TrimSuffix(c.addr, "/")
	c.http = &http.Client{Timeout: c.timeout}
	defer c.http.CloseIdleConnections()
	if err := c.dispatch(ctx, pos); err != nil {
		fmt.Fprintln(stderr, "deactctl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// parseInterleaved lets flags come before, between and after the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

type usageError string

func (u usageError) Error() string { return string(u) + " (deactctl help lists the commands)" }

func (c *cli) dispatch(ctx context.Context, a []string) error {
	arg := func(i int) string {
		if i < len(a) {
			return a[i]
		}
		return ""
	}
	esc := url.PathEscape
	switch {
	case len(a) == 3 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "org":
		body := adminapi.DeactivateRequest{Ops: c.ops, Exact: c.exact, Reason: c.reason}
		return c.send(ctx, "POST", "/v1/orgs/"+esc(a[2])+"/"+a[0], body)
	case len(a) == 3 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "project":
		return c.send(ctx, "POST", "/v1/projects/"+esc(a[2])+"/"+a[0], adminapi.DeactivateRequest{OrgID: c.org, Reason: c.reason})
	case len(a) == 4 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "app":
		return c.send(ctx, "POST", "/v1/projects/"+esc(a[2])+"/apps/"+esc(a[3])+"/"+a[0], adminapi.DeactivateRequest{OrgID: c.org, Reason: c.reason})
	case len(a) == 3 && a[0] == "status" && a[1] == "org":
		return c.status(ctx, "/v1/orgs/"+esc(a[2]), "/v1/mirror/orgs/"+esc(a[2]), &state.Versioned[state.Org]{})
	case len(a) == 3 && a[0] == "status" && a[1] == "project":
		return c.status(ctx, "/v1/projects/"+esc(a[2]), "/v1/mirror/projects/"+esc(a[2]), &state.Versioned[state.Project]{})
	case len(a) == 4 && a[0] == "status" && a[1] == "app":
		p := "/projects/" + esc(a[2]) + "/apps/" + esc(a[3])
		return c.status(ctx, "/v1"+p, "/v1/mirror"+p, &state.Versioned[state.App]{})
	case len(a) == 1 && a[0] == "sources":
		var v adminapi.SourcesResponse
		return c.show(ctx, "/v1/sources", &v, func(t *tabwriter.Writer) {
			fmt.Fprintln(t, "SOURCE\tKIND\tLEADER\tREPORTED\tLAST RECONCILE\tTOOK\tCHANGED\tRECORDS\tLAST EVENT\tACCEPTED/IGNORED/REJECTED\tLAG\tLAST ERROR")
			for _, s := range v.Sources {
				rec := stamp(s.LastReconcileAt)
				if s.LastReconcileError != "" {
					rec += " (failed)"
				}
				event := "-"
				if !s.LastEventAt.IsZero() {
					event = stamp(s.LastEventAt) + " " + s.LastEventType
				}
				lastErr := "-"
				if s.LastError != "" {
					lastErr = stamp(s.LastErrorAt) + " " + s.LastError
				}
				fmt.Fprintf(t, "%s\t%s\t%s\t%s ago\t%s\t%s\t%d\t%d\t%s\t%d/%d/%d\t%s\t%s\n", s.Source, s.Kind, s.Leader, ms(s.AgeMs), rec,
					s.LastReconcileDuration.Round(time.Millisecond), s.LastReconcileChanged, s.Records, event,
					s.EventsAccepted, s.EventsIgnored, s.EventsRejected, ms(s.LagMs), lastErr)
			}
		})
	case len(a) == 2 && a[0] == "list":
		return c.list(ctx, a[1])
	case len(a) == 3 && a[0] == "register" && a[1] == "org":
		return c.send(ctx, "PUT", "/v1/orgs/"+esc(a[2]), adminapi.OrgRequest{Name: c.name, Domains: splitList(c.domains), Reason: c.reason})
	case len(a) == 4 && a[0] == "register" && a[1] == "app":
		return c.send(ctx, "PUT", "/v1/projects/"+esc(a[2])+"/apps/"+esc(a[3]), adminapi.AppRequest{OrgID: c.org, ClientIDs: splitList(c.clients), Reason: c.reason})
	case len(a) == 3 && a[0] == "register" && a[1] == "account":
		return c.send(ctx, "PUT", "/v1/accounts/"+esc(a[2]), adminapi.AccountRequest{OrgID: c.org, Reason: c.reason})
	case len(a) == 1 && a[0] == "nodes":
		var v adminapi.NodesResponse
		return c.show(ctx, "/v1/nodes", &v, func(t *tabwriter.Writer) {
			fmt.Fprintln(t, "NODE\tAPPLIED REVISION\tSTALENESS\tLAST REPORT\tVERSION")
			for _, n := range v.Nodes {
				fmt.Fprintf(t, "%s\t%d\t%s\t%s ago\t%s\n", n.ID, n.AppliedRevision, ms(n.StaleMs), ms(n.AgeMs), n.Version)
			}
		})
	case len(a) == 1 && a[0] == "audit":
		var v struct{ Entries []state.AuditEntry }
		path := "/v1/audit"
		if c.limit > 0 {
			path += fmt.Sprintf("?limit=%d", c.limit)
		}
		return c.show(ctx, path, &v, func(t *tabwriter.Writer) {
			fmt.Fprintln(t, "AT\tREVISION\tACTOR\tACTION\tKEY\tREASON")
			for _, e := range v.Entries {
				fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%s\t%s\n", stamp(e.At), e.Revision, e.Actor, e.Action, e.Key, e.Reason)
			}
		})
	case len(a) == 2 && a[0] == "import":
		return c.importFile(ctx, a[1])
	case len(a) == 2 && a[0] == "token" && a[1] == "create":
		return c.createToken(ctx)
	case len(a) == 2 && a[0] == "token" && a[1] == "list":
		return c.list(ctx, "tokens")
	case len(a) == 3 && a[0] == "token" && a[1] == "delete":
		return c.send(ctx, "DELETE", "/v1/tokens/"+esc(a[2]), nil)
	case len(a) == 1 && a[0] == "envoy-config":
		return c.envoyConfig()
	case len(a) == 1 && a[0] == "nginx-config":
		return c.nginxConfig()
	case len(a) == 1 && a[0] == "caddy-config":
		return c.caddyConfig()
	case len(a) == 1 && a[0] == "traefik-config":
		return c.traefikConfig()
	case len(a) == 1 && (a[0] == "istio-config" || a[0] == "envoy-gateway-config"):
		return c.meshConfig(a[0] == "istio-config")
	}
	return usageError(fmt.Sprintf("unknown command %q", strings.TrimSpace(strings.Join([]string{arg(0), arg(1)}, " "))))
}

// do sends one request and decodes the answer into out; a non-2xx answer becomes an error with the server's
// message.
func (c *cli) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) (http.Header, error) {
	if c.token == "" {
		return nil, errors.New("no token: pass --token or set DEACT_ADMIN_TOKEN")
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.confirmAfter > 0 {
		req.Header.Set(adminapi.HeaderConfirmTimeout, c.confirmAfter.String())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var eb adminapi.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
			return nil, fmt.Errorf("%s (%d %s)", eb.Error.Message, eb.Error.Status, eb.Error.Code)
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if c.output == "json" {
		_, err := c.out.Write(b)
		return resp.Header, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("unexpected answer: %w", err)
		}
	}
	return resp.Header, nil
}

func (c *cli) sendJSON(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	_, err := c.do(ctx, method, path, r, "application/json", out)
	return err
}

// send writes and prints the revision and the confirmation.
func (c *cli) send(ctx context.Context, method, path string, body any) error {
	var w adminapi.WriteResult
	if err := c.sendJSON(ctx, method, path, body, &w); err != nil {
		return err
	}
	if c.output == "table" {
		printWrite(c.out, w)
	}
	return nil
}

func printWrite(out io.Writer, w adminapi.WriteResult) {
	t := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "REVISION\tORG\tCHANGED AT\tCONFIRMED\tWAITED")
	confirmed := fmt.Sprintf("%d/%d", w.Confirmation.Confirmed, w.Confirmation.Total)
	if w.Confirmation.NotNeeded {
		confirmed = adminapi.ConfirmNotNeeded // a token write: no gateway holds tokens
	}
	fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%.1fms\n", w.Revision, w.OrgID, stamp(w.ChangedAt), confirmed, w.Confirmation.WaitedMs)
	t.Flush()
	if len(w.Confirmation.Pending) > 0 {
		fmt.Fprintf(out, "not yet applied by: %s\n", strings.Join(w.Confirmation.Pending, ", "))
	}
}

// status prints every layer of one subject: the local record (if any) and what each source mirrors. With -o
// json it prints {"local": <record or null>, "mirrored": [...]}.
func (c *cli) status(ctx context.Context, localPath, mirrorPath string, local any) error {
	output := c.output
	c.output = "table" // decode both answers, print once
	defer func() { c.output = output }()
	var haveLocal bool
	switch err := c.sendJSON(ctx, "GET", localPath, nil, local); {
	case err == nil:
		haveLocal = true
	case !strings.Contains(err.Error(), "(404 "):
		return err
	}
	var m adminapi.MirrorResponse
	if err := c.sendJSON(ctx, "GET", mirrorPath, nil, &m); err != nil {
		return err
	}
	if !haveLocal && len(m.Records) == 0 {
		return errors.New("no layer holds a record of it: deact does not deny it")
	}
	if output == "json" {
		body := struct {
			Local    any                                   `json:"local"`
			Mirrored []state.Versioned[state.MirrorRecord] `json:"mirrored"`
		}{Mirrored: m.Records}
		if haveLocal {
			body.Local = local
		}
		return json.NewEncoder(c.out).Encode(body)
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "LAYER\tSTATE\tDISABLED\tORG\tCLIENT IDS / DOMAINS\tREVISION\tSEQUENCE\tCHANGED BY\tCHANGED AT\tREASON")
	if haveLocal {
		switch v := local.(type) {
		case *state.Versioned[state.Org]:
			o := v.Record
			fmt.Fprintf(t, "local\t%s\t%s\t%s\t%s\t%d\t-\t%s\t%s\t%s\n", orgState(o), o.Disabled, o.ID, strings.Join(o.Domains, ","),
				v.Revision, o.ChangedBy, stamp(o.ChangedAt), o.Reason)
		case *state.Versioned[state.Project]:
			p := v.Record
			fmt.Fprintf(t, "local\t%s\t-\t%s\t-\t%d\t-\t%s\t%s\t%s\n", p.State, p.OrgID, v.Revision, p.ChangedBy, stamp(p.ChangedAt), p.Reason)
		case *state.Versioned[state.App]:
			p := v.Record
			fmt.Fprintf(t, "local\t%s\t-\t%s\t%s\t%d\t-\t%s\t%s\t%s\n", p.State, p.OrgID, strings.Join(p.ClientIDs, ","),
				v.Revision, p.ChangedBy, stamp(p.ChangedAt), p.Reason)
		}
	} else {
		fmt.Fprintln(t, "local\t(none)\t\t\t\t\t\t\t\t")
	}
	for _, v := range m.Records {
		r := v.Record
		st := r.StateName()
		if r.Removed {
			st += " " + stamp(r.RemovedAt)
		}
		list := strings.Join(append(slices.Clone(r.ClientIDs), r.Domains...), ",")
		fmt.Fprintf(t, "source %s\t%s\t%s\t%s\t%s\t%d\t%d\t-\t%s\t-\n", r.Source, st, r.Disabled, r.OrgID, list, v.Revision, r.Sequence, stamp(r.ChangedAt))
	}
	return t.Flush()
}

// show gets path into v and prints it as a table (or the JSON as it came).
func (c *cli) show(ctx context.Context, path string, v any, table func(*tabwriter.Writer)) error {
	if err := c.sendJSON(ctx, "GET", path, nil, v); err != nil {
		return err
	}
	if c.output == "table" {
		t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		table(t)
		return t.Flush()
	}
	return nil
}

// list follows the cursor through every page.
func (c *cli) list(ctx context.Context, what string) error {
	var header string
	var row func(json.RawMessage) (string, error)
	switch what {
	case "orgs":
		header = "ORG\tNAME\tSTATE\tDISABLED\tREVISION"
		row = rowOf(func(v state.Versioned[state.Org]) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d", v.Record.ID, v.Record.Name, orgState(v.Record), v.Record.Disabled, v.Revision)
		})
	case "projects":
		header = "PROJECT\tORG\tSTATE\tREVISION"
		row = rowOf(func(v state.Versioned[state.Project]) string {
			return fmt.Sprintf("%s\t%s\t%s\t%d", v.Record.ID, v.Record.OrgID, v.Record.State, v.Revision)
		})
	case "apps":
		header = "PROJECT\tAPP\tORG\tSTATE\tCLIENT IDS\tREVISION"
		row = rowOf(func(v state.Versioned[state.App]) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d", v.Record.ProjectID, v.Record.ID, v.Record.OrgID, v.Record.State, strings.Join(v.Record.ClientIDs, ","), v.Revision)
		})
	case "tokens":
		header = "HASH\tNAME\tROLE\tHOME ORG\tSCOPE\tCREATED"
		row = rowOf(func(v state.Versioned[state.Token]) string {
			scope := strings.Join(v.Record.Orgs, ",")
			if v.Record.AllOrgs {
				scope = "all"
			}
			return fmt.Sprintf("%.16s\t%s\t%s\t%s\t%s\t%s", v.Record.Hash, v.Record.Name, v.Record.Role, v.Record.HomeOrg, scope, stamp(v.Record.Created))
		})
	default:
		return usageError(fmt.Sprintf("cannot list %q (orgs, projects, apps)", what))
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	if c.output == "table" {
		fmt.Fprintln(t, header)
	}
	// With -o json the pages are gathered and printed as one document, {"items":[...]}, so the page requests
	// decode their answers rather than print them.
	fetch, all := c, []json.RawMessage{}
	if c.output == "json" {
		cc := *c
		cc.output = "table"
		fetch = &cc
	}
	after := ""
	for {
		q := url.Values{}
		if after != "" {
			q.Set("after", after)
		}
		if c.limit > 0 {
			q.Set("limit", fmt.Sprint(c.limit))
		}
		path := "/v1/" + what
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var pg struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := fetch.sendJSON(ctx, "GET", path, nil, &pg); err != nil {
			return err
		}
		if c.output == "json" {
			all = append(all, pg.Items...)
			if pg.Next == "" {
				return json.NewEncoder(c.out).Encode(struct {
					Items []json.RawMessage `json:"items"`
				}{all})
			}
			after = pg.Next
			continue
		}
		for _, it := range pg.Items {
			s, err := row(it)
			if err != nil {
				return err
			}
			fmt.Fprintln(t, s)
		}
		if pg.Next == "" {
			break
		}
		after = pg.Next
	}
	return t.Flush()
}

func rowOf[T any](f func(T) string) func(json.RawMessage) (string, error) {
	return func(b json.RawMessage) (string, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return "", err
		}
		return f(v), nil
	}
}

func (c *cli) importFile(ctx context.Context, name string) error {
	var r io.Reader = c.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	if c.skip < 0 {
		return usageError("--skip must be 0 or more")
	}
	// An import streams for as long as the server allows (30 minutes by default), not the per-request --timeout.
	if c.http.Timeout < adminapi.DefaultImportTimeout+time.Minute {
		c.http.Timeout = adminapi.DefaultImportTimeout + time.Minute
	}
	var res adminapi.ImportResponse
	// The server's error answer says what was committed, and how to resume: c.do prints its message.
	if _, err := c.do(ctx, "POST", fmt.Sprintf("/v1/import?skip=%d", c.skip), r, "application/x-ndjson", &res); err != nil {
		return err
	}
	if c.output == "table" {
		fmt.Fprintf(c.out, "imported %d records (lines 1-%d committed, %d skipped) in %d batches, revision %d, confirmed by %d/%d nodes\n",
			res.Records, res.Lines, res.Skipped, res.Batches, res.Revision, res.Confirmation.Confirmed, res.Confirmation.Total)
	}
	return nil
}

func (c *cli) createToken(ctx context.Context) error {
	req := adminapi.TokenRequest{Name: c.name, HomeOrg: c.org, Role: c.role}
	switch c.scope {
	case "":
		return usageError("token create needs --scope all or --scope ORG,ORG")
	case "all":
		req.AllOrgs = true
	default:
		req.Orgs = splitList(c.scope)
	}
	var res adminapi.TokenCreated
	if err := c.sendJSON(ctx, "POST", "/v1/tokens", req, &res); err != nil {
		return err
	}
	if c.output == "table" {
		scope := strings.Join(res.Record.Orgs, ",")
		if res.Record.AllOrgs {
			scope = "all"
		}
		fmt.Fprintf(c.out, "token: %s\n(shown once: store it now)\nhash: %s\nrole: %s  home org: %s  scope: %s\n",
			res.Token, res.Record.Hash, res.Record.Role, res.Record.HomeOrg, scope)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func orgState(o state.Org) string {
	if o.Disabled != 0 {
		return state.Deactivated
	}
	return state.Active
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func ms(v int64) string { return (time.Duration(v) * time.Millisecond).String() }

// envoyConfig prints a validated Envoy bootstrap; it needs no server.
func (c *cli) envoyConfig() error {
	if c.upstream == "" {
		return usageError("envoy-config needs --upstream host:port")
	}
	b, err := envoy.Bootstrap(envoy.Options{Preset: c.preset, Upstream: c.upstream, Listen: c.listen, Deact: c.deact})
	if err != nil {
		return err
	}
	y, err := envoy.YAML(b)
	if err != nil {
		return err
	}
	_, err = c.out.Write(y)
	return err
}

// nginxConfig prints an nginx configuration; it needs no server.
func (c *cli) nginxConfig() error {
	if c.upstream == "" {
		return usageError("nginx-config needs --upstream host:port")
	}
	o := nginx.Options{Presets: splitList(c.presets), Upstream: c.upstream, Deact: c.deact, Listen: c.listen, Prefix: c.prefix}
	for _, pair := range splitList(c.tenants) {
		host, org, ok := strings.Cut(pair, "=")
		if !ok {
			return usageError(fmt.Sprintf("--tenants %q: want host=org", pair))
		}
		o.Tenants = append(o.Tenants, nginx.Tenant{Host: host, OrgID: org})
	}
	return nginx.Render(c.out, o)
}
