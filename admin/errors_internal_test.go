package admin

import (
	"net/http"
	"testing"
)

// TestEveryKindAnswers: every kind has its row in every API (a kind added without one would answer status 0
// and an empty code), client faults answer 4xx and the store's failures 5xx in both HTTP APIs.
func TestEveryKindAnswers(t *testing.T) {
	for k := range numKinds {
		e := &apiError{kind: k}
		row := e.answer()
		if row.http == 0 || row.name == "" || row.commvault == 0 || row.connect == 0 {
			t.Errorf("kind %d has no complete row: %+v", k, row)
		}
		if client := row.http >= 400 && row.http < 500; client != e.clientFault() {
			t.Errorf("kind %d (%s): status %d, client fault %v", k, row.name, row.http, e.clientFault())
		}
	}
	if got := (&apiError{kind: numKinds}).httpStatus(); got != http.StatusInternalServerError {
		t.Errorf("a value that is no kind answers %d, want 500", got)
	}
}
