#!/bin/sh
# bench_speed.sh — engine throughput side by side with llama-perplexity: a synthetic
# TinyLlama-1.1B (22 layers) in F32, F16, BF16, Q8_0, Q4_K_M and IQ4_XS, and two blocks at full
# width of Mixtral-8x7B and Qwen3-30B-A3B in Q8_0 and Q4_K_M; n_ctx 512, one chunk, 2 threads.
# Both tools run on the same file and text; the figure is tokens per second of wall time for the
# whole run (load, forward pass, scoring), best of BENCH_REPEAT (default 2), and the achieved
# GFLOP/s (2 per weight of every matrix a token passes through — experts: the routed ones — plus
# attention over 256 keys on average) next to the machine's FP32 FMA peak (bench_peak).
#
# llama-perplexity is found through LLAMA_PERPLEXITY (a path; the column is skipped when unset):
# nothing in this repository builds or fetches it. Needs ../shared (configs, text) and about 40 GB
# in /tmp; everything is removed at the end. BENCH_SPEED=0 skips the bench.
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
[ "${BENCH_SPEED:-1}" = 0 ] && { echo "bench_speed: skipped (BENCH_SPEED=0)"; exit 0; }
[ -d "$SHARED/hf-configs" ] || { echo "bench_speed: ../shared missing, skipped"; exit 0; }
TMP=$(mktemp -d /tmp/qkit-bench-speed-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
T=$SHARED/text/tinystories-eval.txt
export OMP_WAIT_POLICY=passive
LP=${LLAMA_PERPLEXITY:-}
[ -n "$LP" ] && [ ! -x "$LP" ] && { echo "bench_speed: LLAMA_PERPLEXITY=$LP is not executable"; LP=; }

# prepare NAME CONFIG LAYERS TYPES: a synthetic BF16 checkpoint, its GGUFs in the float TYPES and
# the quantized TYPES (from f32 for the dense model, from f16 for the mixtures).
prepare() {
    name=$1 config=$2 layers=$3
    shift 3
    gen=
    [ -f "$(dirname "$config")/tokenizer.json" ] || [ -f "$(dirname "$config")/tokenizer.model" ] || gen=--tokenizer-gen
    "$QKIT" synth --config "$config" --dtype bf16 --layers "$layers" $gen -q -o "$TMP/$name-hf" || exit 1
    base=f16
    for t in "$@"; do case $t in f32) base=f32 ;; esac; done
    "$QKIT" convert -q "$TMP/$name-hf" -o "$TMP/$name-$base.gguf" --outtype $base || exit 1
    for t in "$@"; do
        case $t in
        "$base") ;;
        f16 | bf16 | f32) "$QKIT" convert -q "$TMP/$name-hf" -o "$TMP/$name-$t.gguf" --outtype "$t" || exit 1 ;;
        *) "$QKIT" quantize -q "$TMP/$name-$base.gguf" "$TMP/$name-$t.gguf" "$t" || exit 1 ;;
        esac
    done
    cp "$config" "$TMP/$name.config.json"
    rm -rf "$TMP/$name-hf"
}

prepare tinyllama "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json" 22 f32 f16 bf16 Q8_0 Q4_K_M IQ4_XS
prepare mixtral "$SHARED/hf-configs/Mixtral-8x7B-v0.1/config.json" 2 f16 Q8_0 Q4_K_M
prepare qwen3moe "$SHARED/hf-configs/Qwen3-30B-A3B/config.json" 2 f16 Q8_0 Q4_K_M

python3 - "$QKIT" "$LP" "$T" "$TMP" "${BENCH_REPEAT:-2}" <<'PY'
import json, os, re, subprocess, sys, time
qkit, lp, text, tmp, repeat = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
CTX, THREADS = 512, 2

def flops_per_token(cfg, layers):
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or d // nh
    att = d * nh * hd * 2 + d * nkv * hd * 2            # q, o; k, v
    ne = cfg.get("num_local_experts") or cfg.get("num_experts") or 0
    if ne:
        k = cfg.get("num_experts_per_tok", 2)
        ff = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
        ffn = k * 3 * d * ff + d * ne                   # routed experts and the router
    else:
        ffn = 3 * d * cfg["intermediate_size"]
    head = d * cfg["vocab_size"]
    scores = 2 * nh * hd * (CTX + 1) / 2                # q·k and p·v over the visible keys
    return 2 * (layers * (att + ffn) + head) + 2 * layers * scores

def peak():
    # measured by bench_peak (a VM's /proc/cpuinfo shows a nominal clock): best of its runs
    exe = os.path.join(os.path.dirname(qkit), "bench", "bench_peak")
    if os.access(exe, os.X_OK):
        out = subprocess.run([exe], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(THREADS))).stdout
        m = re.search(r"bench_peak: (\d+) GFLOP/s", out)
        if m:
            return float(m.group(1)), "measured"
    mhz = max(float(l.split(":")[1]) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz"))
    return THREADS * mhz / 1000 * 32, "nominal"

def best(cmd):
    t = float("inf")
    for _ in range(repeat):
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True)
        if r.returncode:
            return None
        t = min(t, time.monotonic() - t0)
    return t

pk, how = peak()
print("bench_speed: n_ctx %d, 1 chunk (%d tokens), %d threads; FP32 FMA peak %.0f GFLOP/s (%s)" % (CTX, CTX, THREADS, pk, how))
print("| model | type | qkit tok/s | llama-perplexity tok/s | ratio | qkit GFLOP/s | % of peak |")
print("|---|---|---|---|---|---|---|")
rows = [("tinyllama", 22, ["f32", "f16", "bf16", "Q8_0", "Q4_K_M", "IQ4_XS"]),
        ("mixtral", 2, ["f16", "Q8_0", "Q4_K_M"]), ("qwen3moe", 2, ["f16", "Q8_0", "Q4_K_M"])]
for name, layers, types in rows:
    cfg = json.load(open(os.path.join(tmp, name + ".config.json")))
    fl = flops_per_token(cfg, layers)
    for t in types:
        m = os.path.join(tmp, "%s-%s.gguf" % (name, t))
        if not os.path.exists(m):
            continue
        tq = best([qkit, "perplexity", m, "-f", text, "--ctx", str(CTX), "--chunks", "1", "--threads", str(THREADS), "-q"])
        tl = best([lp, "-m", m, "-f", text, "-c", str(CTX), "--chunks", "1", "-t", str(THREADS), "-b", str(CTX)]) if lp else None
        q = CTX / tq if tq else 0
        l = CTX / tl if tl else None
        print("| %s (%d layers) | %s | %.1f | %s | %s | %.0f | %.0f %% |" % (
            name, layers, t, q, "%.1f" % l if l else "—", "%.2f×" % (q / l) if l else "—",
            q * fl / 1e9, 100 * q * fl / 1e9 / pk))
        sys.stdout.flush()
PY
