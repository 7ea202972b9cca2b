//go:build !linux

package bench

import "errors"

type pinned struct {
	name string
	pid  int
}

func pinCPUs([]pinned) (string, func(), error) {
	return "", nil, errors.New("pin: CPU pinning is only implemented on Linux")
}
