#!/bin/sh
# Builds the release archives and SHA256SUMS into dist/, as the Go original's build.sh did.
# Same arguments as `deno task build` (see packaging/build.ts): --target TARGET, --dist DIR.
set -eu
cd "$(dirname "$0")"
exec deno task -q build "$@"
