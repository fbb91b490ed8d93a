#!/bin/sh
# bench_target.sh — what `qkit quantize --target-size/--target-bpw` costs: the sensitivity
# measurement (one engine pass per quantizable tensor), the sampled quantization errors and the
# allocation, cold and with the sensitivity cache warm; on stories3M (calibration 8 chunks of 256
# tokens) and on a 2-layer synthetic TinyLlama-1.1B (full width and vocabulary; 2 chunks of 256),
# with the per-pass time extrapolated to the 22-layer model. Needs ../shared.
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
[ -d "$SHARED/models" ] || { echo "bench_target: ../shared missing, skipped"; exit 0; }
TMP=$(mktemp -d /tmp/qkit-bench-target-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
C=$SHARED/text/tinystories-calib.txt
export OMP_WAIT_POLICY=passive

# run NAME IN ARGS...: one cold and one warm run; prints wall seconds and the JSON figures
run() {
    name=$1 in=$2
    shift 2
    rm -f "$TMP/sens.json"
    for phase in cold warm; do
        python3 - "$name" "$phase" "$QKIT" quantize --json "$in" "$TMP/out.gguf" --calib "$C" \
            --sens-cache "$TMP/sens.json" "$@" <<'PY' || exit 1
import json, subprocess, sys, time
name, phase, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.time()
d = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
wall = time.time() - t0
t = d["target"]
print("bench_target: %-22s %-4s %6.2f s wall: %3d engine passes, sensitivities %6.2f s, errors %5.2f s, "
      "quantize %5.2f s; %.3f bpw, predicted KLD %.5f"
      % (name, phase, wall, t["engine_passes"], t["seconds_sensitivity"], t["seconds_errors"],
         d["totals"]["seconds"], d["totals"]["bpw"], t["predicted_kld"]))
if phase == "cold" and t["engine_passes"] > 1:
    per = t["seconds_sensitivity"] / t["engine_passes"]
    print("bench_target: %-22s      %.3f s per engine pass" % (name, per))
    if name.startswith("TinyLlama"):
        # a pass is at most 2 blocks + the output head (about 1.5 blocks of work at this width
        # and vocabulary). On the 22-block model the reference pass and the token-embedding probe
        # run everything (23.5 units), a probe of block l's 7 tensors runs blocks l..21 and the
        # head (the earlier blocks' outputs are cached), the output probe the head alone
        unit = t["seconds_sensitivity"] / (2 * 3.5 + 7 * (3.5 + 2.5) + 1.5)
        units = 2 * 23.5 + sum(7 * (22 - l + 1.5) for l in range(22)) + 1.5
        print("bench_target: %-22s      22 layers (estimate): 157 passes, %.0f block-units x %.2f s = %.0f s"
              % ("TinyLlama-1.1B", units, unit, units * unit))
PY
    done
}

"$QKIT" convert "$SHARED/models/stories3M" -o "$TMP/s3m.gguf" --outtype f32 -q || exit 1
"$QKIT" imatrix "$TMP/s3m.gguf" -f "$C" --ctx 256 -o "$TMP/s3m-imx.gguf" -q || exit 1
"$QKIT" quantize -q --imatrix "$TMP/s3m-imx.gguf" "$TMP/s3m.gguf" "$TMP/q4km.gguf" Q4_K_M || exit 1
run "stories3M Q4_K_M size" "$TMP/s3m.gguf" --imatrix "$TMP/s3m-imx.gguf" \
    --target-size "$(stat -c %s "$TMP/q4km.gguf")"

"$QKIT" synth --config "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" --layers 2 \
    --dtype bf16 -q -o "$TMP/tl" || exit 1
"$QKIT" convert "$TMP/tl" -o "$TMP/tl.gguf" --outtype f16 -q || exit 1
rm -rf "$TMP/tl"
run "TinyLlama-1.1B 2 layers" "$TMP/tl.gguf" --target-bpw 4.5 --calib-chunks 2
