#!/bin/sh
# run.sh SECONDS JOBS [TARGET...] — libFuzzer campaigns of SECONDS each over the built targets
# (build-fuzz/fuzz/, `make fuzz`), JOBS at a time, each with its seed corpus (read-only) and a
# growing corpus in build-fuzz/corpus/NAME. Logs go to build-fuzz/NAME.log, crashes to
# build-fuzz/crashes/. Prints one line per target: executions, executions per second, corpus
# sizes, and whether it found anything; exits 1 if any target failed.
set -u
secs=${1:?usage: run.sh SECONDS JOBS [TARGET...]}
jobs=${2:-1}
shift 2 2>/dev/null || shift $#
if [ $# -eq 0 ]; then
    set -- $(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
fi
for t in "$@"; do
    [ -x build-fuzz/fuzz/$t ] || { echo "run.sh: build-fuzz/fuzz/$t is missing (run make fuzz)"; exit 1; }
done
mkdir -p build-fuzz/crashes

one() {
    n=$1
    c=${n#fuzz_}
    mkdir -p build-fuzz/corpus/$c
    ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz/$n -max_total_time=$secs -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/$n- \
        build-fuzz/corpus/$c tests/fuzz/corpus/$c >build-fuzz/$n.log 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' build-fuzz/$n.log)
    seeds=$(ls tests/fuzz/corpus/$c | wc -l)
    found=$(ls build-fuzz/corpus/$c | wc -l)
    if [ $rc -eq 0 ]; then
        echo "PASS $n: ${execs:-0} executions in $secs s ($(( ${execs:-0} / secs ))/s), corpus $seeds seeds + $found found"
    else
        echo "FAIL $n (exit $rc): see build-fuzz/$n.log and build-fuzz/crashes/"
        tail -n 40 build-fuzz/$n.log
    fi
    return $rc
}

# JOBS lanes, targets dealt round-robin, each lane running its targets one after another.
lane=0
while [ $lane -lt "$jobs" ]; do
    (
        i=0
        for t in "$@"; do
            [ $((i % jobs)) -eq $lane ] && one "$t" >build-fuzz/$t.result
            i=$((i + 1))
        done
    ) &
    lane=$((lane + 1))
done
wait
status=0
for t in "$@"; do
    cat build-fuzz/$t.result
    grep -q '^PASS' build-fuzz/$t.result || status=1
done
exit $status
