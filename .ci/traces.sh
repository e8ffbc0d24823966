#!/usr/bin/env bash
# Trace validation (models/README.md, "Trace validation"): the model traces the shipped code
# recorded earlier in this run are checked against models/ClientRegistry.tla,
# models/HaConnection.tla and models/Replication.tla with TLC.
#
#   target/model-traces/client/ok/      shuttle schedules of the registry        must be accepted
#   target/model-traces/client/sim/     simulation seeds (the master's registry)  must be accepted
#   target/model-traces/client/serve/   `serve --model-trace` under client churn  must be accepted
#   target/model-traces/client/fault-*  the planted faults split_remove_if_empty
#                                       and register_after_close                  must be rejected
#
#   target/model-traces/ha/ok-*/        shuttle schedules of the HA acceptor       must be accepted
#   target/model-traces/ha/serve/       `serve --ha-model-trace` under a slave and
#                                       a probe storm                              must be accepted
#   target/model-traces/ha/sim/         simulation seeds (the master's HA side)    must be accepted
#   target/model-traces/ha/sim-cut/     the same, a master incarnation cut where
#                                       it crashed                      must be accepted as a prefix
#   target/model-traces/ha/fault-*/     its planted faults: 5.1.4's order, a removal
#                                       without stop, a store after shutdown, a
#                                       lost reap                                 must be rejected
#
#   target/model-traces/replication/sim/  failover-world seeds (three replicas: crashes,
#                                       elections, demotions, partitions)          must be accepted
#   target/model-traces/replication/fault-skip-truncation/  slaves that keep their
#                                       tail at the handshake (classic HA)        must be rejected
#
# They are written by `cargo test` (cli_serve), the shuttle step and the sim step; this step
# fails if any set is missing. It first runs the validator's self-test: hand-made traces in
# models/traces/client/, among them two events swapped and one dropped, each with its verdict.
# Needs TLC in target/tla/ (the models step installs it) and java.
set -euo pipefail
cd "$(dirname "$0")/.."

T=target/model-traces/client
for set in ok sim serve fault-split fault-resurrect; do
  compgen -G "$T/$set/*.jsonl" > /dev/null || { echo "no traces in $T/$set: the recording tests did not run" >&2; exit 1; }
done
H=target/model-traces/ha
for set in ok-storm ok-shutdown ok-shutdown-taken serve sim sim-cut fault-514 fault-nostop fault-late-store fault-lost-reap; do
  compgen -G "$H/$set/*.jsonl" > /dev/null || { echo "no traces in $H/$set: the recording tests did not run" >&2; exit 1; }
done
R=target/model-traces/replication
for set in sim fault-skip-truncation; do
  compgen -G "$R/$set/*.jsonl" > /dev/null || { echo "no traces in $R/$set: the recording tests did not run" >&2; exit 1; }
done
[[ -f target/tla/tla2tools.jar ]] || bash .ci/models.sh ClientRegistry_consumer > /dev/null

t0=$SECONDS
python3 models/trace/validate.py --self-test
python3 models/trace/validate.py --jobs 2 --expect accept "$T"/ok/*.jsonl "$T"/sim/*.jsonl "$T"/serve/*.jsonl
python3 models/trace/validate.py --jobs 2 --expect reject "$T"/fault-split/*.jsonl "$T"/fault-resurrect/*.jsonl
python3 models/trace/validate.py --fault SplitRemoveIfEmpty --expect accept "$T"/fault-split/*.jsonl
python3 models/trace/validate.py --fault RegisterAfterClose --expect accept "$T"/fault-resurrect/*.jsonl

python3 models/trace/validate.py --model ha --self-test
python3 models/trace/validate.py --model ha --jobs 2 --expect accept "$H"/ok-*/*.jsonl "$H"/serve/*.jsonl \
  "$H"/sim/*.jsonl
python3 models/trace/validate.py --model ha --prefix --expect accept "$H"/sim-cut/*.jsonl
python3 models/trace/validate.py --model ha --jobs 2 --expect reject "$H"/fault-*/*.jsonl
python3 models/trace/validate.py --model ha --fault RemoveWithoutStop --expect accept "$H"/fault-nostop/*.jsonl

python3 models/trace/validate.py --model replication --self-test
python3 models/trace/validate.py --model replication --jobs 2 --expect accept "$R"/sim/*.jsonl
python3 models/trace/validate.py --model replication --jobs 2 --expect reject "$R"/fault-skip-truncation/*.jsonl
echo "traces: validated in $((SECONDS - t0)) s"
