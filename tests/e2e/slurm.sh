# End-to-end checks of sharded work (--shard I/N) under a real Slurm: a throwaway single-node
# cluster (tests/e2e/slurm_cluster.inc, needs root and slurmctld/slurmd/slurm-client/munge) runs
# a 4-task array of convert + quantize jobs, a 4-task imatrix array and a merge job that depends on
# it (--dependency=afterok); every part and the merged imatrix equal, byte for byte, the output of
# one unsharded process. A job killed mid-write leaves no part at its final path; resubmitting only
# its array index completes the set. Prints the wall time of the arrays and of one process as
# INFO lines. tests/e2e/shard.sh runs the same jobs without a scheduler.
. tests/e2e/lib.inc
have_shared || { echo "SKIP slurm: shared data missing: $SHARED/models (slurm e2e skipped)"; exit 0; }
# The sanitizer tier looks for memory errors: the commands the jobs run are shard.sh's, which it
# runs; the scheduler's orchestration is checked here in the fast tier.
[ -n "$SANITIZED" ] && { echo "SKIP slurm: orchestration only, checked in the fast tier (slurm e2e skipped under the sanitizers)"; exit 0; }
. tests/e2e/slurm_cluster.inc
if ! slurm_available; then
    echo "SKIP slurm: $(slurm_missing | tr '\n' ';' | sed 's/;$//; s/;/, /g') (slurm e2e skipped)"
    exit 0
fi

