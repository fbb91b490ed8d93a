#!/bin/sh
# End-to-end checks of `qkit synth` through the binary: exit codes, one-line errors, files written,
# byte-identical reruns, shards, --force, and an interrupted run leaving nothing behind.
# Prints PASS name / FAIL name per check (tests/run.sh counts them).
QKIT=${QKIT:-build/qkit}
SHARED=${QKIT_SHARED:-../shared}
CFGS=$SHARED/hf-configs
T=$(mktemp -d /tmp/qkit-e2e-synth-XXXXXX)
trap 'rm -rf "$T"' EXIT

check() { if [ "$2" = 0 ]; then echo "PASS $1"; else echo "FAIL $1"; fi; }
# usage: expect_fail NAME CODE FRAGMENT -- qkit arguments...
expect_fail() {
    name=$1 code=$2 frag=$3; shift 4
    "$QKIT" "$@" >"$T/out" 2>"$T/err"; rc=$?
    ok=0
    [ $rc -eq "$code" ] || { ok=1; echo "  $name: exit $rc, expected $code"; }
    [ "$(wc -l <"$T/err")" -eq 1 ] || { ok=1; echo "  $name: stderr is not one line:"; cat "$T/err"; }
    grep -qF -- "$frag" "$T/err" || { ok=1; echo "  $name: no '$frag' in: $(cat "$T/err")"; }
    check "$name" $ok
}
no_leftovers() { ! ls -d "$T"/*.tmp-* "$T"/*.old-* >/dev/null 2>&1; }

cat >"$T/config.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 160,
 "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "torch_dtype": "float32"}
EOF

"$QKIT" synth --help >/dev/null; check synth_help $?

"$QKIT" synth --config "$T/config.json" -o "$T/a" --seed 5 >"$T/out" 2>"$T/err"
check synth_small_runs $?
test -s "$T/a/config.json" && test -s "$T/a/model.safetensors" && ! test -e "$T/a/model.safetensors.index.json"
check synth_small_files $?
grep -q '"torch_dtype": "bfloat16"' "$T/a/config.json"; check synth_config_dtype $?
grep -q 'LlamaForCausalLM, 3 layers, 30 tensors' "$T/out"; check synth_summary $?
grep -q 'no tokenizer files' "$T/err"; check synth_notes_missing_tokenizer $?

"$QKIT" synth --config "$T/config.json" -o "$T/b" --seed 5 --threads 1 >/dev/null 2>&1 &&
    cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors" && cmp -s "$T/a/config.json" "$T/b/config.json"
check synth_rerun_identical $?
"$QKIT" synth --config "$T/config.json" -o "$T/c" --seed 6 >/dev/null 2>&1 &&
    ! cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
check synth_seed_changes_bytes $?

"$QKIT" synth --config "$T/config.json" -o "$T/sh" --seed 5 --shards 2 -q >/dev/null 2>&1 &&
    test -s "$T/sh/model-00001-of-00002.safetensors" && test -s "$T/sh/model-00002-of-00002.safetensors" &&
    grep -q '"total_size": ' "$T/sh/model.safetensors.index.json"
check synth_shards_and_index $?

expect_fail synth_refuses_nonempty 2 "not empty" -- synth --config "$T/config.json" -o "$T/a"
"$QKIT" synth --config "$T/config.json" -o "$T/a" --seed 6 --force >/dev/null 2>&1 &&
    cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
check synth_force_replaces $?

expect_fail synth_missing_config 2 "cannot open" -- synth --config "$T/none.json" -o "$T/x"
expect_fail synth_usage_no_output 2 "-o are required" -- synth --config "$T/config.json"
expect_fail synth_usage_bad_dtype 2 "bad value 'q4' for --dtype" -- synth --config "$T/config.json" -o "$T/x" --dtype q4
expect_fail synth_usage_both_shard_options 2 "exclude each other" -- synth --config "$T/config.json" -o "$T/x" --shards 2 --max-shard-size 1M
expect_fail synth_too_many_shards 2 "only 30 tensors" -- synth --config "$T/config.json" -o "$T/x" --shards 31

# --tokenizer-gen: a SentencePiece tokenizer made from nothing, byte-identical on reruns, and
# one that `qkit tokenize` reads back (a common word is one token: " the").
"$QKIT" synth --config "$T/config.json" -o "$T/g1" --tokenizer-gen >"$T/out" 2>"$T/err" &&
    test -s "$T/g1/tokenizer.model" && test -s "$T/g1/tokenizer_config.json" &&
    test -s "$T/g1/special_tokens_map.json" && grep -q '3 tokenizer files' "$T/out" && ! test -s "$T/err" &&
    grep -q '"bos_token_id": 1,' "$T/g1/config.json" && grep -q '"tokenizer_class": "LlamaTokenizer"' "$T/g1/tokenizer_config.json"
check synth_tokenizer_gen_files $?
"$QKIT" synth --config "$T/config.json" -o "$T/g2" --tokenizer-gen --threads 1 -q >/dev/null 2>&1 &&
    (for f in tokenizer.model tokenizer_config.json special_tokens_map.json config.json model.safetensors; do
        cmp -s "$T/g1/$f" "$T/g2/$f" || exit 1; done)
check synth_tokenizer_gen_identical $?
"$QKIT" tokenize "$T/g1" -p 'the' --no-bos >"$T/out" 2>&1 &&
    [ "$(wc -l <"$T/out")" -eq 1 ] && grep -q "^ *[0-9][0-9]* -> ' the'\$" "$T/out"
check synth_tokenizer_gen_encodes $?
"$QKIT" synth --config tests/data/demo/config.json -o "$T/demo" --tokenizer-gen >"$T/out" 2>&1 &&
    grep -q 'LlamaForCausalLM, 4 layers, 39 tensors, 3410176 parameters' "$T/out"
check synth_demo_config $?
expect_fail synth_tokenizer_gen_and_from 2 "--tokenizer-gen and --tokenizer-from exclude each other" \
    -- synth --config "$T/config.json" -o "$T/x" --tokenizer-gen --tokenizer-from "$T"
sed 's/"vocab_size": 512/"vocab_size": 100/' "$T/config.json" >"$T/small.json"
expect_fail synth_tokenizer_gen_small_vocab 2 "vocab_size 100 is below 259" \
    -- synth --config "$T/small.json" -o "$T/x" --tokenizer-gen
! test -e "$T/x"; check synth_tokenizer_gen_failure_leaves_nothing $?

if [ -d "$CFGS" ]; then
    sed 's/"MixtralForCausalLM"/"DeepseekV3ForCausalLM"/' "$CFGS/Mixtral-8x7B-v0.1/config.json" >"$T/dsv3.json"
    expect_fail synth_unsupported_arch 2 "(supported: LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Llama4ForConditionalGeneration, Llama4ForCausalLM)" \
        -- synth --config "$T/dsv3.json" -o "$T/x"

    "$QKIT" synth --config "$CFGS/SmolLM2-135M/config.json" --tokenizer-from "$CFGS/TinyLlama-1.1B-Chat-v1.0" \
        --layers 1 --dtype f16 -o "$T/smol" >"$T/out" 2>&1 &&
        grep -q '"num_hidden_layers": 1,' "$T/smol/config.json" && grep -q '"dtype": "float16"' "$T/smol/config.json" &&
        cmp -s "$CFGS/TinyLlama-1.1B-Chat-v1.0/tokenizer.model" "$T/smol/tokenizer.model" &&
        grep -q '6 tokenizer files' "$T/out"
    check synth_real_config_layers $?

    # A run of several seconds (TinyLlama at f32, 4.4 GB) interrupted after one: the signal
    # handler removes the temporary folder and everything in it.
    "$QKIT" synth --config "$CFGS/TinyLlama-1.1B-Chat-v1.0/config.json" --dtype f32 -o "$T/big" -q >/dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -INT $pid 2>/dev/null; wait $pid; rc=$?
    [ $rc -gt 128 ] && ! test -e "$T/big" && no_leftovers
    check synth_interrupt_leaves_nothing $?
fi

no_leftovers; check synth_no_temporaries_left $?
