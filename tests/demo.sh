#!/bin/sh
# make demo: the whole job on a model qkit makes itself — synthesize a small Llama checkpoint
# (random weights, generated tokenizer), convert it to GGUF, quantize it to Q8_0 and Q4_K_M, and
# verify both against the F16 reference. Uses nothing outside the repository.
set -e
QKIT=${QKIT:-build/qkit}
D=build/demo
rm -rf "$D"
mkdir -p "$D"
step() { printf '\n== %s\n' "$*"; }

step "qkit synth: a 4-layer, 256-wide Llama (BF16 safetensors + SentencePiece tokenizer)"
"$QKIT" synth --config tests/data/demo/config.json --tokenizer-gen --seed 7 -o "$D/hf"
ls -l "$D/hf"

step "qkit convert: HF folder -> GGUF (F16)"
"$QKIT" convert "$D/hf" -o "$D/model-f16.gguf" --outtype f16

step "qkit quantize: F16 -> Q8_0 and Q4_K_M"
"$QKIT" quantize "$D/model-f16.gguf" "$D/model-q8_0.gguf" Q8_0 | tail -n 3
"$QKIT" quantize "$D/model-f16.gguf" "$D/model-q4_k_m.gguf" Q4_K_M | tail -n 3

step "qkit inspect: the Q4_K_M file"
"$QKIT" inspect "$D/model-q4_k_m.gguf" | tail -n 1

# Evaluation text: the project's own README and sources (English and C).
cat README.md */*.c >"$D/text.txt"
step "qkit verify: both candidates against the F16 reference (a CI gate: exit 1 past a bound)"
"$QKIT" verify --ref "$D/model-f16.gguf" "$D/model-q8_0.gguf" "$D/model-q4_k_m.gguf" \
    -f "$D/text.txt" --ctx 128 --chunks 16 --max-kld 1.0
