package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/deact/deact/state"
	"github.com/deact/deact/state/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// orgLines makes n org lines o{from}..o{from+n-1}, each with one domain: two writes a line, 60 lines a batch.
func orgLines(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf(`{"org":{"id":"o%d","domains":["d%d.example"]}}`, i, i))
	}
	return out
}

func countPrefix(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestImportDuplicates: a key given twice in one import (an org, an app, a domain or a client ID of two records),
// in one batch or in two, is the caller's mistake naming both lines; the batches before the line are committed
// and counted, nothing after.
func TestImportDuplicates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		lines       []string
		line, other int
		what        string
		committed   int // records
	}{
		{"same org in one batch", []string{`{"org":{"id":"x"}}`, `{"org":{"id":"y"}}`, `{"org":{"id":"x","name":"again"}}`}, 3, 1, `org "x"`, 0},
		{"same domain in two orgs", []string{`{"org":{"id":"x","domains":["A.example"]}}`, `{"org":{"id":"y","domains":["a.example."]}}`}, 2, 1, `domain "a.example"`, 0},
		{"same client id in two apps", []string{`{"app":{"id":"a","projectId":"p","orgId":"1","clientIds":["c1"]}}`, `{"app":{"id":"b","projectId":"p","orgId":"1","clientIds":["c2","c1"]}}`}, 2, 1, `client id "c1"`, 0},
		{"same app twice", []string{`{"app":{"id":"a","projectId":"p","orgId":"1"}}`, `{"app":{"id":"a","projectId":"p","orgId":"2"}}`}, 2, 1, `app "p/a"`, 0},
		{"same project twice", []string{`{"project":{"id":"p","orgId":"1"}}`, "", `{"project":{"id":"p","orgId":"1"}}`}, 3, 1, `project "p"`, 0},
		{"same account twice", []string{`{"account":{"id":"u","orgId":"1"}}`, `{"account":{"id":"u","orgId":"2"}}`}, 2, 1, `account "u"`, 0},
		{"same org two batches apart", append(orgLines(0, 130), `{"org":{"id":"o5"}}`), 131, 6, `org "o5"`, 120},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, cli := newStoreAndClient(t)
			res, err := s.Import(context.Background(), strings.NewReader(strings.Join(c.lines, "\n")+"\n"), who)
			var le *state.ImportLineError
			if !errors.As(err, &le) || le.Line != c.line || le.Other != c.other || !strings.Contains(err.Error(), c.what) ||
				!strings.Contains(err.Error(), fmt.Sprintf("line %d", c.other)) {
				t.Fatalf("err = %v (%+v), want line %d repeating %s of line %d", err, le, c.line, c.what, c.other)
			}
			if res.Records != c.committed || res.Lines != c.committed {
				t.Errorf("result = %+v, want %d records and lines committed", res, c.committed)
			}
			if n := countPrefix(t, cli, state.OrgKey("")) + countPrefix(t, cli, state.AppKey("p", "")) +
				countPrefix(t, cli, state.ProjectKey("")) + countPrefix(t, cli, state.AccountKey("")); n != int64(c.committed) {
				t.Errorf("%d records in etcd, want the %d committed", n, c.committed)
			}
		})
	}
}

