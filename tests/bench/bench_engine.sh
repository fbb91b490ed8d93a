#!/bin/sh
# bench_engine.sh — `qkit perplexity` and `qkit imatrix` throughput (tokens/s) for F32, Q8_0 and
# Q4_K_M versions of stories3M and of a synthetic TinyLlama-1.1B, with 1 and 2 threads. Needs
# ../shared (models, configs, text); files live in a temporary folder removed at the end.
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
[ -d "$SHARED/models" ] || { echo "bench_engine: ../shared missing, skipped"; exit 0; }
TMP=$(mktemp -d /tmp/qkit-bench-engine-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
T=$SHARED/text/tinystories-eval.txt
export OMP_WAIT_POLICY=passive

models() { # NAME HF_DIR: F32, Q8_0 and Q4_K_M GGUFs in $TMP
    "$QKIT" convert "$2" -o "$TMP/$1-f32.gguf" --outtype f32 >/dev/null || exit 1
    for q in Q8_0 Q4_K_M; do
        "$QKIT" quantize "$TMP/$1-f32.gguf" "$TMP/$1-$q.gguf" $q >/dev/null || exit 1
    done
}

# best N CMD...: the highest tokens/s of N runs (the machine may be shared: the best run is the
# least disturbed one).
best() {
    n=$1
    shift
    b=0
    for _ in $(seq "$n"); do
        v=$("$@" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["tokens_per_second"])')
        [ "${v:-0}" -gt "$b" ] && b=$v
    done
    echo "$b"
}

# `qkit perplexity` and `qkit imatrix` (the same forward pass plus the statistics) on the same
# chunks, best of REPEAT runs each; the last column is imatrix's cost over perplexity (budget 15 %).
run() { # NAME CTX CHUNKS REPEAT
    for q in f32 Q8_0 Q4_K_M; do
        for t in 1 2; do
            ppl=$(best "$4" "$QKIT" perplexity "$TMP/$1-$q.gguf" -f "$T" --ctx "$2" --chunks "$3" --threads $t --json)
            imx=$(best "$4" "$QKIT" imatrix "$TMP/$1-$q.gguf" -f "$T" --ctx "$2" --chunks "$3" --threads $t --json \
                  -o "$TMP/imatrix.gguf")
            printf 'bench_engine: %-12s %-7s ctx %-4s %d thread(s): perplexity %8s tokens/s, imatrix %8s tokens/s (%+.1f %%)\n' \
                "$1" "$q" "$2" $t "$ppl" "$imx" "$(python3 -c "print(($ppl / $imx - 1) * 100)")"
        done
    done
}

models stories3M "$SHARED/models/stories3M"
run stories3M 256 64 3
"$QKIT" synth --config "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" --dtype bf16 -q \
    -o "$TMP/tinyllama" || exit 1
models tinyllama "$TMP/tinyllama"
rm -rf "$TMP/tinyllama"
run tinyllama 256 1 2
