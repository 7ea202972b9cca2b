package bench

import "testing"

// TestWriteRevision: the revision of a write is read from each API's answer, and an answer without one is 0
// (the benchmark counts that write as failed rather than matching it to another write's events).
func TestWriteRevision(t *testing.T) {
	cases := []struct {
		name, body string
		want       int64
	}{
		{"native", `{"revision":42,"changedAt":"2026-12-02T00:00:00Z","orgId":"1","confirmation":{"revision":42,"confirmed":3,"total":3}}`, 42},
		{"zitadel REST", `{"details":{"sequence":"77","changeDate":"2026-12-02T00:00:00Z","resourceOwner":"1"}}`, 77},
		{"zitadel sequence as a number", `{"details":{"sequence":77}}`, 0},
		{"error", `{"code":9,"message":"already deactivated"}`, 0},
		{"not JSON", `<html>`, 0},
		{"empty", ``, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := writeRevision([]byte(c.body)); got != c.want {
				t.Errorf("writeRevision(%s) = %d, want %d", c.body, got, c.want)
			}
		})
	}
}
