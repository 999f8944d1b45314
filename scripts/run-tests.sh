#!/usr/bin/env bash
# make test's suite, once the stack is up and the lint has passed.
#
# The fuzz tests (tests/fuzz: pure functions and fakes, no stack, a CPU each for about two
# minutes) run beside the others at the lowest CPU priority; the rest (the integration tests'
# real-time timelines, mostly waiting, then the unit tests) run as before. Measured on the
# 2-core machine: the integration tests passed alike with the fuzz beside them (834 s against
# about 890 s without), and make test is shorter by the fuzz's two minutes. Both runs must
# pass; the fuzz's report is printed after the others'.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
log=var/fuzz-tests.log
mkdir -p var

nice -n 19 "$BIN/pytest" -p no:cacheprovider tests/fuzz >"$log" 2>&1 &
fuzz=$!
trap 'kill "$fuzz" 2>/dev/null; wait "$fuzz" 2>/dev/null; exit 130' INT TERM

"$BIN/pytest" --ignore=tests/fuzz "$@"
rc=$?
wait "$fuzz"
fuzz_rc=$?
echo
echo "[siaga112] the fuzz tests (tests/fuzz), run beside the others at nice 19: $log"
cat "$log"
if [ "$rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ]; then
    echo "[siaga112] FAILED: the suite exited $rc, the fuzz tests $fuzz_rc"
    exit 1
fi
