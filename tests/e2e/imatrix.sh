# End-to-end checks of `qkit imatrix`: outputs and what reads them (quantize, merging), byte
# identity across thread counts, chunk ranges and GGUF/HF sources, a mixture of experts with
# experts no token reaches, and bad input (one line, exit 2 or 3, nothing at the output path).
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: imatrix e2e skipped"; exit 0; }
M=$SHARED/models/stories260K.gguf
HF=$SHARED/models/stories260K
head -c 30000 "$SHARED/text/tinystories-eval.txt" >"$TMP/text.txt" # enough for a few chunks
T=$TMP/text.txt
# nothing_at NAME PATH: neither the file nor a temporary of it exists.
nothing_at() {
    if [ -e "$2" ] || ls "$(dirname "$2")" | grep -q "$(basename "$2")\.tmp-"; then echo "FAIL $1: $2 written"
    else echo "PASS $1"; fi
}

# ---- outputs --------------------------------------------------------------------------------
check imx-runs 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 6 -o "$TMP/a.gguf"
expect_out imx-summary "imatrix: 6 chunks of 128 tokens (768 tokens)"
expect_out imx-table "blk.4.ffn_down.weight"
check imx-json 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 6 -o "$TMP/j.gguf" --json
expect_json imx-json-fields 'd["chunks"] == 6 and d["tokens"] == 768 and d["tokens_per_second"] > 0 and d["entries"] == 35 and d["experts"] is None and all(0 < t["frac50"] <= 1 and t["max"] >= t["mean"] > 0 and t["tokens"] == 768 for t in d["tensors"])'
check imx-quiet 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 6 -o "$TMP/q.gguf" -q
if [ -s "$OUT" ]; then echo "FAIL imx-quiet-silent"; else echo "PASS imx-quiet-silent"; fi
check imx-same-json-file 0 cmp "$TMP/a.gguf" "$TMP/j.gguf"
check imx-inspect 0 "$QKIT" inspect "$TMP/a.gguf" --json
expect_json imx-gguf-keys 'd["metadata"]["general.type"] == "imatrix" and d["metadata"]["imatrix.chunk_count"] == 6 and d["metadata"]["imatrix.chunk_size"] == 128'

# the same bytes for any thread count, from the HF folder, and from jobs over chunk ranges merged
check imx-threads-1 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 6 -o "$TMP/t1.gguf" --threads 1
check imx-threads-same 0 cmp "$TMP/a.gguf" "$TMP/t1.gguf"
# (the HF folder keeps the checkpoint's q/k row order: the attention's sums run in another order,
# so its figures agree to rounding, not bit for bit)
check imx-hf 0 "$QKIT" imatrix "$HF" -f "$T" --ctx 128 --chunks 6 -o "$TMP/hf.gguf" --json
expect_json imx-hf-entries 'd["entries"] == 35 and d["tokens"] == 768'
check imx-range-a 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunk-range 0:1 -o "$TMP/r1.gguf" -q
check imx-range-b 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunk-range 2:3 -o "$TMP/r2.gguf" -q --threads 1
check imx-range-c 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunk-range 4:5 -o "$TMP/r3.gguf" -q
check imx-merge 0 "$QKIT" imatrix "$M" --in-file "$TMP/r3.gguf" --in-file "$TMP/r1.gguf" --in-file "$TMP/r2.gguf" -o "$TMP/m.gguf"
check imx-merge-same 0 cmp "$TMP/a.gguf" "$TMP/m.gguf"
check imx-merge-run 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunk-range 2:5 --in-file "$TMP/r1.gguf" -o "$TMP/m2.gguf" -q
check imx-merge-run-same 0 cmp "$TMP/a.gguf" "$TMP/m2.gguf"

# the legacy layout, and quantize reading both
check imx-dat 0 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 6 -o "$TMP/a.dat" --output-format dat -q
check imx-quantize-gguf 0 "$QKIT" quantize --imatrix "$TMP/a.gguf" "$M" "$TMP/q1.gguf" Q4_K_M --json
expect_json imx-quantize-gguf-used 'd["imatrix"]["entries"] == 35 and d["imatrix"]["chunks"] == 6'
check imx-quantize-dat 0 "$QKIT" quantize --imatrix "$TMP/a.dat" "$M" "$TMP/q2.gguf" Q4_K_M --json
expect_json imx-quantize-dat-used 'd["imatrix"]["format"] == "legacy" and d["imatrix"]["entries"] == 35'
check imx-merge-dat 0 "$QKIT" imatrix "$M" --in-file "$TMP/a.dat" --ctx 128 -o "$TMP/fromdat.gguf" -q