// TestImportResume: an import that stops at a bad line has committed exactly lines 1..Lines, in whole batches;
// the corrected input imported again with Skip = Lines writes the rest, and the result is the whole input.
func TestImportResume(t *testing.T) {
	t.Parallel()
	s, cli := newStoreAndClient(t)
	ctx := context.Background()
	lines := orgLines(0, 500)
	bad := append([]string(nil), lines...)
	bad[399] = `{"org":{"id":"a/b"}}`
	res, err := s.Import(ctx, strings.NewReader(strings.Join(bad, "\n")), who)
	var le *state.ImportLineError
	if !errors.As(err, &le) || le.Line != 400 {
		t.Fatalf("err = %v", err)
	}
	// 60 lines a batch: lines 1..360 are committed, 361..399 were pending in the batch the bad line stopped.
	if res.Records != 360 || res.Lines != 360 || res.Batches != 6 {
		t.Fatalf("result = %+v, want 360 records in 6 batches", res)
	}
	if n := countPrefix(t, cli, state.OrgKey("")); n != 360 {
		t.Fatalf("%d orgs in etcd, want 360", n)
	}

	res2, err := s.ImportWith(ctx, strings.NewReader(strings.Join(lines, "\n")), who, state.ImportOptions{Skip: res.Lines})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Records != 140 || res2.Skipped != 360 || res2.Lines != 500 {
		t.Fatalf("resumed result = %+v", res2)
	}
	if n := countPrefix(t, cli, state.OrgKey("")); n != 500 {
		t.Fatalf("%d orgs in etcd, want 500", n)
	}
	// The audit names the lines of every batch, so that an import cut without an answer (the server killed)
	// can be resumed from the last one committed.
	entries, err := s.Audit(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || entries[0].Action != "import" || !strings.HasPrefix(entries[0].Reason, "lines 481-500:") {
		t.Fatalf("newest audit entry = %+v", entries[0])
	}

	// A skipped line is still checked: a duplicate of a skipped line is refused as it would have been.
	dup := append(orgLines(1000, 10), `{"org":{"id":"o1003"}}`)
	_, err = s.ImportWith(ctx, strings.NewReader(strings.Join(dup, "\n")), who, state.ImportOptions{Skip: 10})
	if !errors.As(err, &le) || le.Line != 11 || le.Other != 4 {
		t.Fatalf("duplicate of a skipped line: %v", err)
	}
}

// TestImportLimits: a line over MaxImportLine and a record needing more writes than one transaction takes are
// the line's fault, not a store failure.
func TestImportLimits(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	long := `{"org":{"id":"x","name":"` + strings.Repeat("n", state.MaxImportLine) + `"}}`
	var domains []string
	for i := range 130 {
		domains = append(domains, fmt.Sprintf(`"d%d.example"`, i))
	}
	wide := `{"org":{"id":"y","domains":[` + strings.Join(domains, ",") + `]}}`
	for _, c := range []struct{ name, input, want string }{
		{"long line", `{"org":{"id":"a"}}` + "\n" + long, "longer than"},
		{"too many writes", `{"org":{"id":"a"}}` + "\n" + wide, "more than the 120"},
	} {
		_, err := s.Import(context.Background(), strings.NewReader(c.input), who)
		var le *state.ImportLineError
		if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// FuzzImport: whatever the input, an import either succeeds or stops at a line it names (*ImportLineError):
// no input reaches etcd as a transaction it refuses (a key twice, too many operations, too many bytes), which
// the admin API would answer as its own failure. What it reports committed is never more than it read.
func FuzzImport(f *testing.F) {
	for _, seed := range []string{
		`{"org":{"id":"x"}}` + "\n" + `{"org":{"id":"y"}}` + "\n" + `{"org":{"id":"x"}}`,
		`{"org":{"id":"x","domains":["A.example"]}}` + "\n" + `{"org":{"id":"y","domains":["a.example."]}}`,
		`{"app":{"id":"a","projectId":"p","orgId":"1","clientIds":["c1"]}}` + "\n" + `{"app":{"id":"b","projectId":"p","orgId":"1","clientIds":["c2","c1"]}}`,
		`{"project":{"id":"p","orgId":"1"}}` + "\n\n" + `{"project":{"id":"p","orgId":"1"}}`,
		`{"account":{"id":"u","orgId":"1"}}` + "\n" + `{"account":{"id":"u","orgId":"2"}}`,
		strings.Join(orgLines(0, 130), "\n"),
		`{"org":{"id":"a","domains":["a.example","a.example","A.EXAMPLE"]}}`,
	} {
		f.Add(seed, 0)
	}
	srv := etcdtest.Start(f)
	s := state.NewStore(etcdtest.Client(f, srv.Endpoints()))
	f.Fuzz(func(t *testing.T, input string, skip int) {
		if skip < 0 || skip > 1000 {
			skip = 0
		}
		res, err := s.ImportWith(context.Background(), strings.NewReader(input), who, state.ImportOptions{Skip: skip})
		var le *state.ImportLineError
		if err != nil && !errors.As(err, &le) {
			t.Fatalf("input %q: %v is not a line's fault", input, err)
		}
		if lines := strings.Count(input, "\n") + 1; res.Lines > lines || res.Records > res.Lines {
			t.Fatalf("input of %d lines: result %+v", lines, res)
		}
	})
}
