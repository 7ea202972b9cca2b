package authz

import "testing"

func TestLogBudget(t *testing.T) {
	t.Parallel()
	b := logBudget{perSec: 3}
	n := 0
	for range 10 {
		if b.take() {
			n++
		}
	}
	// A second boundary may fall inside the loop and refill the budget once.
	if n < 3 || n > 6 {
		t.Fatalf("%d of 10 deny lines logged with a budget of 3 a second", n)
	}
	unlimited := logBudget{}
	for range 10 {
		if !unlimited.take() {
			t.Fatal("a zero budget means unlimited")
		}
	}
}
