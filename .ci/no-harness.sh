#!/usr/bin/env bash
# The default build, and so the docs a broker author reads, show no planted fault, no test
# hook and no emulation of upstream: the first two exist only with the `harness` feature (on for
# the crate's own tests), the last only in the command. Builds the
# library's docs with default features (a rustdoc warning fails it too) and fails on any of their
# names.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --quiet
names='start_registered|skip_truncation|send_unsynced|with_skipped_truncation|forget_on_peer_close|unchecked_acks|HaMaster514|Broker4x|ProducerManager4x|emit_after_unlock|Faults|with_faults|pause_heartbeats|split_close_all|remove_without_stop|upstream_514|lost_reap|store_after_shutdown|split_remove_if_empty|register_after_close|keep_empty_groups|crash_after|crash_steps|skip_quarantine_copy|CrashPoints|skip_segment_size_check'
found=$(grep -rlE "$names" target/doc/rmq_lifecycle || true)
if [[ -n "$found" ]]; then
  echo "the default docs show harness-only items:" >&2
  grep -rhoE "$names" target/doc/rmq_lifecycle | sort | uniq -c >&2
  exit 1
fi
echo "default docs: no harness-only item ($(find target/doc/rmq_lifecycle -name '*.html' | wc -l) pages)"
