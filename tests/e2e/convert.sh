#!/bin/sh
# convert.sh — end-to-end checks of `qkit convert` and `qkit tokenize` through the binary:
# outputs, split parts, JSON, exit codes, one-line errors and no output file on bad input.
# Prints "PASS name" or "FAIL name" per check (tests/run.sh counts them).
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
S260="$SHARED/models/stories260K"
S3M="$SHARED/models/stories3M"
if [ ! -d "$S260" ] || [ ! -d "$S3M" ]; then
    echo "shared data missing: $S260 (convert.sh skipped)"
    exit 0
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }

# expect_bad NAME FRAGMENT OUTPUT CMD...: exit 2, exactly one line on stderr holding FRAGMENT,
# nothing (not even a temporary) at OUTPUT.
expect_bad() {
    name=$1 frag=$2 out=$3
    shift 3
    "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    lines=$(wc -l <"$T/stderr")
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -qF -- "$frag" "$T/stderr" &&
        ! ls "$out"* >/dev/null 2>&1; then
        pass "$name"
    else
        fail "$name" "exit $rc, $lines stderr lines: $(cat "$T/stderr")"
    fi
}

# A folder with stories260K's config and tokenizer, and no weights.
model_dir() {
    mkdir -p "$1"
    cp "$S260/config.json" "$S260/tokenizer.model" "$S260/tokenizer_config.json" "$1/"
}

# Eight little-endian bytes of $1.
le64() {
    n=$1 i=0
    while [ $i -lt 8 ]; do
        printf "\\$(printf %03o $((n % 256)))"
        n=$((n / 256)) i=$((i + 1))
    done
}

