package main

import (
	"io"
	"net/http"
	"testing"
)

// TestJSONIsTheAnswer: -o json prints the server's answer byte for byte (deactctl decodes it into the types the
// server encodes and encodes it again; adminapi's TestAnswersRoundTrip holds that for every answer).
func TestJSONIsTheAnswer(t *testing.T) {
	t.Parallel()
	addr := server(t)
	for _, args := range [][]string{
		{"register", "org", "o1", "--name", "One & <Two>", "--domains", "one.example"},
		{"deactivate", "org", "o1", "--ops", "login,backup", "--reason", "unpaid <again>"},
		{"deactivate", "app", "p1", "a1", "--org", "o1"},
	} {
		if r := deactctl(t, addr, rootToken, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		path string
	}{
		{"audit", []string{"audit", "--limit", "3"}, "/v1/audit?limit=3"},
		{"sources", []string{"sources"}, "/v1/sources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := deactctl(t, addr, rootToken, append([]string{"-o", "json"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			req, _ := http.NewRequest("GET", addr+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+rootToken)
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if r.stdout != string(raw) {
				t.Errorf("deactctl -o json %v printed\n%s\nthe server answers\n%s", tc.args, r.stdout, raw)
			}
		})
	}
}