# Jobs run in other processes and folders: absolute paths only.
case $QKIT in
*/*) QKIT=$(cd "$(dirname "$QKIT")" && pwd)/$(basename "$QKIT") ;;
*) QKIT=$(command -v "$QKIT") ;;
esac
SHARED=$(cd "$SHARED" && pwd)
HF=$SHARED/models/stories3M
T=$SHARED/text/tinystories-calib.txt
CONFIG=$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json
[ -x "$QKIT" ] && [ -d "$HF" ] && [ -f "$T" ] && [ -f "$CONFIG" ] ||
    { echo "FAIL slurm-inputs: $QKIT, $HF, $T or $CONFIG missing"; exit 1; }

# munged wants every parent of its socket folder executable by all; the cluster folder is $TMP/c.
chmod 0755 "$TMP"
C=$TMP/c
D=$TMP/d # data: models, single-process outputs, job outputs
trap 'slurm_stop; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$D/one" "$D/arr" "$D/q1" "$D/kill"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }


# sb ARGS...: sbatch ARGS, printing the job ID; a refused submission is a FAIL line.
sb() {
    # shellcheck disable=SC2086
    sbatch $SB "$@" 2>"$TMP/sbatch.err" || { echo "FAIL sbatch $*: $(cat "$TMP/sbatch.err")" >&2; return 1; }
}

# jobs_ok NAME TIMEOUT JOBID...: all jobs (every array task) end within TIMEOUT s, COMPLETED.
jobs_ok() {
    name=$1 limit=$2
    shift 2
    for j; do [ -n "$j" ] || { echo "FAIL $name: not submitted"; return 1; }; done
    if ! slurm_wait_jobs "$limit" "$@" 2>"$ERR"; then
        echo "FAIL $name: $(cat "$ERR")"; job_logs; return 1
    fi
    states=$(for j; do slurm_job_state "$j"; done)
    if echo "$states" | awk '$2 != "COMPLETED" { bad = 1 } END { exit bad }'; then echo "PASS $name"; return 0; fi
    echo "FAIL $name: $(echo "$states" | tr '\n' ' ')"
    job_logs
    return 1
}
job_logs() {
    for f in "$C"/jobs/*.out; do [ -s "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }; done
}

# ---- the model and the single-process references ---------------------------------------------
# A 2-layer TinyLlama (420 MB bf16, ~0.9 s to convert on 2 cores): big enough that a job can be
# caught while it writes its part, small enough to keep the script well under a minute.
# stories3M (7 MB) is the imatrix model: a real model on real text, 16 chunks in ~0.2 s.
check synth 0 "$QKIT" synth --config "$CONFIG" --tokenizer-gen --layers 2 -o "$D/big" -q
check f32 0 "$QKIT" convert "$HF" -o "$D/f32.gguf" --outtype f32 -q
t0=$(now)
check one-convert 0 "$QKIT" convert "$D/big" -o "$D/one/b.gguf" --outtype q4_k_m --split-parts 4 -q
check one-quantize 0 "$QKIT" quantize -q --split-max-size 400K "$D/f32.gguf" "$D/q1/q.gguf" Q4_K_M
t_one=$(secs "$t0" "$(now)")
NQ=$(ls "$D/q1" | wc -l)
t0=$(now)
check one-imatrix 0 "$QKIT" imatrix "$HF" -f "$T" --ctx 128 --chunks 16 -o "$D/imx.gguf" -q
t_one_imx=$(secs "$t0" "$(now)")

# ---- the cluster and the job scripts ---------------------------------------------------------
if ! slurm_start "$C" 2>"$ERR"; then echo "FAIL slurm-start"; head -c 4000 "$ERR"; exit 1; fi
echo "PASS slurm-start"
mkdir -p "$C/jobs"
SB="--parsable --chdir=$C/jobs --cpus-per-task=1"

# convert.sh OUT_DIR: array task I converts part I+1 of 4 and quantizes parts p % 4 == I of the
# --split-max-size 400K split.
cat >"$C/convert.sh" <<EOF
#!/bin/sh
i=\$SLURM_ARRAY_TASK_ID
"$QKIT" convert "$D/big" -o "\$1/b.gguf" --outtype q4_k_m --shard \$i/4 --threads 1 -q || exit 1
"$QKIT" quantize -q --split-max-size 400K --shard \$i/4 "$D/f32.gguf" "\$1/q.gguf" Q4_K_M 1
EOF
cat >"$C/imatrix.sh" <<EOF
#!/bin/sh
exec "$QKIT" imatrix "$HF" -f "$T" --ctx 128 --chunks 16 --shard \$SLURM_ARRAY_TASK_ID/4 \\
    -o "$D/imx\$SLURM_ARRAY_TASK_ID.gguf" --threads 1 -q
EOF
cat >"$C/merge.sh" <<EOF
#!/bin/sh
exec "$QKIT" imatrix "$HF" --in-file "$D/imx0.gguf" --in-file "$D/imx1.gguf" \\
    --in-file "$D/imx2.gguf" --in-file "$D/imx3.gguf" -o "$D/merged.gguf" -q
EOF
# killed.sh OUT_DIR: the convert job of index 0 killed (SIGKILL) while it writes its part's
# temporary file; the job then fails.
cat >"$C/killed.sh" <<EOF
#!/bin/sh
"$QKIT" convert "$D/big" -o "\$1/b.gguf" --outtype q4_k_m --shard 0/4 --threads 1 -q &
pid=\$!
while ! ls "\$1" | grep -q '^b-00001-of-00004.gguf.tmp-' && kill -0 \$pid 2>/dev/null; do sleep 0.01; done
if kill -9 \$pid 2>/dev/null; then echo "killed while writing"; else echo "convert ended before the kill"; fi
wait \$pid
exit 1
EOF

# ---- what Slurm itself costs: a 4-task array of `true` ----------------------------------------
# (after one job: the first job of a fresh cluster waits ~1 s longer)
first=$(sb --output="$C/jobs/first-%j.out" --wrap true)
jobs_ok first-job-completed 300 "$first"
t0=$(now)
nop=$(sb --array=0-3 --output="$C/jobs/nop-%A_%a.out" --wrap true)
jobs_ok array-empty-completed 300 "$nop"
t_nop=$(secs "$t0" "$(now)")

# ---- convert + quantize: a 4-task array = one process -----------------------------------------
t0=$(now)
conv=$(sb --array=0-3 --output="$C/jobs/conv-%A_%a.out" "$C/convert.sh" "$D/arr")
jobs_ok array-convert-completed 300 "$conv"
t_arr=$(secs "$t0" "$(now)")
same_set array-convert-parts-identical "$D/one" "$D/arr" b 4
same_set array-quantize-parts-identical "$D/q1" "$D/arr" q "$NQ"
check array-set-reads 0 "$QKIT" inspect "$D/arr/b-00001-of-00004.gguf"

# ---- imatrix: a 4-task array, then a merge job after it (afterok) = one run -------------------
t0=$(now)
imx=$(sb --array=0-3 --output="$C/jobs/imx-%A_%a.out" "$C/imatrix.sh")
mrg=$(sb --dependency=afterok:"$imx" --output="$C/jobs/merge-%j.out" "$C/merge.sh")
jobs_ok imatrix-array-and-merge-completed 300 "$imx" "$mrg"
t_imx=$(secs "$t0" "$(now)")
check imatrix-merged-identical 0 cmp "$D/imx.gguf" "$D/merged.gguf"

echo "INFO slurm: convert q4_k_m + quantize Q4_K_M, 4-task array (submit to done): $t_arr s; one process (--split-parts 4, all cores): $t_one s; $(nproc) cores"
echo "INFO slurm: imatrix 16 chunks, 4-task array + merge job (submit to done): $t_imx s; one process: $t_one_imx s"
echo "INFO slurm: a 4-task array of \`true\` (submit to done): $t_nop s"

# ---- a job killed while writing leaves no part; resubmitting only its index completes the set --
cp "$D/arr/b-00002-of-00004.gguf" "$D/arr/b-00003-of-00004.gguf" "$D/arr/b-00004-of-00004.gguf" "$D/kill/"
kj=$(sb --output="$C/jobs/killed-%j.out" "$C/killed.sh" "$D/kill")
slurm_wait_jobs 300 "$kj" 2>"$ERR" || echo "FAIL killed-job-ended: $(cat "$ERR")"
if slurm_job_state "$kj" | grep -q ' FAILED$' && grep -q '^killed while writing' "$C/jobs/killed-$kj.out"; then
    echo "PASS killed-job-failed"
else echo "FAIL killed-job-failed: $(slurm_job_state "$kj"); $(cat "$C/jobs/killed-$kj.out")"; fi
if [ -e "$D/kill/b-00001-of-00004.gguf" ]; then echo "FAIL killed-job-no-part"; else echo "PASS killed-job-no-part"; fi
check killed-set-refused 2 "$QKIT" inspect "$D/kill/b-00002-of-00004.gguf"
expect_err killed-set-refused-msg "b-00001-of-00004.gguf: missing: part 1 of the 4-part model"
rj=$(sb --array=0 --output="$C/jobs/rerun-%A_%a.out" "$C/convert.sh" "$D/kill")
jobs_ok rerun-index-completed 300 "$rj"
same_set rerun-set-identical "$D/one" "$D/kill" b 4
check rerun-set-reads 0 "$QKIT" inspect "$D/kill/b-00001-of-00004.gguf"
