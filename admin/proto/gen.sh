#!/bin/sh
# Regenerates the Go code of deact's admin protos (ZITADEL-compatible API). Needs only the Go toolchain:
#   sh admin/proto/gen.sh      (or: go generate ./admin/...)
set -eu
cd "$(dirname "$0")/../.."
go run ./admin/proto/gen -dir admin/proto
gofmt -l admin/proto
