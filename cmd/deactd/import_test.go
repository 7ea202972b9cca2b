package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestImportKill9Resume: deactd killed with SIGKILL in the middle of an import leaves a prefix of whole batches
// committed (lines 1..N, nothing after), the newest import entry of the audit says N, and the same file
// imported again with ?skip=N completes it.
func TestImportKill9Resume(t *testing.T) {
	t.Parallel()
	bin := deactdBinary(t)
	dataDir := t.TempDir()
	p, url := startChild(t, bin, dataDir)

	const total = 3000
	lines := make([]string, total)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"org":{"id":"k%05d","domains":["k%05d.example"]}}`, i, i)
	}
	pr, pw := io.Pipe()
	answered := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", url+"/v1/import", pr)
		req.Header.Set("Authorization", "Bearer child-test-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = fmt.Errorf("answered %d", resp.StatusCode)
			}
		}
		answered <- err
	}()
	// Half the file, then wait until some batches are committed, and kill the server mid-import.
	if _, err := io.WriteString(pw, strings.Join(lines[:total/2], "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for lastImportLine(t, url) < 600 {
		if time.Now().After(deadline) {
			t.Fatal("no import batch committed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = p.Kill()
	pw.Close() // the client's transport waits for the body to end before it reports the broken connection
	if err := <-answered; err == nil || strings.HasPrefix(err.Error(), "answered") {
		t.Fatalf("the client of the killed import got %v, want a broken connection", err)
	}

	_, url = startChild(t, bin, dataDir)
	n := lastImportLine(t, url)
	ids := orgIDs(t, url)
	if n <= 0 || n >= total || n%60 != 0 || len(ids) != n {
		t.Fatalf("after kill -9: the audit says lines 1-%d, %d orgs are there (batches are 60 lines)", n, len(ids))
	}
	for i, id := range ids {
		if id != fmt.Sprintf("k%05d", i) {
			t.Fatalf("org %d is %s: not a prefix of the file", i, id)
		}
	}

	code, body := call(t, "POST", url+"/v1/import?skip="+strconv.Itoa(n), strings.Join(lines, "\n"))
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"records":%d,`, total-n)) || !strings.Contains(body, `"complete":true`) {
		t.Fatalf("resume: %d %s", code, body)
	}
	if got := len(orgIDs(t, url)); got != total {
		t.Fatalf("%d orgs after the resume, want %d", got, total)
	}
}

var importReason = regexp.MustCompile(`^lines \d+-(\d+):`)

// lastImportLine is the last line of the newest import batch in the audit (0 when there is none).
func lastImportLine(t *testing.T, url string) int {
	t.Helper()
	code, body := call(t, "GET", url+"/v1/audit?limit=5", "")
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	var a struct {
		Entries []struct{ Action, Reason string }
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	for _, e := range a.Entries {
		if m := importReason.FindStringSubmatch(e.Reason); e.Action == "import" && m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

func orgIDs(t *testing.T, url string) []string {
	t.Helper()
	var ids []string
	after := ""
	for {
		code, body := call(t, "GET", url+"/v1/orgs?limit=1000&after="+after, "")
		if code != 200 {
			t.Fatalf("list orgs: %d %s", code, body)
		}
		var pg struct {
			Items []struct {
				Record struct{ ID string }
			}
			Next string
		}
		if err := json.Unmarshal([]byte(body), &pg); err != nil {
			t.Fatal(err)
		}
		for _, it := range pg.Items {
			ids = append(ids, it.Record.ID)
		}
		if pg.Next == "" {
			return ids
		}
		after = pg.Next
	}
}
