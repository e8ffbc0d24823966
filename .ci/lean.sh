#!/usr/bin/env bash
# The library a broker embeds pulls none of the command's dependencies, nor the metrics exporter
# (feature `metrics`, off by default): `cargo tree` of the
# library package with its default features must not list them.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p rmq-lifecycle -e normal --prefix none)
found=$(grep -E '^(clap|indicatif|plotters|tracing-subscriber|tempfile|prometheus-client|hyper) v' <<<"$tree" | sort -u || true)
if [ -n "$found" ]; then
    echo "the library's default build pulls the command's dependencies:" >&2
    echo "$found" >&2
    exit 1
fi
echo "library: $(sort -u <<<"$tree" | wc -l) crates in its default build, none of the command's"
