// Command deactctl is the operator's CLI for deact's admin API: deactivate and reactivate orgs, projects and
// apps, show their state and the gateway nodes, register records, import NDJSON, and create admin tokens.
// Run "deactctl help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
