// Package admin is deact's admin API: the ZITADEL-compatible management API (v1) and org, project and
// application APIs (v2) (REST, gRPC, gRPC-Web and Connect from one implementation), the Commvault-compatible
// organization API (XML and JSON), and the native JSON API
// under /v1/, all behind admin tokens. Every write goes durably to etcd through state.Store, then waits, bounded,
// until every live gateway node has applied it (state.Fanout) and reports how many did.
//
// Guarantees: a write is acknowledged only after etcd committed it, whatever the confirmation says; client
// mistakes get a 4xx in the shape of the API they used and never touch etcd; secrets are stored hashed and never
// logged; a token acts only on the orgs in its scope.
package admin

//go:generate sh proto/gen.sh
