# End-to-end checks of sharded work (--shard I/N) without a scheduler: N processes write the parts
# one unsharded run writes, byte for byte (convert, quantize, imatrix + merge); a killed job leaves
# no part at its final path and rerunning only its index completes the set; bad shard arguments,
# mixed or incomplete sets are refused with one line, exit 2, nothing written.
# tests/e2e/slurm.sh runs the same jobs as job arrays under a real Slurm.
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: shard e2e skipped"; exit 0; }
HF=$SHARED/models/stories3M
T=$SHARED/text/tinystories-calib.txt
nothing_at() {
    if ls "$2" 2>/dev/null | grep -q .; then echo "FAIL $1: $2 written"; else echo "PASS $1"; fi
}
mkdir -p "$TMP/one" "$TMP/jobs" "$TMP/q1" "$TMP/qj" "$TMP/bad"

# ---- convert: 4 jobs = one run with --split-parts 4 ------------------------------------------
check conv-one 0 "$QKIT" convert "$HF" -o "$TMP/one/m.gguf" --outtype q4_k_m --split-parts 4 -q
for i in 0 1 2 3; do
    check "conv-shard-$i" 0 "$QKIT" convert "$HF" -o "$TMP/jobs/m.gguf" --outtype q4_k_m --shard "$i/4" --json
    expect_json "conv-shard-$i-json" "d['parts'] == 4 and d['parts_written'] == 1 and d['shard'] == {'index': $i, 'count': 4} and len(d['split_id']) == 16"
done
same_set conv-parts-identical "$TMP/one" "$TMP/jobs" m 4
check conv-set-reads 0 "$QKIT" perplexity "$TMP/jobs/m-00001-of-00004.gguf" -f "$T" --ctx 128 --chunks 2 -q

# ---- quantize with a size limit: 3 jobs over 6 parts (round robin) ---------------------------
check q-f32 0 "$QKIT" convert "$HF" -o "$TMP/f32.gguf" --outtype f32 -q
check q-one 0 "$QKIT" quantize -q --split-max-size 400K "$TMP/f32.gguf" "$TMP/q1/q.gguf" Q4_K_M
NP=$(ls "$TMP/q1" | wc -l)
for i in 0 1 2; do
    check "q-shard-$i" 0 "$QKIT" quantize -q --split-max-size 400K --shard "$i/3" "$TMP/f32.gguf" "$TMP/qj/q.gguf" Q4_K_M
