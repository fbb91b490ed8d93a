#!/bin/sh
# bench_engine.sh — `qkit perplexity` throughput (tokens/s) for F32, Q8_0 and Q4_K_M versions of
# stories3M and of a synthetic TinyLlama-1.1B, with 1 and 2 threads. Needs ../shared (models,
# configs, text); files live in a temporary folder removed at the end.
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

run() { # NAME CTX CHUNKS
    for q in f32 Q8_0 Q4_K_M; do
        for t in 1 2; do
            tps=$("$QKIT" perplexity "$TMP/$1-$q.gguf" -f "$T" --ctx "$2" --chunks "$3" --threads $t --json |
                  sed 's/.*"tokens_per_second": \([0-9.]*\).*/\1/')
            printf 'bench_engine: %-12s %-7s ctx %-4s %d thread(s): %10s tokens/s\n' "$1" "$q" "$2" $t "$tps"
        done
    done
}

models stories3M "$SHARED/models/stories3M"
run stories3M 256 16
"$QKIT" synth --config "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" --dtype bf16 -q \
    -o "$TMP/tinyllama" || exit 1
models tinyllama "$TMP/tinyllama"
rm -rf "$TMP/tinyllama"
run tinyllama 256 1
