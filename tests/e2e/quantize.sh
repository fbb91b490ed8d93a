# End-to-end checks of `qkit quantize`: llama-quantize's bytes, arguments, report, exit codes, and
# that a failed run leaves no output behind.
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: quantize e2e skipped"; exit 0; }
M=$SHARED/models/stories260K.gguf
G=$SHARED/golden/stories260K-Q4_K_M.gguf
IM=$SHARED/golden/stories3M/imatrix-calib.dat

# same_file NAME A B: byte-identical files.
same_file() { if cmp -s "$2" "$3"; then echo "PASS $1"; else echo "FAIL $1: $2 differs from $3"; fi; }
# absent NAME PATH: a failed run left nothing at PATH (nor a temporary next to it).
absent() {
    if [ -e "$2" ] || ls "$2".tmp* >/dev/null 2>&1; then echo "FAIL $1: $2 exists"; else echo "PASS $1"; fi
}
# err_has NAME FRAGMENT: stderr contains FRAGMENT (warnings may precede the error line).
err_has() { if grep -qF -- "$2" "$ERR"; then echo "PASS $1"; else echo "FAIL $1: stderr lacks '$2'"; head -c 2000 "$ERR"; fi; }

check q4km-runs 0 "$QKIT" quantize "$M" "$TMP/q.gguf" Q4_K_M 2
same_file q4km-identical-to-llama-quantize "$TMP/q.gguf" "$G"
expect_out q4km-table-totals "Q4_K_M: 48 tensors (37 quantized, 36 fallbacks of 37"
expect_out q4km-table-bpw "7.915 bits per weight"
err_has q4km-fallback-warning "blk.0.ffn_down.weight: rows of 172 are not a multiple of 256 (q4_K): using fallback f16"

check q4km-lowercase-1-thread 0 "$QKIT" quantize "$M" "$TMP/q1.gguf" q4_k_m 1
same_file q4km-1-thread-identical "$TMP/q1.gguf" "$G"
check q4km-ftype-number-3-threads 0 "$QKIT" quantize "$M" "$TMP/q3.gguf" 15 3
same_file q4km-3-threads-identical "$TMP/q3.gguf" "$G"

check json-report 0 "$QKIT" quantize --json "$M" "$TMP/j.gguf" Q4_K_M
expect_out json-type '"type":	"Q4_K_M"'
expect_out json-rmse '"rel_rmse":'
expect_out json-fallbacks '"fallbacks":	36'
expect_out json-bpw '"bpw":'
expect_out json-mbps '"mb_per_s":'
expect_out json-warnings '"warnings":'

check leave-output 0 "$QKIT" quantize --leave-output-tensor "$M" "$TMP/lo.gguf" Q4_K_M
expect_out leave-output-copied "output.weight                        64 x 512           f32    -> (copy)"
check tensor-type 0 "$QKIT" quantize --tensor-type 'attn_(q|k)=q8_0' --output-tensor-type f16 "$M" "$TMP/tt.gguf" Q4_K_M
expect_out tensor-type-attn-q "blk.3.attn_q.weight                  64 x 64            f32    -> q8_0"
expect_out tensor-type-output "output.weight                        64 x 512           f32    -> f16"
check pure-f16 0 "$QKIT" quantize --pure "$M" "$TMP/f16.gguf" F16
expect_out pure-f16-all "blk.0.ffn_down.weight                172 x 64           f32    -> f16"

# bad input: exit 2, one clear message, no output
check unknown-type 2 "$QKIT" quantize "$M" "$TMP/x.gguf" Q9_K
err_has unknown-type-msg "unknown quantization type 'Q9_K'"
absent unknown-type-no-output "$TMP/x.gguf"

check requantize-refused 2 "$QKIT" quantize "$G" "$TMP/rq.gguf" F16
expect_err requantize-msg "already quantized (q8_0): requantizing loses quality; pass --allow-requantize"
absent requantize-no-output "$TMP/rq.gguf"
check requantize-allowed 0 "$QKIT" quantize --allow-requantize "$G" "$TMP/rq.gguf" F16

check imatrix-other-model 2 "$QKIT" quantize --imatrix "$IM" "$M" "$TMP/im.gguf" Q4_K_M
err_has imatrix-other-model-msg "entry 'blk.0.attn_k.weight' has 256 values but the tensor"
err_has imatrix-other-model-why "the importance matrix is for a different model"
absent imatrix-other-model-no-output "$TMP/im.gguf"

check unreadable-input 2 "$QKIT" quantize "$TMP/missing.gguf" "$TMP/u.gguf" Q4_K_M
expect_err unreadable-input-msg "missing.gguf"
absent unreadable-input-no-output "$TMP/u.gguf"

printf 'not a gguf file' >"$TMP/junk.gguf"
check malformed-input 2 "$QKIT" quantize "$TMP/junk.gguf" "$TMP/u.gguf" Q4_K_M
absent malformed-input-no-output "$TMP/u.gguf"

# A NaN in row 5 of blk.4.ffn_up.weight (64 x 172 f32, the second-to-last tensor in the file).
cp "$M" "$TMP/nan.gguf"; chmod u+w "$TMP/nan.gguf"
size=$(wc -c <"$M")
off=$((size - 1171200 + 1126912 + 5 * 64 * 4 + 12))
printf '\000\000\300\177' | dd of="$TMP/nan.gguf" bs=1 seek=$off conv=notrunc 2>/dev/null
check nan-weights 2 "$QKIT" quantize "$TMP/nan.gguf" "$TMP/n.gguf" Q4_K_M
err_has nan-weights-msg "tensor 'blk.4.ffn_up.weight': row 5 holds a non-finite value"
absent nan-weights-no-output "$TMP/n.gguf"

check q2ks-needs-imatrix 2 "$QKIT" quantize "$M" "$TMP/q2.gguf" Q2_K_S
expect_err q2ks-needs-imatrix-msg "Q2_K_S needs an importance matrix"
check bad-tensor-type 2 "$QKIT" quantize --tensor-type 'attn_(v=q8_0' "$M" "$TMP/b.gguf" Q4_K_M
expect_err bad-tensor-type-msg "bad pattern"
check bad-threads 2 "$QKIT" quantize "$M" "$TMP/b.gguf" Q4_K_M zero
check missing-args 2 "$QKIT" quantize "$M"
check same-in-out 2 "$QKIT" quantize "$M" "$M" Q4_K_M
check output-dir-missing 3 "$QKIT" quantize "$M" "$TMP/no/such/dir/o.gguf" Q4_K_M
check help 0 "$QKIT" quantize --help
expect_out help-types "Q4_K_M"