done
same_set q-parts-identical "$TMP/q1" "$TMP/qj" q "$NP"
check q-json 0 "$QKIT" quantize --json --split-max-size 400K --shard 1/3 "$TMP/f32.gguf" "$TMP/bad/j.gguf" Q4_K_M
expect_json q-json-shard "d['totals']['shard'] == {'index': 1, 'count': 3} and d['totals']['parts_written'] == len(range(1, $NP, 3)) and any(t.get('other_shard') for t in d['tensors'])"
rm -f "$TMP"/bad/*

# ---- a size-budget allocation is part of the plan: every job computes the same one ------------
mkdir -p "$TMP/t1" "$TMP/tj"
check tq-one 0 "$QKIT" quantize -q --target-bpw 4.5 --calib "$T" --calib-chunks 2 --split-parts 3 \
    --sens-cache "$TMP/sens1.json" "$TMP/f32.gguf" "$TMP/t1/t.gguf"
for i in 0 1 2; do
    check "tq-shard-$i" 0 "$QKIT" quantize -q --target-bpw 4.5 --calib "$T" --calib-chunks 2 \
        --shard "$i/3" "$TMP/f32.gguf" "$TMP/tj/t.gguf"
done
same_set tq-parts-identical "$TMP/t1" "$TMP/tj" t 3

# ---- a killed job leaves nothing at its path; rerunning its index completes the set ----------
check big-synth 0 "$QKIT" synth --config "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" --tokenizer-gen --layers 2 -o "$TMP/big" -q
check big-one 0 "$QKIT" convert "$TMP/big" -o "$TMP/one/b.gguf" --outtype q4_k_m --split-parts 2 -q
"$QKIT" convert "$TMP/big" -o "$TMP/jobs/b.gguf" --outtype q4_k_m --shard 0/2 -q &
pid=$!
while ! ls "$TMP/jobs" | grep -q '^b-00001-of-00002.gguf.tmp-' && kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -9 $pid 2>/dev/null && killed=1 || killed=0
wait $pid 2>/dev/null
if [ $killed = 1 ] && [ ! -e "$TMP/jobs/b-00001-of-00002.gguf" ]; then echo "PASS killed-job-no-part"
else echo "FAIL killed-job-no-part (killed=$killed)"; fi
check other-job 0 "$QKIT" convert "$TMP/big" -o "$TMP/jobs/b.gguf" --outtype q4_k_m --shard 1/2 -q
check incomplete-set 2 "$QKIT" inspect "$TMP/jobs/b-00002-of-00002.gguf"
expect_err incomplete-set-msg "b-00001-of-00002.gguf: missing: part 1 of the 2-part model"
check rerun-index 0 "$QKIT" convert "$TMP/big" -o "$TMP/jobs/b.gguf" --outtype q4_k_m --shard 0/2 -q
same_set rerun-completes "$TMP/one" "$TMP/jobs" b 2
rm -f "$TMP"/jobs/b-*.tmp-*

# ---- imatrix: 4 shards merged = one run ------------------------------------------------------
check imx-one 0 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --ctx 128 --chunks 10 -o "$TMP/imx.gguf" -q
for i in 0 1 2 3; do
    check "imx-shard-$i" 0 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --ctx 128 --chunks 10 --shard "$i/4" -o "$TMP/imx$i.gguf" --threads 1 -q
done
check imx-merge 0 "$QKIT" imatrix "$TMP/f32.gguf" --in-file "$TMP/imx3.gguf" --in-file "$TMP/imx1.gguf" --in-file "$TMP/imx0.gguf" --in-file "$TMP/imx2.gguf" -o "$TMP/merged.gguf" -q
check imx-merge-identical 0 cmp "$TMP/imx.gguf" "$TMP/merged.gguf"
check imx-missing 2 "$QKIT" imatrix "$TMP/f32.gguf" --in-file "$TMP/imx0.gguf" --in-file "$TMP/imx1.gguf" --in-file "$TMP/imx3.gguf" -o "$TMP/bad/m.gguf"
expect_err imx-missing-msg "shard 2 of 4 (chunks 5-6) is missing"
nothing_at imx-missing-nothing "$TMP/bad/"
check imx-dup 2 "$QKIT" imatrix "$TMP/f32.gguf" --in-file "$TMP/imx0.gguf" --in-file "$TMP/imx1.gguf" --in-file "$TMP/imx2.gguf" --in-file "$TMP/imx2.gguf" -o "$TMP/bad/m.gguf"
expect_err imx-dup-msg "shard 2 of 4 is also in"
check imx-other-chunking 0 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --ctx 128 --chunks 12 --shard 3/4 -o "$TMP/other3.gguf" -q
check imx-foreign 2 "$QKIT" imatrix "$TMP/f32.gguf" --in-file "$TMP/imx0.gguf" --in-file "$TMP/imx1.gguf" --in-file "$TMP/imx2.gguf" --in-file "$TMP/other3.gguf" -o "$TMP/bad/m.gguf"
expect_err imx-foreign-msg "other3.gguf: shard 3 of 4 of chunks 0-11, but"
check imx-other-model 2 "$QKIT" imatrix "$HF" --in-file "$TMP/imx0.gguf" --in-file "$TMP/imx1.gguf" --in-file "$TMP/imx2.gguf" --in-file "$TMP/imx3.gguf" -o "$TMP/bad/m.gguf"
expect_err imx-other-model-msg "collected on another model"
nothing_at imx-bad-nothing "$TMP/bad/"

# ---- bad arguments and mixed sets ------------------------------------------------------------
check shard-5-of-4 2 "$QKIT" convert "$HF" -o "$TMP/bad/m.gguf" --shard 5/4
expect_err shard-5-of-4-msg "--shard 5/4: I counts from 0, so it must be below N (0 to 3)"
check shard-0-of-0 2 "$QKIT" quantize --shard 0/0 "$TMP/f32.gguf" "$TMP/bad/m.gguf" Q4_K_M
expect_err shard-0-of-0-msg "--shard 0/0: N must be at least 1"
check shard-garbage 2 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --shard two -o "$TMP/bad/m.gguf"
expect_err shard-garbage-msg "--shard needs I/N"
check shard-more-than-parts 2 "$QKIT" quantize --split-parts 3 --shard 3/5 "$TMP/f32.gguf" "$TMP/bad/m.gguf" Q4_K_M
expect_err shard-more-than-parts-msg "the output has only 3 split parts"
check shard-more-than-chunks 2 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --ctx 128 --chunks 3 --shard 3/4 -o "$TMP/bad/m.gguf"
expect_err shard-more-than-chunks-msg "use at most 3 shards"
check shard-dat 2 "$QKIT" imatrix "$TMP/f32.gguf" -f "$T" --shard 0/2 --output-format dat -o "$TMP/bad/m.dat"
check split-conflict 2 "$QKIT" convert "$HF" -o "$TMP/bad/m.gguf" --split-parts 2 --split-max-size 1M
nothing_at bad-args-nothing "$TMP/bad/"
# two plans (q4_k_m and q8_0) in one folder: the reader names the foreign part
check mixed-q8 0 "$QKIT" convert "$HF" -o "$TMP/bad/m.gguf" --outtype q8_0 --shard 1/4 -q
cp "$TMP/jobs/m-00001-of-00004.gguf" "$TMP/jobs/m-00003-of-00004.gguf" "$TMP/jobs/m-00004-of-00004.gguf" "$TMP/bad/"
check mixed-plans 2 "$QKIT" inspect "$TMP/bad/m-00001-of-00004.gguf"
expect_err mixed-plans-msg "m-00002-of-00004.gguf: belongs to another write of the model"
