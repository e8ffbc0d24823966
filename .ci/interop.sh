#!/usr/bin/env bash
# Interop tests against `rmq-lifecycle serve`, with two client libraries written by others. Each
# suite runs serve with --in-sync-replicas 2 and one `rmq-lifecycle slave` replicating from it:
# * the npm client `ali-ons` (pinned in interop/ali-ons/package.json) sends HEART_BEAT,
#   UNREGISTER_CLIENT and GET_CONSUMER_LIST_BY_GROUP, its push consumers hear
#   NOTIFY_CONSUMER_IDS_CHANGED, and its Producer sends 24 messages (interop/ali-ons/test.js);
# * the PyPI client `rocketmq` 0.4.4 (Python over the RocketMQ C++ client, bundled in its wheel)
#   starts two push consumers that rebalance with GET_CONSUMER_LIST_BY_GROUP and hear
#   NOTIFY_CONSUMER_IDS_CHANGED, then its Producer's send_sync sends 24 messages
#   (interop/python-rocketmq/test.py).
# The sends must all be SEND_OK, answered only once the slave has them, with an id and queue
# offsets counting per queue; after both processes exit 0 on SIGTERM, the slave's segment files
# must equal the master's and the master's commit log (read as upstream's message records) must
# hold every sent body once under its topic with the client's properties (KEYS, TAGS, ...). Each
# also checks /metrics. Needs Node >= 20 with npm and the npm registry, python3 with pip and PyPI
# (the wheel is for x86_64 Linux).
#
#   bash .ci/interop.sh                          # builds target/release/rmq-lifecycle first
#   RMQ_LIFECYCLE_BIN=path bash .ci/interop.sh   # uses that binary, no cargo build
#   CARGO_TARGET_DIR=target/interop bash .ci/interop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS

die() { echo "interop: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (Node >= 20 is required)"
command -v npm >/dev/null || die "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 20 )) || die "Node >= 20 is required, found $(node --version)"

if [[ -z "${RMQ_LIFECYCLE_BIN:-}" ]]; then
  target_dir=${CARGO_TARGET_DIR:-target}
  echo "::: interop: cargo build --release --bin rmq-lifecycle (target dir ${target_dir})"
  CARGO_TARGET_DIR=$target_dir cargo build --release --bin rmq-lifecycle
  RMQ_LIFECYCLE_BIN=$target_dir/release/rmq-lifecycle
fi
[[ "$RMQ_LIFECYCLE_BIN" = /* ]] || RMQ_LIFECYCLE_BIN=$root/$RMQ_LIFECYCLE_BIN
[[ -x "$RMQ_LIFECYCLE_BIN" ]] || die "no executable at $RMQ_LIFECYCLE_BIN"
export RMQ_LIFECYCLE_BIN

cd interop/ali-ons
echo "::: interop: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "::: interop: node --test test.js (server ${RMQ_LIFECYCLE_BIN})"
# The tap reporter ends with '# pass N' / '# fail N' whether or not stdout is a terminal.
status=0
node --test --test-reporter=tap test.js || status=$?
echo "::: interop: ali-ons exit ${status} in $((SECONDS - started)) s"

cd "$root"
py_dir=${CARGO_TARGET_DIR:-target}/interop-python
if [[ ! -d $py_dir/rocketmq ]]; then
  echo "::: interop: pip install rocketmq==0.4.4 into ${py_dir}"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$py_dir" \
    rocketmq==0.4.4
fi
echo "::: interop: python3 interop/python-rocketmq/test.py"
py_status=0
PYTHONPATH=$py_dir timeout 180 python3 interop/python-rocketmq/test.py || py_status=$?
echo "::: interop: python rocketmq exit ${py_status} in $((SECONDS - started)) s"
(( status == 0 )) && status=$py_status
exit "$status"
