# End-to-end checks of `qkit awq`: the AutoAWQ and compressed-tensors folders decoded by an
# independent reader (tests/e2e/tools/w4_reader.py: round-to-nearest output within half a step
# of the original weights, both layouts the same floats), read back as models, folding that keeps
# the function, determinism, the same for a mixture of experts (storiesMoE: one packed linear per
# expert, routers f16), and bad input (one line, exit 2, nothing at OUT).
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: awq e2e skipped"; exit 0; }
M=$SHARED/models/stories3M
C=$SHARED/text/tinystories-calib.txt
E=$SHARED/text/tinystories-eval.txt
S="--samples 4 --seq-len 128"
SM="--samples 2 --seq-len 128"
NS=4 NL=128
# Under the sanitizers (CI time: each search takes minutes there) every search runs once on fewer
# tokens and a coarser grid: the second format with one thread, the one-thread GGUF, the layouts
# and the folds repeat code that the checks before them already ran.
[ -n "$SANITIZED" ] && S="--samples 2 --seq-len 64 --grid 4" SM="--samples 1 --seq-len 64 --grid 4" NS=2 NL=64
nothing_at() {
    if [ -e "$2" ] || ls "$(dirname "$2")" | grep -q "$(basename "$2")\.tmp-"; then echo "FAIL $1: $2 written"
    else echo "PASS $1"; fi
}
check awq-rtn 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/rtn-awq" --format awq --rtn $S -q
check ct-rtn 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/rtn-ct" --format ct --rtn $S -q
python3 tests/e2e/tools/w4_reader.py check "$TMP/rtn-awq" "$TMP/rtn-ct" "$M" 0.51 | sort | uniq -c | awk '{print $2, $3}' | sort -u
check awq-search 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/awq" --format awq $S --json
expect_json awq-json "d['samples'] == $NS and d['seq_len'] == $NL and d['blocks'] == 4 and d['groups'] == 12"
if [ -z "$SANITIZED" ]; then
check ct-search 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/ct" --format ct $S -q --threads 1
python3 tests/e2e/tools/w4_reader.py check "$TMP/awq" "$TMP/ct" - 0 | grep -c PASS | sed 's/^28$/PASS awq-ct-same-floats-after-search (28 linears)/;t;s/^/FAIL awq-ct-same-floats-after-search: /'
check awq-config 0 python3 -c 'import json,sys
q = json.load(open(sys.argv[1]))["quantization_config"]
assert q == {"quant_method": "awq", "zero_point": True, "group_size": 128, "bits": 4, "version": "gemm", "modules_to_not_convert": None}, q
c = json.load(open(sys.argv[2]))["quantization_config"]
w = c["config_groups"]["group_0"]["weights"]
assert c["quant_method"] == "compressed-tensors" and c["format"] == "pack-quantized" and c["ignore"] == ["lm_head"]
assert (w["num_bits"], w["group_size"], w["strategy"], w["symmetric"], w["type"]) == (4, 128, "group", False, "int")' "$TMP/awq/config.json" "$TMP/ct/config.json"
fi
check awq-tokenizer-copied 0 cmp "$M/tokenizer.model" "$TMP/awq/tokenizer.model"
# both folders are models: the same perplexity (the same floats), and verify measures them
check awq-ppl 0 "$QKIT" perplexity "$TMP/awq" -f "$E" --ctx 128 --chunks 4 --json
P1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$OUT")
if [ -z "$SANITIZED" ]; then
check ct-ppl 0 "$QKIT" perplexity "$TMP/ct" -f "$E" --ctx 128 --chunks 4 --json
expect_json awq-ct-same-ppl "d['ppl'] == $P1"
fi
check awq-verify 0 "$QKIT" verify --ref "$M" "$TMP/rtn-awq" "$TMP/awq" -f "$E" --ctx 128 --chunks 8 --json
expect_json awq-verify-json 'all(0 < c["kld_mean"] < 0.1 and c["top1"] > 80 for c in d["candidates"])'
check awq-inspect 0 "$QKIT" inspect "$TMP/awq"
# folding keeps the function: gguf:F32 (no quantization) against the model
if [ -z "$SANITIZED" ]; then
check fold-f32 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/fold.gguf" --format gguf:F32 $S -q
check fold-verify 0 "$QKIT" verify --ref "$M" "$TMP/fold.gguf" -f "$E" --ctx 128 --chunks 4 --json
expect_json fold-same-function 'abs(d["candidates"][0]["kld_mean"]) < 1e-6 and d["candidates"][0]["top1"] == 100'
fi
# gguf:TYPE with the searched type; deterministic across thread counts
check awq-gguf 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/a.gguf" --format gguf:Q4_K_M $S -q
if [ -z "$SANITIZED" ]; then
check awq-gguf-1t 0 "$QKIT" awq "$M" -f "$C" -o "$TMP/b.gguf" --format gguf:Q4_K_M $S -q --threads 1
check awq-gguf-deterministic 0 cmp "$TMP/a.gguf" "$TMP/b.gguf"
fi
check awq-gguf-ppl 0 "$QKIT" perplexity "$TMP/a.gguf" -f "$E" --ctx 128 --chunks 2 -q

