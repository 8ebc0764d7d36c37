#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs them. See Fuzz/README.md.
#
#   scripts/fuzz.sh build                       build all targets only
#   scripts/fuzz.sh [-t SECONDS] [TARGET ...]   build, then run each TARGET (default: all) for SECONDS
#                                               (default 600), one after the other
#   scripts/fuzz.sh repro TARGET FILE ...       run TARGET once on FILE(s), e.g. a finding
#
# TARGET is decoder, token, config or oauthconf. Extra libFuzzer flags can go in FUZZ_FLAGS.
# New corpus entries and findings go to Fuzz/.work/TARGET/ (gitignored); the checked-in seeds in
# Fuzz/Corpus/TARGET/ are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

all_targets=(decoder token config oauthconf)
product() {
  case "$1" in
    decoder) echo FuzzBulkListDecoder ;;
    token) echo FuzzTokenResponse ;;
    config) echo FuzzConfigFile ;;
    oauthconf) echo FuzzOAuthConf ;;
    *) echo "fuzz: unknown target '$1' (decoder, token, config, oauthconf)" >&2; exit 2 ;;
  esac
}

scratch="$root/Fuzz/.build-fuzz"
build() {
  scripts/setup.sh >&2
  # SwiftPM's --sanitize flags alone compile Swift without coverage instrumentation (Swift 6.3):
  # -Xswiftc adds it; --sanitize fuzzer makes SwiftPM leave `main` to libFuzzer.
  swift build --package-path Fuzz --scratch-path "$scratch" -c release \
    --sanitize fuzzer --sanitize address -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld >&2
}
binary() { echo "$scratch/release/$(product "$1")"; }

# A crash inside Swift's own backtracer under ASan can hang; libFuzzer prints the stack anyway.
export SWIFT_BACKTRACE=enable=no
# Swift's runtime keeps metadata caches for the life of the process, which LeakSanitizer reports.
flags=(-detect_leaks=0 -max_len=4096 -print_final_stats=1)
target_flags() {
  if [ -f "$root/Fuzz/Dictionaries/$1.dict" ]; then echo "-dict=$root/Fuzz/Dictionaries/$1.dict"; fi
}

run() {
  local target=$1 seconds=$2
  local work="$root/Fuzz/.work/$target"
  mkdir -p "$work/corpus" "$work/findings"
  echo "fuzz: $target for ${seconds}s, log in $work/fuzz.log" >&2
  # shellcheck disable=SC2046,SC2086
  "$(binary "$target")" "${flags[@]}" $(target_flags "$target") ${FUZZ_FLAGS:-} \
    -max_total_time="$seconds" -artifact_prefix="$work/findings/" \
    "$work/corpus" "$root/Fuzz/Corpus/$target" >"$work/fuzz.log" 2>&1 || {
    echo "fuzz: $target FOUND something, see $work/fuzz.log and $work/findings/" >&2
    tail -n 40 "$work/fuzz.log" >&2
    return 1
  }
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
    "$work/fuzz.log" >&2 || true
}

if [ "${1:-}" = build ]; then
  build
  exit 0
fi
if [ "${1:-}" = repro ]; then
  target=$2
  shift 2
  build
  exec "$(binary "$target")" "${flags[@]}" "$@"
fi

seconds=600
if [ "${1:-}" = -t ]; then
  seconds=$2
  shift 2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do product "$target" >/dev/null; done
build
status=0
for target in "${targets[@]}"; do run "$target" "$seconds" || status=1; done
exit $status
