#!/bin/sh
# Runs cmocka test binaries, fuzz replayers (over tests/fuzz/corpus/NAME) and tests/e2e/*.sh, and
# prints one closing line: "tests: N passed, N failed, N skipped". Exits non-zero on any failure.
passed=0; failed=0; skipped=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
count() { sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) test(s).*/\1/p" "$log" | head -n 1; }
# Each line ends with the seconds it took, so CI's time budget can be read off the log.
for t in "$@"; do
    name=$(basename "$t"); t0=$(date +%s)
    case "$name" in
    fuzz_*)
        corpus="tests/fuzz/corpus/${name#fuzz_}"
        mkdir -p "$corpus"
        if "$t" "$corpus" >"$log" 2>&1; then passed=$((passed + 1)); echo "PASS $name ($(cat "$log")) $(($(date +%s) - t0))s"
        else failed=$((failed + 1)); echo "FAIL $name"; cat "$log"; fi
        ;;
    *)
        "$t" >"$log" 2>&1; rc=$?
        p=$(count PASSED); f=$(count FAILED); s=$(count SKIPPED)
        passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
        if [ $rc -ne 0 ] || [ -n "$f" ]; then
            [ -z "$f" ] && failed=$((failed + 1))
            echo "FAIL $name"; cat "$log"
        else
            echo "PASS $name (${p:-0} passed${s:+, $s skipped}) $(($(date +%s) - t0))s"
            grep -h 'skipped)' "$log" | sed 's/^/    /'
        fi
        ;;
    esac
done
# QKIT_E2E, when set, names the scripts to run (e.g. "isa.sh"); otherwise every one runs.
for s in tests/e2e/*.sh; do
    [ -f "$s" ] || continue
    if [ -n "${QKIT_E2E:-}" ]; then case " $QKIT_E2E " in *" $(basename "$s") "*) ;; *) continue ;; esac; fi
    t0=$(date +%s)
    sh "$s" >"$log" 2>&1; rc=$?
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then
        [ "$f" -eq 0 ] && failed=$((failed + 1))
        echo "FAIL $(basename "$s")"; cat "$log"
    else
        echo "PASS $(basename "$s") ($p checks) $(($(date +%s) - t0))s"
        if grep -q 'skipped' "$log"; then skipped=$((skipped + 1)); grep -h 'skipped' "$log" | sed 's/^/    /'; fi
    fi
done
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
