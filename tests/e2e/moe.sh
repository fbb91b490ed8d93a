# End-to-end checks of mixtures of experts through the CLI: Mixtral (llama.cpp's golden
# perplexity) and the trained Qwen3-MoE storiesMoE (the independent reference's running values and
# log-probabilities), from GGUF and straight from the HF folder; quantize of 3-D expert tensors;
# inspect; bad input.
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: moe e2e skipped"; exit 0; }
MX=$SHARED/models/mixtral-tiny
SM=$SHARED/models/storiesMoE
T=$SHARED/text/tinystories-eval.txt

check mx-convert 0 "$QKIT" convert "$MX" -o "$TMP/mx.gguf" --outtype f32
check mx-ppl 0 "$QKIT" perplexity "$TMP/mx.gguf" -f "$T" --ctx 256 --chunks 8
expect_running mx-ppl-golden "696.2324 699.4291 703.6508 708.8301 705.9715 704.1393 711.1372 703.2413" 0.00015
# quantize of the 3-D tensors gives the one-pass convert's tensors (both are llama-quantize's
# choices; the unit tests compare the bytes with llama.cpp's)
check mx-quantize 0 "$QKIT" quantize "$TMP/mx.gguf" "$TMP/mx-q4.gguf" Q4_K_M
check mx-convert-q4 0 "$QKIT" convert "$MX" -o "$TMP/mx-q4c.gguf" --outtype q4_k_m
"$QKIT" inspect "$TMP/mx-q4.gguf" --tensors | awk '/^blk|^output|^token/ {$NF = ""; print}' | sort >"$TMP/a.t"
"$QKIT" inspect "$TMP/mx-q4c.gguf" --tensors | awk '/^blk|^output|^token/ {$NF = ""; print}' | sort >"$TMP/b.t"
check mx-q4-same-tensors 0 cmp "$TMP/a.t" "$TMP/b.t"
check mx-q4-has-3d-q4k 0 grep -q "blk.0.ffn_gate_exps.weight q4_K 256 x 512 x 4" "$TMP/a.t"
check mx-q4-ppl 0 "$QKIT" perplexity "$TMP/mx-q4.gguf" -f "$T" --ctx 256 --chunks 2 --json
expect_json mx-q4-ppl-json 'd["ppl"] > 1'

check sm-convert 0 "$QKIT" convert "$SM" -o "$TMP/sm.gguf" --outtype f32
RUNNING="[1]3.7130,[2]3.4035,[3]3.0527,[4]3.0255,[5]3.0689,[6]3.0127,[7]3.0791,[8]3.0392,"
check sm-ppl-gguf 0 "$QKIT" perplexity "$TMP/sm.gguf" -f "$T" --ctx 256 --chunks 8
expect_out sm-ppl-gguf-golden "$RUNNING"
check sm-ppl-hf 0 "$QKIT" perplexity "$SM" -f "$T" --ctx 256 --chunks 8
expect_out sm-ppl-hf-golden "$RUNNING"
# against the independent implementation's log-probabilities: mean KLD near 1e-6, same top token
check sm-verify-golden 0 "$QKIT" verify --ref-logits "$SHARED/golden/storiesMoE/eval-ctx256-8chunks.logits" \
    "$TMP/sm.gguf" "$SM" -f "$T" --ctx 256 --chunks 8 --max-kld 0.00001 --min-top1 99.9
check sm-quantize 0 "$QKIT" quantize "$TMP/sm.gguf" "$TMP/sm-q4.gguf" Q4_K_M --json
expect_out sm-quantize-exps '"blk.0.ffn_down_exps.weight"'
check sm-verify-q4 0 "$QKIT" verify --ref "$SM" "$TMP/sm-q4.gguf" -f "$T" --ctx 256 --chunks 4 --max-kld 0.1 --json
expect_json sm-verify-q4-json 'd["candidates"][0]["kld_mean"] >= 0'

check sm-inspect 0 "$QKIT" inspect "$SM" --json
cp "$OUT" "$TMP/inspect.json"
check sm-inspect-arch 0 grep -q '"gguf_architecture":.*"qwen3moe"' "$TMP/inspect.json"
check sm-inspect-experts 0 grep -q '"experts":.*8,' "$TMP/inspect.json"
check sm-inspect-gguf 0 "$QKIT" inspect "$TMP/sm.gguf" --tensors
expect_out sm-inspect-3d "256 x 256 x 8"

