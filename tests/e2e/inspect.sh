# End-to-end checks of `qkit inspect` and `qkit info`: every input kind, both output forms, and
# bad input (one line, exit 2; a missing file exits 3).
. tests/e2e/lib.inc
check info 0 "$QKIT" info
expect_out info-kernels "kernels:"
check info-forced-scalar 0 env QKIT_ISA=scalar "$QKIT" info --json
expect_json info-json-isa 'd["isa"] == "scalar"'
check usage-unknown-command 2 "$QKIT" frobnicate
check inspect-usage 2 "$QKIT" inspect

printf 'GGUF\003\000\000\000' >"$TMP/trunc.gguf"
check inspect-truncated-gguf 2 "$QKIT" inspect "$TMP/trunc.gguf"
expect_err inspect-truncated-gguf-msg "trunc.gguf"
printf '\010\000\000\000\000\000\000\000{"a":1}' >"$TMP/bad.safetensors"
check inspect-bad-safetensors 2 "$QKIT" inspect "$TMP/bad.safetensors"
expect_err inspect-bad-safetensors-msg "bad.safetensors"
check inspect-missing 3 "$QKIT" inspect "$TMP/none.gguf"

have_shared || { echo "shared data missing: model checks skipped"; exit 0; }
G=$SHARED/models/stories260K.gguf
check inspect-gguf 0 "$QKIT" inspect "$G"
expect_out inspect-gguf-arch 'general.architecture'
expect_out inspect-gguf-array-summary '[str × 512]'
expect_out inspect-gguf-totals '48 tensors'
check inspect-gguf-json 0 "$QKIT" inspect "$G" --json --tensors
expect_out inspect-json-block-count '"llama.block_count":	5'
expect_out inspect-json-token-len '"len":	512'
expect_out inspect-json-tensor '"name":	"blk.0.attn_q.weight"'
check inspect-safetensors 0 "$QKIT" inspect "$SHARED/models/stories260K/model.safetensors" --tensors
expect_out inspect-safetensors-count '47 tensors'
check inspect-folder 0 "$QKIT" inspect "$SHARED/models/stories3M" --json
expect_out inspect-folder-config '"hidden_size":	256'
expect_out inspect-folder-bpw '"bits_per_weight":	16'

# A split model: write parts with the converter, inspect any part.
check convert-split 0 "$QKIT" convert "$SHARED/models/stories3M" -o "$TMP/s3m.gguf" --outtype f16 --split-max-size 2M --quiet
check inspect-split-part2 0 "$QKIT" inspect "$TMP/s3m-00002-of-00004.gguf" --json
expect_out inspect-split-parts 's3m-00004-of-00004.gguf'
expect_out inspect-split-totals '"tensors":	39'
rm "$TMP/s3m-00003-of-00004.gguf"
check inspect-split-missing-part 2 "$QKIT" inspect "$TMP/s3m-00001-of-00004.gguf"
