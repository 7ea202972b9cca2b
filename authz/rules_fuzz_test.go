package authz

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzRulesFile: any rules file is either rejected with an error or compiles into routes that match paths
// without a panic.
func FuzzRulesFile(f *testing.F) {
	for _, seed := range []string{
		"rules:\n  - {path: /api/tenants/{org}/backup, op: backup, subjects: [{kind: org, from: path, name: org}]}\n",
		"rules:\n  - {method: POST, path: /**/Login, caseInsensitive: true, op: login, surface: commvault}\n",
		`{"rules":[{"path":"/x/*/y","op":"token","subjects":[{"kind":"client","from":"header","name":"X-Client"}]}]}`,
		"rules:\n  - {path: /a/**/b/**, op: login}\n",
		"rules: [{path: relative, op: fly}]\n",
		"rules:\n  - {path: '/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}', op: api}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var rf RulesFile
		if yaml.UnmarshalStrict([]byte(doc), &rf) != nil {
			return
		}
		routes, err := compileRules(rf.Rules)
		if err != nil {
			return
		}
		var m match
		for _, r := range routes {
			for _, p := range []string{"/", "/api/tenants/7/backup", "/webconsole/api/Login", "/a/x/b/y", doc} {
				r.pat.match(p, &m)
			}
		}
	})
}
