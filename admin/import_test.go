package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/admin"
	"github.com/deact/deact/admin/adminapi"
	"github.com/deact/deact/internal/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// importLines makes n org lines o{from}.., each with one domain (two writes: 60 lines a batch) and a name of
// nameLen bytes.
func importLines(from, n, nameLen int) []string {
	name := strings.Repeat("n", nameLen)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"org":{"id":"o%d","name":"%s","domains":["d%d.example"]}}`, from+i, name, from+i)
	}
	return out
}

// importSlowly posts an import as the bootstrap admin whose body arrives in chunks, each followed by pause (the
// body ends after the last pause), and returns the whole answer as soon as it comes (the writer may still be
// pausing; the test's cleanup waits for it).
func (e *env) importSlowly(t *testing.T, pause time.Duration, chunks ...string) wait.Answer {
	t.Helper()
	pr, pw := io.Pipe()
	sent := make(chan struct{})
	t.Cleanup(func() { <-sent })
	go func() {
		defer close(sent)
		for _, c := range chunks {
			if _, err := io.WriteString(pw, c); err != nil {
				return // the request failed; the test says so
			}
			time.Sleep(pause)
		}
		pw.Close()
	}()
	req, err := http.NewRequest("POST", e.url+"/v1/import", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bootstrapToken)
	a, err := wait.Send(e.http1, req)
	if err != nil {
		pw.CloseWithError(err)
		t.Fatal(err)
	}
	return a
}

func (e *env) orgCount() int64 {
	e.t.Helper()
	resp, err := e.cli.Get(context.Background(), "/deact/v1/state/orgs/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Count
}

// TestImportErrors: every import that stops part way is the caller's mistake where it is one (a duplicate, a bad
// line, a body over the limit: 4xx naming the line, never an error-level log) and says exactly what was
// committed; resuming with ?skip= writes the rest.
func TestImportErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.MaxImportBytes = 64 << 10 }})
	adm := bearer(bootstrapToken)
	cases := []struct {
		name      string
		body      string
		status    int
		id        string
		line      int
		committed int
		msg       string
	}{
		{"duplicate org in one batch", `{"org":{"id":"x"}}` + "\n" + `{"org":{"id":"y"}}` + "\n" + `{"org":{"id":"x"}}`, 400, "DEACT-DuplicateRecord", 3, 0, `line 3: org "x" is already given on line 1`},
		{"duplicate client id", `{"app":{"id":"a","projectId":"p","orgId":"1","clientIds":["c"]}}` + "\n" + `{"app":{"id":"b","projectId":"p","orgId":"1","clientIds":["c"]}}`, 400, "DEACT-DuplicateRecord", 2, 0, `client id "c" is already given on line 1`},
		{"duplicate domain two batches apart", strings.Join(append(importLines(0, 70, 1), `{"org":{"id":"z","domains":["d3.example"]}}`), "\n"), 400, "DEACT-DuplicateRecord", 71, 60, `domain "d3.example" is already given on line 4`},
		{"bad line after a batch", strings.Join(append(importLines(100, 61, 1), `{"org":{"id":"a/b"}}`), "\n"), 400, "DEACT-BadImport", 62, 60, "line 62: invalid id"},
		{"over the size limit", strings.Join(importLines(200, 1000, 100), "\n"), 413, "DEACT-BodyTooLarge", 0, 0, "larger than 65536 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Chunked, so that the size limit is found while streaming, after batches were committed.
			req, _ := http.NewRequest("POST", e.url+"/v1/import", io.MultiReader(strings.NewReader(c.body)))
			req.Header.Set("Authorization", "Bearer "+bootstrapToken)
			resp, err := e.http1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var eb adminapi.ErrorBody
			if resp.StatusCode != c.status || json.Unmarshal(b, &eb) != nil || eb.Error.ID != c.id || eb.Error.Line != c.line ||
				!strings.Contains(eb.Error.Message, c.msg) || eb.Import == nil || eb.Import.Complete {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			if c.committed > 0 && (eb.Import.Records != c.committed || eb.Import.Lines != c.committed || eb.Import.Revision == 0) {
				t.Errorf("committed = %+v, want %d", eb.Import, c.committed)
			}
			if c.status == 413 && (eb.Import.Records == 0 || eb.Import.Records != eb.Import.Lines) {
				t.Errorf("over the limit: committed = %+v, want the batches before the limit", eb.Import)
			}
			if !strings.Contains(eb.Error.Message, fmt.Sprintf("committed: lines 1-%d", eb.Import.Lines)) {
				t.Errorf("message %q does not say what was committed", eb.Error.Message)
			}
		})
	}
	if msgs := e.errors.take(); len(msgs) > 0 {
		t.Errorf("error-level logs: %q", msgs)
	}

	// Resume: the corrected input with ?skip=<lines committed> writes the rest, once.
	before := e.orgCount()
	fixed := strings.Join(importLines(100, 62, 1), "\n")
	var res adminapi.ImportResponse
	r := e.do("POST", "/v1/import?skip=60", fixed, adm)
	if r.status != 200 {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	r.json(t, &res)
	if !res.Complete || res.Records != 2 || res.Skipped != 60 || res.Lines != 62 {
		t.Fatalf("resume = %+v", res)
	}
	if n := e.orgCount(); n != before+2 {
		t.Errorf("%d orgs after the resume, want %d", n, before+2)
	}
	if r := e.do("POST", "/v1/import?skip=-1", fixed, adm); r.status != 400 || !strings.Contains(r.body, "DEACT-BadSkip") {
		t.Errorf("negative skip: %d %s", r.status, r.body)
	}
}

// TestImportStreamsPastReadTimeout: a large import (about 30 MB, generated) that arrives slowly, over several
// times the listener's read timeout, is read to its end and committed whole; a slow body of another route is
// still cut by that timeout, so the exemption is the import's alone.
func TestImportStreamsPastReadTimeout(t *testing.T) {
	t.Parallel()
	const readTimeout = 300 * time.Millisecond
	e := newEnv(t, envOpts{readTimeout: readTimeout, config: func(c *admin.Config) { c.MaxImportBytes = 64 << 20 }})
	lines := importLines(0, 3600, 8<<10) // 3600 × ~8 KiB: ~30 MB
	// 12 chunks, one every readTimeout/2: the body takes twice the read timeout at least.
	var chunks []string
	for per, i := len(lines)/12, 0; i < len(lines); i += per {
		chunks = append(chunks, strings.Join(lines[i:min(i+per, len(lines))], "\n")+"\n")
	}
	start := time.Now()
	a := e.importSlowly(t, readTimeout/2, chunks...)
	var res adminapi.ImportResponse
	if a.Status != 200 || json.Unmarshal([]byte(a.Body), &res) != nil || !res.Complete || res.Records != len(lines) || res.Lines != len(lines) {
		t.Fatalf("import: %d %.300s", a.Status, a.Body)
	}
	t.Logf("imported %d records (~%d MB) in %d batches in %v", res.Records, len(lines)*8/1024, res.Batches, time.Since(start).Round(time.Millisecond))
	if n := e.orgCount(); n != int64(len(lines)) {
		t.Errorf("%d orgs in etcd, want %d", n, len(lines))
	}

	// The same slowness on another route: cut by the read timeout.
	pr2, pw2 := io.Pipe()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		_, _ = io.WriteString(pw2, `{"name":`)
		time.Sleep(3 * readTimeout)
		_, _ = io.WriteString(pw2, `"x"}`)
		pw2.Close()
	}()
	req2, _ := http.NewRequest("PUT", e.url+"/v1/orgs/slow", pr2)
	req2.Header.Set("Authorization", "Bearer "+bootstrapToken)
	resp2, err := e.http1.Do(req2)
	if err == nil {
		b, _ := io.ReadAll(resp2.Body)
		resp2.Body.Close()
		if resp2.StatusCode == 200 {
			t.Errorf("a slow PUT body was not cut by the read timeout: %d %s", resp2.StatusCode, b)
		}
	}
}

// TestImportTimeout: an import is bounded by ImportTimeout as a whole: a body still arriving after it is cut,
// and the answer says so and what was committed (the whole batches before the cut; the lines of the batch being
// filled are not).
func TestImportTimeout(t *testing.T) {
	t.Parallel()
	const bound = 500 * time.Millisecond
	e := newEnv(t, envOpts{config: func(c *admin.Config) { c.ImportTimeout = bound }})
	start := time.Now()
	a := e.importSlowly(t, 4*bound, strings.Join(importLines(0, 120, 1), "\n")+"\n")
	var eb adminapi.ErrorBody
	if a.Status != 400 || json.Unmarshal([]byte(a.Body), &eb) != nil || eb.Error.ID != "DEACT-ImportTimeout" || eb.Import == nil ||
		eb.Import.Lines != 60 || eb.Import.Records != 60 || !strings.Contains(eb.Error.Message, "cut after line 120; committed: lines 1-60") {
		t.Fatalf("got %d %s", a.Status, a.Body)
	}
	if d := time.Since(start); d > bound+2*time.Second {
		t.Errorf("answered after %v, bound %v", d, bound)
	}
}
