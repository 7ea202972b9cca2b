package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
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

// cli holds the parsed flags and the HTTP client of one run; the admin API is called through adminapi.Client.
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
	switch {
	case len(a) == 3 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "org":
		req := adminapi.DeactivateRequest{Ops: c.ops, Exact: c.exact, Reason: c.reason}
		return c.call(func(api *adminapi.Client) error {
			return c.printWrite(pick(a[0], api.DeactivateOrg, api.ReactivateOrg)(ctx, a[2], req))
		})
	case len(a) == 3 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "project":
		req := adminapi.DeactivateRequest{OrgID: c.org, Reason: c.reason}
		return c.call(func(api *adminapi.Client) error {
			return c.printWrite(pick(a[0], api.DeactivateProject, api.ReactivateProject)(ctx, a[2], req))
		})
	case len(a) == 4 && (a[0] == "deactivate" || a[0] == "reactivate") && a[1] == "app":
		req := adminapi.DeactivateRequest{OrgID: c.org, Reason: c.reason}
		return c.call(func(api *adminapi.Client) error {
			return c.printWrite(pick(a[0], api.DeactivateApp, api.ReactivateApp)(ctx, a[2], a[3], req))
		})
	case len(a) == 3 && a[0] == "status" && a[1] == "org":
		return c.call(func(api *adminapi.Client) error {
			return c.status(local(api.GetOrg(ctx, a[2])), func() (adminapi.MirrorResponse, error) { return api.MirroredOrg(ctx, a[2]) })
		})
	case len(a) == 3 && a[0] == "status" && a[1] == "project":
		return c.call(func(api *adminapi.Client) error {
			return c.status(local(api.GetProject(ctx, a[2])), func() (adminapi.MirrorResponse, error) { return api.MirroredProject(ctx, a[2]) })
		})
	case len(a) == 4 && a[0] == "status" && a[1] == "app":
		return c.call(func(api *adminapi.Client) error {
			return c.status(local(api.GetApp(ctx, a[2], a[3])), func() (adminapi.MirrorResponse, error) { return api.MirroredApp(ctx, a[2], a[3]) })
		})
	case len(a) == 1 && a[0] == "sources":
		return c.call(func(api *adminapi.Client) error {
			v, err := api.Sources(ctx)
			return c.show(v, err, func(t *tabwriter.Writer) {
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
		})
	case len(a) == 2 && a[0] == "list":
		return c.list(ctx, a[1])
	case len(a) == 3 && a[0] == "register" && a[1] == "org":
		req := adminapi.OrgRequest{Name: c.name, Domains: splitList(c.domains), Reason: c.reason}
		return c.call(func(api *adminapi.Client) error { return c.printWrite(api.PutOrg(ctx, a[2], req)) })
	case len(a) == 4 && a[0] == "register" && a[1] == "app":
		req := adminapi.AppRequest{OrgID: c.org, ClientIDs: splitList(c.clients), Reason: c.reason}
		return c.call(func(api *adminapi.Client) error { return c.printWrite(api.PutApp(ctx, a[2], a[3], req)) })
	case len(a) == 3 && a[0] == "register" && a[1] == "account":
		req := adminapi.AccountRequest{OrgID: c.org, Reason: c.reason}
		return c.call(func(api *adminapi.Client) error { return c.printWrite(api.PutAccount(ctx, a[2], req)) })
	case len(a) == 1 && a[0] == "nodes":
		return c.call(func(api *adminapi.Client) error {
			v, err := api.Nodes(ctx)
			return c.show(v, err, func(t *tabwriter.Writer) {
				fmt.Fprintln(t, "NODE\tAPPLIED REVISION\tSTALENESS\tLAST REPORT\tVERSION")
				for _, n := range v.Nodes {
					fmt.Fprintf(t, "%s\t%d\t%s\t%s ago\t%s\n", n.ID, n.AppliedRevision, ms(n.StaleMs), ms(n.AgeMs), n.Version)
				}
			})
		})
	case len(a) == 1 && a[0] == "audit":
		return c.call(func(api *adminapi.Client) error {
			v, err := api.Audit(ctx, adminapi.AuditOptions{Limit: max(c.limit, 0)})
			return c.show(v, err, func(t *tabwriter.Writer) {
				fmt.Fprintln(t, "AT\tREVISION\tACTOR\tACTION\tKEY\tREASON")
				for _, e := range v.Entries {
					fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%s\t%s\n", stamp(e.At), e.Revision, e.Actor, e.Action, e.Key, e.Reason)
				}
			})
		})
	case len(a) == 2 && a[0] == "import":
		return c.importFile(ctx, a[1])
	case len(a) == 2 && a[0] == "token" && a[1] == "create":
		return c.createToken(ctx)
	case len(a) == 2 && a[0] == "token" && a[1] == "list":
		return c.list(ctx, "tokens")
	case len(a) == 3 && a[0] == "token" && a[1] == "delete":
		return c.call(func(api *adminapi.Client) error { return c.printWrite(api.DeleteToken(ctx, a[2])) })
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

// call runs f with a client of the admin API; it fails without a token, before any request.
func (c *cli) call(f func(*adminapi.Client) error) error {
	if c.token == "" {
		return errors.New("no token: pass --token or set DEACT_ADMIN_TOKEN")
	}
	api, err := adminapi.New(adminapi.Config{URL: c.addr, Token: c.token, HTTP: c.http, ConfirmTimeout: max(c.confirmAfter, 0)})
	if err != nil {
		return err
	}
	return f(api)
}

// pick chooses the deactivate or the reactivate call by the command's verb.
func pick[F any](verb string, deactivate, reactivate F) F {
	if verb == "deactivate" {
		return deactivate
	}
	return reactivate
}

// printJSON prints v the way the server encodes its answers (json.Marshal and a newline): deactctl decodes them
// into the types the server encodes, so that -o json prints the answer as it came.
func (c *cli) printJSON(v any) error { return json.NewEncoder(c.out).Encode(v) }

// show prints an answer as a table, or as JSON.
func (c *cli) show(v any, err error, table func(*tabwriter.Writer)) error {
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(v)
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	table(t)
	return t.Flush()
}

// printWrite prints the answer to a write: the revision and the confirmation.
func (c *cli) printWrite(w adminapi.WriteResult, err error) error {
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(w)
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "REVISION\tORG\tCHANGED AT\tCONFIRMED\tWAITED")
	confirmed := fmt.Sprintf("%d/%d", w.Confirmation.Confirmed, w.Confirmation.Total)
	if w.Confirmation.NotNeeded {
		confirmed = adminapi.ConfirmNotNeeded // a token write: no gateway holds tokens
	}
	fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%.1fms\n", w.Revision, w.OrgID, stamp(w.ChangedAt), confirmed, w.Confirmation.WaitedMs)
	t.Flush()
	if len(w.Confirmation.Pending) > 0 {
		fmt.Fprintf(c.out, "not yet applied by: %s\n", strings.Join(w.Confirmation.Pending, ", "))
	}
	return nil
}

// localRecord is a subject's local record as status reads it: found, or the error of the read.
type localRecord struct {
	v   any // *state.Versioned[state.Org], [state.Project] or [state.App]
	err error
}

func local[T any](v state.Versioned[T], err error) localRecord { return localRecord{&v, err} }

// status prints every layer of one subject: the local record (if any) and what each source mirrors. With -o
// json it prints {"local": <record or null>, "mirrored": [...]}.
func (c *cli) status(loc localRecord, mirrored func() (adminapi.MirrorResponse, error)) error {
	haveLocal := loc.err == nil
	if loc.err != nil && !adminapi.IsNotFound(loc.err) {
		return loc.err
	}
	m, err := mirrored()
	if err != nil {
		return err
	}
	if !haveLocal && len(m.Records) == 0 {
		return errors.New("no layer holds a record of it: deact does not deny it")
	}
	if c.output == "json" {
		body := struct {
			Local    any                                   `json:"local"`
			Mirrored []state.Versioned[state.MirrorRecord] `json:"mirrored"`
		}{Mirrored: m.Records}
		if haveLocal {
			body.Local = loc.v
		}
		return c.printJSON(body)
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "LAYER\tSTATE\tDISABLED\tORG\tCLIENT IDS / DOMAINS\tREVISION\tSEQUENCE\tCHANGED BY\tCHANGED AT\tREASON")
	if haveLocal {
		switch v := loc.v.(type) {
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

// list prints every page of a listing.
func (c *cli) list(ctx context.Context, what string) error {
	switch what {
	case "orgs":
		return c.call(func(api *adminapi.Client) error {
			return listAll(ctx, c, api.ListOrgs, "ORG\tNAME\tSTATE\tDISABLED\tREVISION", func(v state.Versioned[state.Org]) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%d", v.Record.ID, v.Record.Name, orgState(v.Record), v.Record.Disabled, v.Revision)
			})
		})
	case "projects":
		return c.call(func(api *adminapi.Client) error {
			return listAll(ctx, c, api.ListProjects, "PROJECT\tORG\tSTATE\tREVISION", func(v state.Versioned[state.Project]) string {
				return fmt.Sprintf("%s\t%s\t%s\t%d", v.Record.ID, v.Record.OrgID, v.Record.State, v.Revision)
			})
		})
	case "apps":
		return c.call(func(api *adminapi.Client) error {
			return listAll(ctx, c, api.ListApps, "PROJECT\tAPP\tORG\tSTATE\tCLIENT IDS\tREVISION", func(v state.Versioned[state.App]) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d", v.Record.ProjectID, v.Record.ID, v.Record.OrgID, v.Record.State, strings.Join(v.Record.ClientIDs, ","), v.Revision)
			})
		})
	case "tokens":
		return c.call(func(api *adminapi.Client) error {
			return listAll(ctx, c, api.ListTokens, "HASH\tNAME\tROLE\tHOME ORG\tSCOPE\tCREATED", func(v state.Versioned[state.Token]) string {
				scope := strings.Join(v.Record.Orgs, ",")
				if v.Record.AllOrgs {
					scope = "all"
				}
				return fmt.Sprintf("%.16s\t%s\t%s\t%s\t%s\t%s", v.Record.Hash, v.Record.Name, v.Record.Role, v.Record.HomeOrg, scope, stamp(v.Record.Created))
			})
		})
	}
	return usageError(fmt.Sprintf("cannot list %q (orgs, projects, apps)", what))
}

// listAll follows the cursor through every page: a table prints each page as it comes; -o json gathers the
// pages and prints them as one document, {"items":[...]}.
func listAll[T any](ctx context.Context, c *cli, list adminapi.ListFunc[T], header string, row func(state.Versioned[T]) string) error {
	o := adminapi.ListOptions{Limit: max(c.limit, 0)}
	if c.output == "json" {
		items, err := adminapi.All(ctx, list, o)
		if err != nil {
			return err
		}
		return c.printJSON(struct {
			Items []state.Versioned[T] `json:"items"`
		}{items})
	}
	t := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, header)
	for pg, err := range adminapi.Pages(ctx, list, o) {
		if err != nil {
			return err
		}
		for _, v := range pg.Items {
			fmt.Fprintln(t, row(v))
		}
	}
	return t.Flush()
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
	return c.call(func(api *adminapi.Client) error {
		// The import streams for as long as the server allows (30 minutes by default), not the per-request
		// --timeout: the client waits that long. The server's error answer says what was committed, and how to
		// resume: its message is printed.
		res, err := api.Import(ctx, r, adminapi.ImportOptions{Skip: c.skip})
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(res)
		}
		_, err = fmt.Fprintf(c.out, "imported %d records (lines 1-%d committed, %d skipped) in %d batches, revision %d, confirmed by %d/%d nodes\n",
			res.Records, res.Lines, res.Skipped, res.Batches, res.Revision, res.Confirmation.Confirmed, res.Confirmation.Total)
		return err
	})
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
	return c.call(func(api *adminapi.Client) error {
		res, err := api.CreateToken(ctx, req)
		if err != nil {
			return err
		}
		if c.output == "json" {
			return c.printJSON(res)
		}
		scope := strings.Join(res.Record.Orgs, ",")
		if res.Record.AllOrgs {
			scope = "all"
		}
		fmt.Fprintf(c.out, "token: %s\n(shown once: store it now)\nhash: %s\nrole: %s  home org: %s  scope: %s\n",
			res.Token, res.Record.Hash, res.Record.Role, res.Record.HomeOrg, scope)
		return nil
	})
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
