// Package commvault follows a Commvault CommCell's organizations into deact's mirrored layer. Commvault pushes
// no event when an organization is deactivated, so a Poller, on the leader of the source's election, lists the
// organizations (GET /Organization) every interval, reads each one's details (GET /Organization/{id}) and
// writes what changed: deactivateOptions as the org's disabled login, backup and restore, and its domain names
// as org domains, so that "domain\user" and "user@domain" logins find the org.
//
// The Client logs in with POST /Login (or uses a fixed token), renews the token before Commvault's inactivity
// expiry and once after a 401, bounds every request's time and every answer's size, and reads JSON and XML.
// See Poller.Round for what a record's Sequence is.
package commvault
