#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target for FUZZ_SECONDS (default 60) each, starting from the committed
# seeds in fuzz/seeds/<target>/ and the local fuzz/corpus/<target>/ (which it grows). Exits
# non-zero if any target finds a crash, a timeout or an out-of-memory input, printing the file.
# Works from a clean clone: installs cargo-fuzz if it is missing.
#
#   FUZZ_SECONDS=60      seconds per target
#   FUZZ_SANITIZER=none  none: plain stable, fastest. address: ASan through RUSTC_BOOTSTRAP=1
#                        (about 6x fewer exec/s; this crate's L1 has no unsafe code, so it adds
#                        only memcmp hooks, which the dictionaries in fuzz/dicts/ stand in for).
#   FUZZ_TARGETS="remoting_frame heartbeat_json ha_frame ha_autoswitch_frame client_ops ha_ops send_message"
#   FUZZ_JOBS=1          libFuzzer processes per target (-fork).
#   FUZZ_LANES=<cores>   targets fuzzed at once (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
lanes=${FUZZ_LANES:-$(nproc)}
read -r -a targets <<<"${FUZZ_TARGETS:-remoting_frame heartbeat_json ha_frame ha_autoswitch_frame client_ops ha_ops send_message}"
started=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "::: fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [[ $sanitizer != none ]]; then
  # cargo-fuzz passes -Zsanitizer=…, which stable rustc accepts only with RUSTC_BOOTSTRAP.
  export RUSTC_BOOTSTRAP=1
fi
# Cargo caches rustc's answer to the sanitizer probe without keying it on RUSTC_BOOTSTRAP, so a
# failed probe from an earlier run would fail this one too (toolchain.md section 5).
rm -f fuzz/target/.rustc_info.json

# One build for all targets (release with debug assertions, as `cargo fuzz run` builds them).
t0=$SECONDS
cargo fuzz build -s "$sanitizer"
echo "::: fuzz: built in $((SECONDS - t0)) s"

marker=$(mktemp)
logs=$(mktemp -d)
trap 'rm -rf "$marker" "$logs"' EXIT

# Fuzzes one target; its output goes to $logs/<target>.log, its verdict to $logs/<target>.rc.
fuzz_one() {
  local target=$1 t0=$SECONDS rc=0
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [[ -f fuzz/dicts/$target.dict ]] && args+=(-dict="fuzz/dicts/$target.dict")
  [[ $jobs -gt 1 ]] && args+=(-fork="$jobs")
  cargo fuzz run -s "$sanitizer" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${args[@]}" \
    >"$logs/$target.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - t0))" >"$logs/$target.rc"
}

# Targets run $lanes at a time, each libFuzzer process on its own core: each still gets its full
# $secs of one core, in less wall time. Their logs are printed in target order afterwards.
running=0
for target in "${targets[@]}"; do
  if ((running >= lanes)); then
    wait -n
    running=$((running - 1))
  fi
  echo "::: fuzz: $target for $secs s"
  fuzz_one "$target" &
  running=$((running + 1))
done
wait

failed=()
for target in "${targets[@]}"; do
  cat "$logs/$target.log"
  read -r rc took <"$logs/$target.rc"
  if [[ $rc == 0 ]]; then
    echo "::: fuzz: $target ok in $took s ($(find "fuzz/corpus/$target" -type f | wc -l) corpus files)"
  else
    echo "::: fuzz: $target FAILED after $took s"
    failed+=("$target")
    while IFS= read -r -d '' crash; do
      echo "::: fuzz: $target input: $crash ($(wc -c <"$crash") bytes)"
      od -A x -t x1z -v "$crash" | head -n 32
      echo "::: reproduce: cargo fuzz run -s $sanitizer $target $crash"
      echo "::: minimize:  cargo fuzz tmin -s $sanitizer $target $crash, then copy it to fuzz/regressions/$target/"
    done < <(find "fuzz/artifacts/$target" -type f -newer "$marker" -print0)
  fi
done

if ((${#failed[@]})); then
  echo "::: fuzz: FAILED: ${failed[*]} (in $((SECONDS - started)) s)"
  exit 1
fi
echo "::: fuzz: all ${#targets[@]} targets ok in $((SECONDS - started)) s"
