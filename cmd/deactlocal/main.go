// Command deactlocal runs a whole deact deployment on loopback: a 3-member etcd cluster, 3 gateway nodes and an
// admin node, on free ports, with data and one log file per node in a temporary directory (or --dir). The
// nodes run in this process, or with --processes as deactd child processes. It prints the addresses and runs
// until Ctrl-C, then stops everything cleanly.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/deact/deact/deploy/local"
)

func main() {
	dir := flag.String("dir", "", "data and logs (default: a new temporary directory, removed at exit)")
	members := flag.Int("etcd-members", 3, "etcd members")
	gateways := flag.Int("gateways", 3, "gateway nodes")
	token := flag.String("admin-token", os.Getenv("DEACT_ADMIN_TOKEN"), "admin token (default: DEACT_ADMIN_TOKEN, else generated); prefer the variable: every user can read a command line. Child processes get it through their environment")
	processes := flag.Bool("processes", false, "run each node as a deactd child process (built from ./cmd/deactd unless --deactd)")
	deactd := flag.String("deactd", "", "deactd binary for --processes")
	flag.Parse()
	if err := run(*dir, *members, *gateways, *token, *processes, *deactd); err != nil {
		fmt.Fprintln(os.Stderr, "deactlocal:", err)
		os.Exit(1)
	}
}

func run(dir string, members, gateways int, token string, processes bool, deactd string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "deactlocal-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if processes && deactd == "" {
		deactd = filepath.Join(dir, "deactd")
		fmt.Println("building ./cmd/deactd ...")
		if out, err := exec.Command("go", "build", "-o", deactd, "./cmd/deactd").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/deactd (run from the repository, or pass --deactd): %v\n%s", err, out)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := local.Start(local.Config{Dir: dir, Members: members, Gateways: gateways, AdminToken: token, Exec: deactd})
	if err != nil {
		return err
	}
	c.Describe(os.Stdout)
	fmt.Println("running; Ctrl-C stops everything")
	<-ctx.Done()
	c.Close()
	fmt.Println("stopped")
	return nil
}