# ---- a mixture of experts: 32 experts, top-1, 16 tokens: most experts see no token ------------
cat >"$TMP/moe.json" <<'EOF'
{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 256,
 "intermediate_size": 512, "moe_intermediate_size": 256, "num_experts": 32, "num_experts_per_tok": 1,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
 "vocab_size": 512, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": false}
EOF
check moe-synth 0 "$QKIT" synth --config "$TMP/moe.json" --tokenizer-gen --dtype f32 -q -o "$TMP/moe"
check moe-convert 0 "$QKIT" convert "$TMP/moe" -o "$TMP/moe.gguf" --outtype f32 -q
check moe-imatrix 0 "$QKIT" imatrix "$TMP/moe.gguf" -f "$T" --ctx 16 --chunks 1 -o "$TMP/moe-im.gguf" --json
expect_json moe-unrouted 'd["experts"]["total"] == 64 and d["experts"]["unrouted"] >= 32 and any(t["unseen"] > 0 for t in d["tensors"])'
err_has() { if grep -qF -- "$2" "$ERR"; then echo "PASS $1"; else echo "FAIL $1: stderr lacks '$2'"; head -c 2000 "$ERR"; fi; }
err_has moe-unrouted-warning "were never routed a token"
check moe-quantize 0 "$QKIT" quantize --imatrix "$TMP/moe-im.gguf" "$TMP/moe.gguf" "$TMP/moe-q4.gguf" Q4_K_M
err_has moe-quantize-warning "expert matrices saw no token during calibration: quantized with uniform importance weights"
check moe-q4-ppl 0 "$QKIT" perplexity "$TMP/moe-q4.gguf" -f "$T" --ctx 64 --chunks 2 --json
expect_json moe-q4-ppl-finite 'd["ppl"] is not None and d["ppl"] > 1'
check moe-merge-same 0 "$QKIT" imatrix "$TMP/moe.gguf" --in-file "$TMP/moe-im.gguf" -o "$TMP/moe-im2.gguf" -q
check moe-merge-identical 0 cmp "$TMP/moe-im.gguf" "$TMP/moe-im2.gguf"

# ---- bad input: one line, exit 2 (3 for I/O), nothing written ---------------------------------
O=$TMP/o/bad.gguf
mkdir "$TMP/o"
head -c 100 "$T" >"$TMP/short.txt"
check bad-short-text 2 "$QKIT" imatrix "$M" -f "$TMP/short.txt" --ctx 128 -o "$O"
expect_err bad-short-text-msg "fewer than one chunk: at least 128 are needed (--ctx 128)"
nothing_at bad-short-text-nothing "$O"
check bad-range 2 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunk-range 5000:5001 -o "$O"
expect_err bad-range-msg "is outside the text's"
check bad-range-syntax 2 "$QKIT" imatrix "$M" -f "$T" --chunk-range 3:1 -o "$O"
check bad-no-text 2 "$QKIT" imatrix "$M" -o "$O"
check bad-other-model 2 "$QKIT" imatrix "$M" --in-file "$TMP/moe-im.gguf" -o "$O"
expect_err bad-other-model-msg "moe-im.gguf: collected on another model (model id"
nothing_at bad-other-model-nothing "$O"
check s3m-imatrix 0 "$QKIT" imatrix "$SHARED/models/stories3M" -f "$T" --ctx 64 --chunks 1 -o "$TMP/s3m.gguf" -q
# the legacy layout records no model id: the names and shapes give another model away
check s3m-imatrix-dat 0 "$QKIT" imatrix "$SHARED/models/stories3M" -f "$T" --ctx 64 --chunks 1 -o "$TMP/s3m.dat" --output-format dat -q
check bad-other-model-dat 2 "$QKIT" imatrix "$M" --ctx 64 --in-file "$TMP/s3m.dat" -o "$O"
expect_err bad-other-model-dat-msg "(an importance matrix of another model?)"
# llama-imatrix's --process-output: output.weight too (stories3M's output is not tied)
check s3m-process-output 0 "$QKIT" imatrix "$SHARED/models/stories3M" -f "$T" --ctx 64 --chunks 1 \
    -o "$TMP/s3m-out.gguf" --process-output --json
expect_json s3m-process-output-entry 'd["entries"] == 29 and any(t["name"] == "output.weight" and t["n_per_mat"] == 256 for t in d["tensors"])'
check bad-other-shapes 2 "$QKIT" imatrix "$M" -f "$T" --ctx 64 --chunks 1 --in-file "$TMP/s3m.gguf" -o "$O"
expect_err bad-other-shapes-msg "s3m.gguf: collected on another model (model id"
nothing_at bad-other-shapes-nothing "$O"
check bad-chunk-size 2 "$QKIT" imatrix "$M" -f "$T" --ctx 64 --chunks 1 --in-file "$TMP/a.gguf" -o "$O"
expect_err bad-chunk-size-msg "chunks of 128 tokens, but the statistics merged so far used chunks of 64"
head -c 1500 "$TMP/a.gguf" >"$TMP/trunc.gguf"
check bad-truncated 2 "$QKIT" imatrix "$M" --in-file "$TMP/trunc.gguf" -o "$O"
expect_err bad-truncated-msg "trunc.gguf"
nothing_at bad-truncated-nothing "$O"
head -c 100 "$TMP/a.dat" >"$TMP/trunc.dat"
check bad-truncated-dat 2 "$QKIT" imatrix "$M" --in-file "$TMP/trunc.dat" -o "$O"
expect_err bad-truncated-dat-msg "trunc.dat"
printf '\377\377\377\177garbage' >"$TMP/hostile.dat"
check bad-hostile 2 "$QKIT" imatrix "$M" --in-file "$TMP/hostile.dat" -o "$O"
expect_err bad-hostile-msg "hostile.dat"
nothing_at bad-hostile-nothing "$O"
check bad-missing-in 3 "$QKIT" imatrix "$M" --in-file "$TMP/nope.gguf" -o "$O"
check bad-output-dir 3 "$QKIT" imatrix "$M" -f "$T" --ctx 128 --chunks 1 -o "$TMP/no/such/out.gguf"
cp "$M" "$TMP/model.gguf"
S=$(cksum <"$TMP/model.gguf")
check bad-output-is-model 2 "$QKIT" imatrix "$TMP/model.gguf" -f "$T" --ctx 128 --chunks 1 -o "$TMP/model.gguf"
expect_err bad-output-is-model-msg "would destroy the input"
if [ "$(cksum <"$TMP/model.gguf")" = "$S" ]; then echo "PASS bad-output-is-model-untouched"; else echo "FAIL bad-output-is-model-untouched"; fi
# a NaN in a norm weight of block 1: every activation of column 3 entering block 1 is NaN
python3 - "$TMP/model.gguf" <<'EOF'
import struct, sys
p = sys.argv[1]; d = bytearray(open(p, "rb").read())
def u(f, o): return struct.unpack_from(f, d, o)[0]
def s(o): n = u("<Q", o); return d[o + 8:o + 8 + n].decode(), o + 8 + n
def skip(t, o):
    if t == 8: return s(o)[1]
    if t == 9:
        et, n = u("<I", o), u("<Q", o + 4); o += 12
        for _ in range(n): o = skip(et, o)
        return o
    return o + {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}[t]
nt, nkv = u("<Q", 8), u("<Q", 16); o = 24
for _ in range(nkv): k, o = s(o); o = skip(u("<I", o), o + 4)
infos = {}
for _ in range(nt):
    n, o = s(o); nd = u("<I", o); o += 4 + 8 * nd; t = u("<I", o); off = u("<Q", o + 4); o += 12
    infos[n] = off
base = (o + 31) // 32 * 32
struct.pack_into("<f", d, base + infos["blk.1.attn_norm.weight"] + 12, float("nan"))
open(p, "wb").write(d)
EOF
check bad-nan 2 "$QKIT" imatrix "$TMP/model.gguf" -f "$T" --ctx 128 --chunk-range 3:4 -o "$O"
expect_err bad-nan-msg "chunk 3: tensor 'blk.1.attn_q.weight': input column 3 holds a non-finite activation"
nothing_at bad-nan-nothing "$O"