# mkst FILE NAME DTYPE SHAPE NBYTES: a one-tensor safetensors file of zeros.
mkst() {
    hdr="{\"$2\":{\"dtype\":\"$3\",\"shape\":[$4],\"data_offsets\":[0,$5]}}"
    { le64 ${#hdr}; printf '%s' "$hdr"; head -c "$5" /dev/zero; } >"$1"
}

# ---- conversions ------------------------------------------------------------------------------

out="$T/s260.gguf"
if "$QKIT" convert "$S260" -o "$out" --outtype f32 >"$T/stdout" 2>"$T/stderr" &&
    grep -q "47 tensors, f32" "$T/stdout" && [ ! -s "$T/stderr" ] &&
    "$QKIT" inspect "$out" | grep -q '47 tensors, 260032 parameters'; then
    pass convert_stories260K_f32
else
    fail convert_stories260K_f32 "$(cat "$T/stderr")"
fi

# rows of 256: every quantization type fits (stories260K's 172-wide rows do not fit q8_0)
if "$QKIT" convert "$S3M" -o "$T/q8.gguf" --outtype q8_0 --json >"$T/stdout" 2>"$T/stderr" &&
    grep -q '"outtype":"Q8_0"' "$T/stdout" && grep -q '"file_type":7' "$T/stdout"; then
    pass convert_json_q8_0
else
    fail convert_json_q8_0 "$(cat "$T/stdout" "$T/stderr")"
fi

if "$QKIT" convert "$S260" -o "$T/split.gguf" --outtype f32 --split-max-size 300K --quiet 2>"$T/stderr" &&
    n=$(ls "$T"/split-0000?-of-0000?.gguf | wc -l) && [ "$n" -ge 3 ] &&
    "$QKIT" inspect "$T/split-00001-of-0000$n.gguf" | grep -q "47 tensors, 260032 parameters"; then
    pass convert_split_parts
else
    fail convert_split_parts "$(cat "$T/stderr")"
fi

if "$QKIT" synth --help >/dev/null 2>&1 && [ -f "$SHARED/hf-configs/SmolLM2-135M/config.json" ]; then
    if "$QKIT" synth --config "$SHARED/hf-configs/SmolLM2-135M/config.json" --layers 1 \
        --tokenizer-from "$SHARED/hf-configs/TinyLlama-1.1B-Chat-v1.0" -o "$T/smol" --quiet >/dev/null 2>&1 &&
        "$QKIT" convert "$T/smol" -o "$T/smol.gguf" --outtype q4_k_m --quiet 2>/dev/null &&
        "$QKIT" inspect "$T/smol.gguf" >"$T/stdout" &&
        grep -q 'llama.rope.freq_base *100000' "$T/stdout" &&
        grep -q 'general.file_type *15' "$T/stdout"; then
        pass convert_synth_smollm2_q4_k_m
    else
        fail convert_synth_smollm2_q4_k_m
    fi
fi

# ---- tokenize ---------------------------------------------------------------------------------

if [ "$("$QKIT" tokenize "$S260" -p "Hello world" --ids --no-bos)" = "[346, 306, 414, 263, 304, 341]" ] &&
    [ "$("$QKIT" tokenize "$out" -p "Hello world" --ids)" = "[1, 346, 306, 414, 263, 304, 341]" ]; then
    pass tokenize_ids_folder_and_gguf
else
    fail tokenize_ids_folder_and_gguf
fi

# one `id -> 'piece'` line per token; the pieces after BOS spell the text with its dummy prefix
"$QKIT" tokenize "$S260" -p "Hello world" >"$T/pieces"
if [ "$(head -n 1 "$T/pieces")" = "     1 -> '<s>'" ] &&
    [ "$(sed -n "2,\$s/^ *[0-9][0-9]* -> '\(.*\)'\$/\1/p" "$T/pieces" | tr -d '\n')" = " Hello world" ]; then
    pass tokenize_pieces
else
    fail tokenize_pieces "$(cat "$T/pieces")"
fi

printf 'Once upon a time' >"$T/text.txt"
if [ "$("$QKIT" tokenize "$S260" -f "$T/text.txt" --ids --no-bos)" = \
    "$("$QKIT" tokenize "$S260" -p 'Once upon a time' --ids --no-bos)" ]; then
    pass tokenize_file_equals_prompt
else
    fail tokenize_file_equals_prompt
fi

expect_bad tokenize_needs_text "exactly one of -p TEXT and -f FILE" "$T/none" "$QKIT" tokenize "$S260"

# ---- bad input --------------------------------------------------------------------------------

expect_bad bad_usage_no_output "-o OUT.gguf is required" "$T/none" "$QKIT" convert "$S260"
expect_bad bad_not_a_folder "config.json: not found" "$T/x.gguf" "$QKIT" convert "$T/nowhere" -o "$T/x.gguf"

mkdir -p "$T/no-config"
cp "$S260/model.safetensors" "$S260/tokenizer.model" "$T/no-config/"
expect_bad bad_missing_config "config.json: not found" "$T/x.gguf" "$QKIT" convert "$T/no-config" -o "$T/x.gguf"

model_dir "$T/no-weights"
expect_bad bad_missing_weights "no model.safetensors.index.json, model.safetensors" "$T/x.gguf" \
    "$QKIT" convert "$T/no-weights" -o "$T/x.gguf"

mkdir -p "$T/no-tokenizer"
cp "$S260/config.json" "$S260/model.safetensors" "$T/no-tokenizer/"
expect_bad bad_missing_tokenizer "no tokenizer.json, vocab.json or tokenizer.model" "$T/x.gguf" \
    "$QKIT" convert "$T/no-tokenizer" -o "$T/x.gguf"

model_dir "$T/gpt2"
cp "$S260/model.safetensors" "$T/gpt2/"
sed 's/LlamaForCausalLM/GPT2LMHeadModel/' "$S260/config.json" >"$T/gpt2/config.json"
expect_bad bad_unsupported_architecture "supported: LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Llama4ForConditionalGeneration, Llama4ForCausalLM" \
    "$T/x.gguf" "$QKIT" convert "$T/gpt2" -o "$T/x.gguf"

model_dir "$T/i32"
mkst "$T/i32/model.safetensors" model.embed_tokens.weight I32 "512,64" 131072
expect_bad bad_dtype_i32 "tensor 'model.embed_tokens.weight' has dtype I32" "$T/x.gguf" \
    "$QKIT" convert "$T/i32" -o "$T/x.gguf"

model_dir "$T/f8"
mkst "$T/f8/model.safetensors" model.embed_tokens.weight F8_E4M3 "512,64" 32768
expect_bad bad_dtype_f8 "FP8 tensor 'model.embed_tokens.weight' has no scale tensor" "$T/x.gguf" "$QKIT" convert "$T/f8" -o "$T/x.gguf"

model_dir "$T/shape"
mkst "$T/shape/model.safetensors" model.embed_tokens.weight F32 "500,64" 128000
expect_bad bad_shape "has shape [500, 64] but config.json implies [512, 64]" "$T/x.gguf" \
    "$QKIT" convert "$T/shape" -o "$T/x.gguf"

model_dir "$T/missing"
mkst "$T/missing/model.safetensors" model.embed_tokens.weight F32 "512,64" 131072
expect_bad bad_missing_tensor "missing tensor 'model.norm.weight'" "$T/x.gguf" \
    "$QKIT" convert "$T/missing" -o "$T/x.gguf"

model_dir "$T/unexpected"
mkst "$T/unexpected/model.safetensors" model.vision_tower.weight F32 "4" 16
expect_bad bad_unexpected_tensor "unexpected tensor 'model.vision_tower.weight'" "$T/x.gguf" \
    "$QKIT" convert "$T/unexpected" -o "$T/x.gguf"

model_dir "$T/index"
cp "$S260/model.safetensors" "$T/index/model-00001-of-00001.safetensors"
printf '{"weight_map": {"model.layers.7.mlp.up_proj.weight": "model-00001-of-00001.safetensors"}}' \
    >"$T/index/model.safetensors.index.json"
expect_bad bad_inconsistent_index "model.layers.7.mlp.up_proj.weight" "$T/x.gguf" \
    "$QKIT" convert "$T/index" -o "$T/x.gguf"

# NaN (bf16 0x7fc0) in row 3 of a weight: fine for f16 (llama.cpp copies it), an error when
# quantizing
mkdir -p "$T/nan"
cp "$S3M/config.json" "$S3M/tokenizer.model" "$S3M/tokenizer_config.json" "$S3M/model.safetensors" "$T/nan/"
chmod u+w "$T/nan/model.safetensors"
off=$("$QKIT" inspect "$T/nan/model.safetensors" --tensors | awk '$1 == "model.layers.0.mlp.up_proj.weight" { print $NF }')
printf '\300\177' | dd of="$T/nan/model.safetensors" bs=1 seek=$((off + 3 * 256 * 2 + 10)) conv=notrunc 2>/dev/null
expect_bad bad_nan_when_quantizing "tensor 'model.layers.0.mlp.up_proj.weight': row 3 holds NaN or Inf" "$T/x.gguf" \
    "$QKIT" convert "$T/nan" -o "$T/x.gguf" --outtype q8_0
if "$QKIT" convert "$T/nan" -o "$T/nan-f16.gguf" --outtype f16 --quiet 2>/dev/null; then
    pass nan_kept_in_f16
else
    fail nan_kept_in_f16
fi

expect_bad bad_outtype "unknown --outtype 'q9'" "$T/x.gguf" "$QKIT" convert "$S260" -o "$T/x.gguf" --outtype q9
expect_bad bad_split_size "--split-max-size needs a positive size" "$T/x.gguf" \
    "$QKIT" convert "$S260" -o "$T/x.gguf" --split-max-size lots
exit 0
