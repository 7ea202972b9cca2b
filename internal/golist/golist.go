// Package golist answers, for tests that hold the module's structure, which packages a package links: the go
// command's own answer (go list -deps), so a new import anywhere down the graph is seen.
package golist

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Deps is every package pkg links (pkg included), as `go list -deps pkg` lists them from the test's directory.
// It fails the test if the go command does not answer, or answers too few to be a real listing.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps %s answered %q", pkg, deps)
	}
	return deps
}

// Check fails the test for each of deps that has one of the forbidden prefixes (a package path, or a path
// prefix ending in "/"), unless it has one of the allowed ones, and for each of required that deps lacks.
func Check(t testing.TB, what string, deps, forbidden, allowed, required []string) {
	t.Helper()
	for _, dep := range deps {
		if slices.ContainsFunc(allowed, func(a string) bool { return matches(dep, a) }) {
			continue
		}
		for _, bad := range forbidden {
			if matches(dep, bad) {
				t.Errorf("%s links %s", what, dep)
			}
		}
	}
	for _, req := range required {
		if !slices.Contains(deps, req) {
			t.Errorf("%s does not link %s", what, req)
		}
	}
}

// matches reports whether dep is pattern, or a package under it ("x/" or "x" both match x/y).
func matches(dep, pattern string) bool {
	p := strings.TrimSuffix(pattern, "/")
	return dep == p || strings.HasPrefix(dep, p+"/")
}
