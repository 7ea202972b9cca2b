package golist

import "testing"

// recorder counts the failures Check reports, without failing the real test (the rest is the real test).
type recorder struct {
	testing.TB
	errors int
}

// Errorf is the only way Check reports.
func (r *recorder) Errorf(string, ...any) { r.errors++ }

func TestCheck(t *testing.T) {
	deps := []string{"fmt", "github.com/deact/deact/admin/adminapi", "github.com/deact/deact/state"}
	cases := []struct {
		name                         string
		deps                         []string
		forbidden, allowed, required []string
		want                         int
	}{
		{"clean", deps, []string{"github.com/deact/deact/admin"}, []string{"github.com/deact/deact/admin/adminapi"}, []string{"github.com/deact/deact/state"}, 0},
		{"a package under a forbidden one", append(deps, "github.com/deact/deact/admin/proto/x"), []string{"github.com/deact/deact/admin"}, []string{"github.com/deact/deact/admin/adminapi"}, nil, 1},
		{"the forbidden package itself", append(deps, "github.com/deact/deact/admin"), []string{"github.com/deact/deact/admin"}, []string{"github.com/deact/deact/admin/adminapi"}, nil, 1},
		{"a prefix with a slash", append(deps, "connectrpc.com/vanguard"), []string{"connectrpc.com/"}, nil, nil, 1},
		{"a name that only starts alike", append(deps, "github.com/deact/deact/adminx"), []string{"github.com/deact/deact/admin"}, []string{"github.com/deact/deact/admin/adminapi"}, nil, 0},
		{"a required one missing", deps, nil, nil, []string{"github.com/deact/deact/internal/launch"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, "x", tc.deps, tc.forbidden, tc.allowed, tc.required)
			if r.errors != tc.want {
				t.Errorf("%d failures, want %d", r.errors, tc.want)
			}
		})
	}
}
