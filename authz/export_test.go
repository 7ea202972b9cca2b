package authz

// Decide is decideNow returning the decision by value, for tests.
func (a *Authorizer) Decide(req *Request) (Decision, error) {
	var d Decision
	err := a.decideNow(req, &d)
	return d, err
}
