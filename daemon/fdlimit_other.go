//go:build !unix

package daemon

// raiseFileLimit reports a conservative limit where there is no RLIMIT_NOFILE.
func raiseFileLimit() (soft, hard uint64, err error) { return 8192, 8192, nil }
