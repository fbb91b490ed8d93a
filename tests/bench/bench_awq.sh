#!/bin/sh
# bench_awq.sh — `qkit awq` wall time: stories3M (defaults: 128 x 512 calibration tokens) and a
# 2-layer synthetic TinyLlama-1.1B (full width; 32 x 512 tokens), AutoAWQ folder output, and
# gguf:Q4_K_M for stories3M. Needs ../shared.
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
[ -d "$SHARED/models" ] || { echo "bench_awq: ../shared missing, skipped"; exit 0; }
TMP=$(mktemp -d /tmp/qkit-bench-awq-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
C=$SHARED/text/tinystories-calib.txt
export OMP_WAIT_POLICY=passive
run() { # NAME ARGS...
    name=$1
    shift
    python3 - "$name" "$QKIT" awq "$@" --json <<'PY' || exit 1
import json, subprocess, sys, time
name, cmd = sys.argv[1], sys.argv[2:]
t0 = time.time()
d = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
print("bench_awq: %-34s %7.1f s wall (search %.1f s): %d x %d tokens, %d blocks, %d groups"
      % (name, time.time() - t0, d["seconds_search"], d["samples"], d["seq_len"], d["blocks"], d["groups"]))
PY
}
run "stories3M --format awq" "$SHARED/models/stories3M" -f "$C" -o "$TMP/s3m-awq" --format awq
run "stories3M --format gguf:Q4_K_M" "$SHARED/models/stories3M" -f "$C" -o "$TMP/s3m.gguf" --format gguf:Q4_K_M
"$QKIT" synth --config "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" --layers 2 \
    --dtype bf16 -q -o "$TMP/tl" || exit 1
run "TinyLlama-1.1B 2 layers --format awq" "$TMP/tl" -f "$C" -o "$TMP/tl-awq" --format awq --samples 32