# ---- mixture of experts: storiesMoE (Qwen3-MoE, 8 experts, top-2) --------------------------------
MOE=$SHARED/models/storiesMoE
check moe-rtn-awq 0 "$QKIT" awq "$MOE" -f "$C" -o "$TMP/moe-rtn-awq" --format awq --rtn $SM -q
check moe-rtn-ct 0 "$QKIT" awq "$MOE" -f "$C" -o "$TMP/moe-rtn-ct" --format ct --rtn $SM -q
# 4 blocks x (4 attention linears + 8 experts x 3) = 112 linears, each expert its own; two checks each
python3 tests/e2e/tools/w4_reader.py check "$TMP/moe-rtn-awq" "$TMP/moe-rtn-ct" "$MOE" 0.51 | grep -c '^PASS' |
    sed 's/^224$/PASS moe-rtn-within-half-a-step-awq-ct-same (112 linears)/;t;s/^/FAIL moe-rtn-within-half-a-step: passes: /'
check moe-awq 0 "$QKIT" awq "$MOE" -f "$C" -o "$TMP/moe-awq" --format awq $SM --json
expect_json moe-awq-json 'd["blocks"] == 4 and d["groups"] == 4 * (1 + 1 + 8)'
if [ -z "$SANITIZED" ]; then
check moe-ct 0 "$QKIT" awq "$MOE" -f "$C" -o "$TMP/moe-ct" --format ct $SM -q --threads 1
python3 tests/e2e/tools/w4_reader.py check "$TMP/moe-awq" "$TMP/moe-ct" - 0 | grep -c PASS |
    sed 's/^112$/PASS moe-awq-ct-same-floats-after-search (112 linears)/;t;s/^/FAIL moe-awq-ct-same-floats-after-search: /'
# experts under their checkpoint names, the routers f16 and left out of the quantization
check moe-layout 0 python3 -c 'import json,struct,sys
def hdr(d):
    b = open(d + "/model.safetensors", "rb").read(); return json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
a, c = hdr(sys.argv[1]), hdr(sys.argv[2])
for h, k in ((a, "qweight"), (c, "weight_packed")):
    assert all("model.layers.%d.mlp.experts.%d.%s.%s" % (l, e, p, k) in h for l in range(4) for e in range(8)
               for p in ("gate_proj", "up_proj", "down_proj")), k
    assert all(h["model.layers.%d.mlp.gate.weight" % l]["dtype"] == "F16" and
               h["model.layers.%d.mlp.gate.weight" % l]["shape"] == [8, 256] for l in range(4))
    assert not any(".experts.*" in n or n.startswith("model.layers.0.mlp.gate.q") for n in h)
