package authz

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// RulesFile is the format of Config.RulesFile, YAML or JSON:
//
//	rules:
//	  - name: tenant-backup            # optional, shown in logs
//	    method: POST                   # optional; one method or a comma-separated list
//	    path: /api/tenants/{org}/backup  # "*" one segment, "{name}" captured segment, "**" any segments, "pre*suf" glob
//	    caseInsensitive: true          # optional
//	    op: backup                     # login | token | backup | restore | api | other
//	    surface: generic               # optional: generic | oauth-authorize | oauth-token | zitadel | commvault
//	    subjects:
//	      - {kind: org, from: path, name: org}
//	      - {kind: client, from: header, name: X-Client}
//	      - {kind: login, from: form, name: user}   # "domain\user" or "user@domain" mapped through org domains
//
// Subject kinds: org, project, app, client, account, domain, login. Sources: header, query, path (a capture of
// the path pattern), form (a URL-encoded body field), jwt (a claim of the bearer token or jwt_authn metadata).
// Rules are tried in file order before the presets; the first match wins.
type RulesFile struct {
	Rules []Rule `json:"rules"`
}

// Rule is one custom route rule; see RulesFile.
type Rule struct {
	Name            string          `json:"name,omitempty"`
	Method          string          `json:"method,omitempty"`
	Path            string          `json:"path"`
	CaseInsensitive bool            `json:"caseInsensitive,omitempty"`
	Op              string          `json:"op"`
	Surface         string          `json:"surface,omitempty"`
	Subjects        []SubjectSource `json:"subjects,omitempty"`
}

// SubjectSource is where a rule finds one subject of a request.
type SubjectSource struct {
	Kind string `json:"kind"`
	From string `json:"from"`
	Name string `json:"name"`
}

// LoadRules reads and validates a rules file. Errors name the file, the rule's index (from 0) and the field.
func LoadRules(file string) ([]Rule, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	var f RulesFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("rules file %s: %w", file, err)
	}
	if _, err := compileRules(f.Rules); err != nil {
		return nil, fmt.Errorf("rules file %s: %w", file, err)
	}
	return f.Rules, nil
}

func compileRules(rules []Rule) ([]*route, error) {
	var out []*route
	for i, r := range rules {
		rt, err := compileRule(r)
		if err != nil {
			label := fmt.Sprintf("rule %d", i)
			if r.Name != "" {
				label += fmt.Sprintf(" (%s)", r.Name)
			}
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if rt.name == "" {
			rt.name = fmt.Sprintf("rule-%d", i)
		}
		out = append(out, rt)
	}
	return out, nil
}

func compileRule(r Rule) (*route, error) {
	rt := &route{name: r.Name}
	if r.Path == "" {
		return nil, errors.New("path: required")
	}
	p, err := compilePattern(r.Path, r.CaseInsensitive)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", r.Path, err)
	}
	rt.pat = p
	if r.Op == "" {
		return nil, errors.New("op: required (login, token, backup, restore, api or other)")
	}
	if rt.op, err = ParseAction(r.Op); err != nil {
		return nil, fmt.Errorf("op: %w", err)
	}
	rt.mask = rt.op.stateOps()
	if rt.surface, err = parseSurface(r.Surface); err != nil {
		return nil, fmt.Errorf("surface: %w", err)
	}
	if r.Method != "" {
		for m := range strings.SplitSeq(r.Method, ",") {
			m = strings.ToUpper(strings.TrimSpace(m))
			if m == "" || strings.ContainsFunc(m, func(c rune) bool { return c < 'A' || c > 'Z' }) {
				return nil, fmt.Errorf("method: %q is not an HTTP method", r.Method)
			}
			rt.methods = append(rt.methods, m)
		}
	}
	for j, s := range r.Subjects {
		src, err := compileSource(s, &rt.pat)
		if err != nil {
			return nil, fmt.Errorf("subjects[%d]: %w", j, err)
		}
		rt.sources = append(rt.sources, src)
	}
	return rt, nil
}

func compileSource(s SubjectSource, p *pattern) (source, error) {
	var src source
	switch strings.ToLower(s.Kind) {
	case "org":
		src.kind = SubjectOrg
	case "project":
		src.kind = SubjectProject
	case "app":
		src.kind = SubjectApp
	case "client":
		src.kind = SubjectClient
	case "account":
		src.kind = SubjectAccount
	case "domain":
		src.kind = SubjectDomain
	case "login":
		src.kind, src.login = SubjectDomain, true
	case "":
		return src, errors.New("kind: required (org, project, app, client, account, domain or login)")
	default:
		return src, fmt.Errorf("kind: unknown kind %q (want org, project, app, client, account, domain or login)", s.Kind)
	}
	found := false
	for i, n := range fromNames {
		if strings.EqualFold(s.From, n) {
			src.from, found = sourceFrom(i), true
		}
	}
	if !found {
		return src, fmt.Errorf("from: %q is not one of %s", s.From, strings.Join(fromNames[:], ", "))
	}
	if s.Name == "" {
		return src, errors.New("name: required")
	}
	src.name = s.Name
	switch src.from {
	case fromHeader:
		src.name = strings.ToLower(s.Name)
	case fromPath:
		if src.idx = p.capture(s.Name); src.idx < 0 {
			return src, fmt.Errorf("name: the path has no capture {%s}", s.Name)
		}
	}
	return src, nil
}

// jwtClaimNames lists the claims custom rules read, for the parsed-claims cache to keep.
func jwtClaimNames(routes []*route) []string {
	var names []string
	for _, r := range routes {
		for _, s := range r.sources {
			if s.from == fromJWT {
				names = append(names, s.name)
			}
		}
	}
	return names
}
