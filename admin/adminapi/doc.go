// Package adminapi is the wire format of deact's native admin API (JSON under /v1/): the request and answer
// types the server (package admin) serves, the headers of the confirmed fan-out, and the error body. It holds
// no server code, so that clients (deactctl, deactbench, deploy/local) link none of it.
package adminapi