qa = json.load(open(sys.argv[1] + "/config.json"))["quantization_config"]
qc = json.load(open(sys.argv[2] + "/config.json"))["quantization_config"]
assert qa["modules_to_not_convert"] == ["model.layers.%d.mlp.gate" % l for l in range(4)], qa
assert qc["ignore"] == ["model.layers.%d.mlp.gate" % l for l in range(4)] + ["lm_head"], qc' "$TMP/moe-awq" "$TMP/moe-ct"
check moe-awq-ppl 0 "$QKIT" perplexity "$TMP/moe-awq" -f "$E" --ctx 128 --chunks 4 --json
P2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$OUT")
check moe-ct-ppl 0 "$QKIT" perplexity "$TMP/moe-ct" -f "$E" --ctx 128 --chunks 4 --json
expect_json moe-awq-ct-same-ppl "d['ppl'] == $P2"
fi
check moe-verify 0 "$QKIT" verify --ref "$MOE" "$TMP/moe-rtn-awq" "$TMP/moe-awq" -f "$E" --ctx 128 --chunks 8 --json
expect_json moe-verify-json 'all(0 < c["kld_mean"] < 0.1 and c["top1"] > 80 for c in d["candidates"])'
# folding keeps the function: the router's columns are scaled with the experts' inputs
if [ -z "$SANITIZED" ]; then
check moe-fold-f32 0 "$QKIT" awq "$MOE" -f "$C" -o "$TMP/moe-fold.gguf" --format gguf:F32 $SM -q
check moe-fold-verify 0 "$QKIT" verify --ref "$MOE" "$TMP/moe-fold.gguf" -f "$E" --ctx 128 --chunks 4 --json
expect_json moe-fold-same-function 'abs(d["candidates"][0]["kld_mean"]) < 1e-6 and d["candidates"][0]["top1"] == 100'
fi

# ---- bad input ---------------------------------------------------------------------------------
check bad-gguf-to-awq 2 "$QKIT" awq "$TMP/a.gguf" -f "$C" -o "$TMP/bad" --format awq $S
expect_err bad-gguf-to-awq-msg "need the Hugging Face folder"
check bad-group 2 "$QKIT" awq "$M" -f "$C" -o "$TMP/bad" --format awq --group-size 96 $S
expect_err bad-group-msg "not a multiple of --group-size 96"
printf 'Once upon a time.' >"$TMP/short.txt"
check bad-short-text 2 "$QKIT" awq "$M" -f "$TMP/short.txt" -o "$TMP/bad" --format awq
expect_err bad-short-text-msg "are needed"
check bad-format 2 "$QKIT" awq "$M" -f "$C" -o "$TMP/bad" --format gguf:Q9_X
# mixtures whose experts do not fit the packing: rows per expert not a multiple of 8, expert
# columns not of the group size (synthetic storiesMoE shapes, one block)
for ff in 252 200; do
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["moe_intermediate_size"]=int(sys.argv[2]); json.dump(c, open(sys.argv[3],"w"))' \
        "$MOE/config.json" $ff "$TMP/moe$ff.json"
    "$QKIT" synth --config "$TMP/moe$ff.json" -o "$TMP/moe$ff" --tokenizer-from "$MOE" --layers 1 -q
done
check bad-moe-rows 2 "$QKIT" awq "$TMP/moe252" -f "$C" -o "$TMP/bad" --format awq $SM
expect_err bad-moe-rows-msg "'blk.0.ffn_gate_exps.weight': 252 output rows per expert are not a multiple of 8"
check bad-moe-group 2 "$QKIT" awq "$TMP/moe200" -f "$C" -o "$TMP/bad" --format ct $SM
expect_err bad-moe-group-msg "'blk.0.ffn_down_exps.weight': 200 input columns are not a multiple of --group-size 128"
nothing_at bad-nothing "$TMP/bad"
# a folder whose quantization_config or shapes do not fit is refused when read
mkdir -p "$TMP/b8"
cp "$TMP/awq"/* "$TMP/b8/"
python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["quantization_config"]["bits"]=8; json.dump(c, open(p,"w"))' "$TMP/b8/config.json"
check bad-bits 2 "$QKIT" perplexity "$TMP/b8" -f "$E" --ctx 128 --chunks 1
expect_err bad-bits-msg "only AWQ bits 4"
python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["quantization_config"]["bits"]=4; c["quantization_config"]["group_size"]=64; json.dump(c, open(p,"w"))' "$TMP/b8/config.json"
check bad-shapes 2 "$QKIT" perplexity "$TMP/b8" -f "$E" --ctx 128 --chunks 1
expect_err bad-shapes-msg "expected I32 [in/group, out/8]"