# bad input: one expert missing → exit 2, one line naming it, nothing written
mkdir -p "$TMP/broken"
cp "$SM"/*.json "$SM"/tokenizer.model "$TMP/broken/"
sed 's/"num_experts": 8/"num_experts": 9/' "$SM/config.json" >"$TMP/broken/config.json"
cp "$SM/model.safetensors" "$TMP/broken/"
check sm-bad-expert-count 2 "$QKIT" convert "$TMP/broken" -o "$TMP/bad.gguf"
expect_err sm-bad-expert-count-msg "config.json implies [9, 256]"
check sm-bad-nothing-written 1 test -e "$TMP/bad.gguf"
sed 's/"num_experts_per_tok": 2/"num_experts_per_tok": 0/' "$SM/config.json" >"$TMP/broken/config.json"
check sm-bad-used-zero 2 "$QKIT" convert "$TMP/broken" -o "$TMP/bad.gguf"
expect_err sm-bad-used-zero-msg "'num_experts_per_tok' must be an integer in [1, 65536]"
check sm-bad-used-zero-engine 2 "$QKIT" perplexity "$TMP/broken" -f "$T" --ctx 256 --chunks 1

# Llama 4: llama4-tiny against the independent implementation (transformers semantics), from the
# f32 GGUF and from the HF folder; a quantized file runs; a Maverick-style variant (dense and MoE
# blocks interleaved, 8 experts, no q/k norm) made with synth reads the same from GGUF and HF.
L4=$SHARED/models/llama4-tiny
check l4-convert 0 "$QKIT" convert "$L4" -o "$TMP/l4.gguf" --outtype f32 --quiet
check l4-ppl-gguf 0 "$QKIT" perplexity "$TMP/l4.gguf" -f "$T" --ctx 256 --chunks 8
expect_out l4-ppl-gguf-first "[1]722.3640,"
expect_out l4-ppl-gguf-last "[8]890.8729,"
check l4-ppl-hf 0 "$QKIT" perplexity "$L4" -f "$T" --ctx 256 --chunks 8
expect_out l4-ppl-hf-last "[8]890.8729,"
check l4-verify-golden 0 "$QKIT" verify --ref-logits "$SHARED/golden/llama4-tiny/eval-ctx256-8chunks.logits" \
    "$TMP/l4.gguf" "$L4" -f "$T" --ctx 256 --chunks 8 --max-kld 0.00001 --min-top1 99.9
check l4-quantize 0 "$QKIT" quantize "$TMP/l4.gguf" "$TMP/l4-q8.gguf" Q8_0
check l4-verify-q8 0 "$QKIT" verify --ref "$TMP/l4.gguf" "$TMP/l4-q8.gguf" -f "$T" --ctx 256 --chunks 2 --max-kld 0.05

sed -e 's/"interleave_moe_layer_step": 1/"interleave_moe_layer_step": 2/' \
    -e 's/"num_local_experts": 4/"num_local_experts": 8/' -e 's/"use_qk_norm": true/"use_qk_norm": false/' \
    "$L4/config.json" >"$TMP/mav.json"
check mav-synth 0 "$QKIT" synth --config "$TMP/mav.json" --tokenizer-from "$L4" -o "$TMP/mav" -q
check mav-convert 0 "$QKIT" convert "$TMP/mav" -o "$TMP/mav.gguf" --outtype f32 --quiet
check mav-inspect 0 "$QKIT" inspect "$TMP/mav.gguf" --tensors
cp "$OUT" "$TMP/mav.txt"
check mav-dense-block0 0 grep -q "^blk.0.ffn_gate.weight .*256 x 512" "$TMP/mav.txt"
check mav-moe-block1 0 grep -q "^blk.1.ffn_gate_exps.weight .*256 x 256 x 8" "$TMP/mav.txt"
check mav-no-experts-block2 1 grep -q "^blk.2.ffn_gate_exps" "$TMP/mav.txt"
check mav-qk-norm-off 0 grep -q "llama4.attention.use_qk_norm *false" "$TMP/mav.txt"
check mav-gguf-equals-hf 0 "$QKIT" verify --ref "$TMP/mav" "$TMP/mav.gguf" -f "$T" --ctx 128 --chunks 2 \
    --max-kld 0.000001 --min-top1 100
