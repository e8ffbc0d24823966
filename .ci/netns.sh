#!/usr/bin/env bash
# Auto-switch replication and failover over a real network: a master and two slaves as
# processes in their own network namespaces (veth links, a tbf rate limit so transfers take
# seconds), a partition in the middle of a transfer, the master killed (-9) part way, the most
# up-to-date slave promoted with a new epoch, the other slave and the old master rejoining it.
# Every replica must end byte-identical; the old master must have cut its unreplicated tail
# into its quarantine. Skips (exit 0, with a message) where namespaces cannot be created.
#
#   bash .ci/netns.sh        (as root; builds the release binary and the fill_store example)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "::: netns: $*"; }

if [[ $(id -u) -ne 0 ]] || ! ip netns add rmqprobe$$ 2>/dev/null; then
  log "SKIPPED: network namespaces cannot be created here (needs root and ip netns)"
  exit 0
fi
ip netns del rmqprobe$$

cargo build --release --quiet --bin rmq-lifecycle --example fill_store
BIN=$PWD/target/release/rmq-lifecycle
FILL=$PWD/target/release/examples/fill_store
WORK=$(mktemp -d)
NS=(rmqm$$ rmqa$$ rmqb$$)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill -9 "$p" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

M=${NS[0]} A=${NS[1]} B=${NS[2]}
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
# link NS1 DEV1 ADDR1 NS2 DEV2 ADDR2: a veth pair, a /30 each end, rate-limited both ways.
link() {
  # Created in the root namespace under unique names, then moved and renamed.
  local t1="rq$$${2#v-}" t2="rq$$${5#v-}"
  ip link add "$t1" type veth peer name "$t2"
  ip link set "$t1" netns "$1"; ip link set "$t2" netns "$4"
  ip -n "$1" link set dev "$t1" name "$2"; ip -n "$4" link set dev "$t2" name "$5"
  ip -n "$1" addr add "$3/30" dev "$2"; ip -n "$4" addr add "$6/30" dev "$5"
  ip -n "$1" link set dev "$2" up; ip -n "$4" link set dev "$5" up
  for side in "$1 $2" "$4 $5"; do
    # shellcheck disable=SC2086
    ip netns exec ${side% *} tc qdisc add dev ${side#* } root tbf rate 160mbit burst 256kb latency 50ms
  done
}
link "$M" v-ma 10.77.1.1 "$A" v-am 10.77.1.2
link "$M" v-mb 10.77.2.1 "$B" v-bm 10.77.2.2
link "$A" v-ab 10.77.3.1 "$B" v-ba 10.77.3.2

SEG=1048576
BYTES=$((96 << 20))
mkdir -p "$WORK"/{m,a,b}
log "master log: $("$FILL" "$WORK/m" $BYTES $SEG) bytes"

start() { # NS LOGFILE ARGS...: runs the binary in a namespace; its pid in $LAST
  local ns=$1 out=$2; shift 2
  ip netns exec "$ns" env RUST_LOG=info "$BIN" "$@" >"$out" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}
stop() { # PID: SIGTERM and wait (30 s at most)
  kill -TERM "$1"
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  log "FAIL: pid $1 did not stop within 30 s"; exit 1
}
bytes_in() { find "$@" -maxdepth 1 -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
size() { bytes_in "$1" -name '0*'; }
digest() { cat "$1"/0* | sha256sum | cut -d' ' -f1; }

start "$M" "$WORK/m.log" serve --ha-mode auto-switch --listen 127.0.0.1:10911 \
  --ha-listen 0.0.0.0:10912 --store "$WORK/m" --segment-size $SEG
mpid=$LAST
sleep 0.5
start "$A" "$WORK/a.log" slave --ha-mode auto-switch --broker-id 2 \
  --master 10.77.1.1:10912 --store "$WORK/a" --segment-size $SEG
apid=$LAST
start "$B" "$WORK/b.log" slave --ha-mode auto-switch --broker-id 3 \
  --master 10.77.2.1:10912 --store "$WORK/b" --segment-size $SEG
bpid=$LAST

# A partition in the middle of a transfer: slave a's link goes down for 1.5 s.
for _ in $(seq 200); do (( $(size "$WORK/a") > 8 << 20 )) && break; sleep 0.05; done
ip -n "$A" link set dev v-am down
log "partitioned a at $(size "$WORK/a") bytes (b at $(size "$WORK/b"))"
sleep 1.5
ip -n "$A" link set dev v-am up
log "repaired a"

# The master dies part way through both transfers.
for _ in $(seq 400); do (( $(size "$WORK/b") > 48 << 20 )) && break; sleep 0.05; done
kill -9 "$mpid"
wait "$mpid" 2>/dev/null || true
log "killed the master (-9) with a at $(size "$WORK/a") and b at $(size "$WORK/b") of $BYTES bytes"
stop "$apid"; stop "$bpid"

# Elect the most up-to-date slave (same epoch: the longer log) with epoch 2.
sa=$(size "$WORK/a"); sb=$(size "$WORK/b")
if (( sa >= sb )); then new=a; other=b; nns=$A; ons=$B; naddr=10.77.3.1; else new=b; other=a; nns=$B; ons=$A; naddr=10.77.3.2; fi
log "promoting $new ($sa vs $sb bytes) with epoch 2"
start "$nns" "$WORK/new.log" serve --ha-mode auto-switch --epoch 2 --listen 127.0.0.1:10911 \
  --ha-listen 0.0.0.0:10912 --store "$WORK/$new" --segment-size $SEG
npid=$LAST
sleep 0.5
start "$ons" "$WORK/other.log" slave --ha-mode auto-switch --broker-id 9 \
  --master $naddr:10912 --store "$WORK/$other" --segment-size $SEG
opid=$LAST
# The old master rejoins as a slave of the new one, over the namespace of the promoted slave's peer.
if [[ $new == a ]]; then oldaddr=10.77.1.2; else oldaddr=10.77.2.2; fi
start "$M" "$WORK/old.log" slave --ha-mode auto-switch --broker-id 1 \
  --master $oldaddr:10912 --store "$WORK/m" --segment-size $SEG
rpid=$LAST

target=$(size "$WORK/$new")
for _ in $(seq 600); do
  [[ $(size "$WORK/$other") == "$target" && $(size "$WORK/m") == "$target" ]] && break
  sleep 0.05
done
stop "$opid"; stop "$rpid"; stop "$npid"

fail=0
dn=$(digest "$WORK/$new"); do=$(digest "$WORK/$other"); dm=$(digest "$WORK/m")
log "new master $new: $(size "$WORK/$new") bytes $dn"
log "other slave $other: $(size "$WORK/$other") bytes $do"
log "old master: $(size "$WORK/m") bytes $dm"
[[ $dn == "$do" && $dn == "$dm" ]] || { log "FAIL: replicas differ"; fail=1; }
cut=$(bytes_in "$WORK/m/quarantine")
log "the old master set aside $cut bytes (its tail past the new master's log)"
(( cut > 0 )) || { log "FAIL: the old master cut nothing"; fail=1; }
grep -q "cut the log back to the consistent point" "$WORK/old.log" \
  || { log "FAIL: the old master did not report its truncation"; fail=1; }
for f in "$WORK"/*.log; do
  if grep -q "panicked" "$f"; then log "FAIL: a panic in $f"; fail=1; fi
done
if (( fail )); then
  for f in "$WORK"/*.log; do echo "----- $f"; tail -20 "$f"; done
  exit 1
fi
log "ok: three replicas byte-identical after a partition mid-transfer, a master crash and a failover"
