#!/usr/bin/env bash
# Runs onedot's cargo-fuzz targets (fuzz/) for a while each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS (default 600) is libFuzzer's -max_total_time per target; TARGETs
# default to every target of `cargo fuzz list`. Prints, per target, how many
# inputs ran (libFuzzer's stat::number_of_executed_units) and exits 1 if
# any target crashed, hung (-timeout) or ran out of memory; the inputs that
# did land in fuzz/artifacts/<target>/ (reproduce one with
# `cargo fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>`).
#
# Corpus: each run works on a copy of fuzz/corpus/<target>/ in a temporary
# directory, so what libFuzzer adds (hundreds of files) never lands in the
# repository and the checked-in seeds stay small and reviewable. To keep a
# run's corpus, set FUZZ_KEEP_CORPUS=DIR: it is minimised into DIR/<target>
# with `-merge=1`, and can be copied over the seeds deliberately.
#
# Environment:
#   FUZZ_SANITIZER   none (default) or address (ASan; slower, finds less
#                    in a crate that forbids unsafe code, but checks the C
#                    code in ring and libFuzzer's own)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang
#                    (default 20)
#   FUZZ_RSS_MB      memory limit (default 2048)
#   FUZZ_KEEP_CORPUS keep the grown corpora (see above)
#   FUZZ_VERBOSE=1   show libFuzzer's output as it runs
#
# The toolchain here is stable; cargo-fuzz passes unstable rustc flags, so
# RUSTC_BOOTSTRAP=1 is exported. Building libfuzzer-sys needs a C++
# compiler.
set -euo pipefail

usage() {
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

secs=600
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  secs=$1
  shift
fi
case "${1:-}" in -h | --help) usage ;; esac

export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
timeout=${FUZZ_TIMEOUT:-20}
rss=${FUZZ_RSS_MB:-2048}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing; installing it" >&2
  cargo install cargo-fuzz --locked
fi

build_args=(--fuzz-dir fuzz --sanitizer "$sanitizer" --debug-assertions)

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "no fuzz targets found" >&2; exit 1; }

# One build for every target, so no target's time goes to compiling.
cargo fuzz build "${build_args[@]}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/onedot-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Crash, hang and out-of-memory inputs (not libFuzzer's slow-unit reports).
count_artifacts() {
  find "fuzz/artifacts/$1" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l
}

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$tmp/corpus-$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  if [[ -d fuzz/corpus/$t ]]; then
    cp -R "fuzz/corpus/$t/." "$corpus/"
  fi
  log="$tmp/$t.log"
  before=$(count_artifacts "$t")
  echo "== $t: ${secs}s"
  run=(cargo fuzz run "${build_args[@]}" "$t" "$corpus" --
    -max_total_time="$secs" -print_final_stats=1 -timeout="$timeout" -rss_limit_mb="$rss")
  set +e
  if [[ ${FUZZ_VERBOSE:-0} == 1 ]]; then
    "${run[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    "${run[@]}" >"$log" 2>&1
    rc=$?
  fi
  set -e
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -n1 | awk '{print $2}')
  execs=${execs:-?}
  after=$(count_artifacts "$t")
  if [[ $rc -ne 0 || $after -gt $before ]]; then
    failed+=("$t")
    summary+=("$(printf '%-16s %14s  %s' "$t" "$execs" "FAILED (exit $rc; artifacts in fuzz/artifacts/$t/)")")
    echo "-- $t FAILED (exit $rc), last lines of libFuzzer's output:"
    tail -n 40 "$log" | sed 's/^/   /'
  else
    summary+=("$(printf '%-16s %14s  %s' "$t" "$execs" "ok")")
  fi
  echo "   executions: $execs"
  if [[ -n ${FUZZ_KEEP_CORPUS:-} ]]; then
    mkdir -p "$FUZZ_KEEP_CORPUS/$t"
    cargo fuzz run "${build_args[@]}" "$t" "$FUZZ_KEEP_CORPUS/$t" "$corpus" -- -merge=1 >/dev/null 2>&1 || true
  fi
  rm -rf "$corpus"
done

echo
printf '%-16s %14s  %s\n' target executions result
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
