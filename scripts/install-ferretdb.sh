#!/usr/bin/env bash
# Builds FerretDB (SQLite backend included) from the Go module proxy into GOBIN.
#
# Why not plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION`:
# the module zip carries no build/version/version.txt, so a binary built from it
# panics at start ("Invalid build/version/version.txt"), and some proxies refuse
# the version-list lookup that `go install` makes. So the module is fetched into
# a throwaway module, the version file is written into a copy of it, and the
# command is built from that copy.
set -euo pipefail
version="${1:-v1.24.2}"
module=github.com/FerretDB/FerretDB
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
bindir=$(go env GOBIN)
[ -n "$bindir" ] || bindir="$(go env GOPATH | cut -d: -f1)/bin"
mkdir -p "$bindir"

cd "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init parley.local/ferretdb-build >/dev/null 2>&1
go get "$module/cmd/ferretdb@$version"
src=$(go list -m -f '{{.Dir}}' "$module")
cp -r "$src" ./ferretdb-src
chmod -R u+w ./ferretdb-src
echo "$version" > ./ferretdb-src/build/version/version.txt
go mod edit -replace="$module=./ferretdb-src"
go build -trimpath -o "$bindir/ferretdb" "$module/cmd/ferretdb"
"$bindir/ferretdb" --version | head -1
echo "installed $bindir/ferretdb"
