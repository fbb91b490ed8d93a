# Same verdict on every machine (issue 14): perplexity, verify (KLD, top-1, Δp, every figure) and
# imatrix give the same bits with QKIT_ISA=scalar, avx2, avx512 (those this CPU runs) and with 1
# or 2 threads, for every weight type the engine multiplies (f32, f16, bf16, the legacy types,
# the k-quants, iq4) and for a mixture of experts. The JSON documents are compared whole, minus
# the fields that name the kernels or measure time.
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: isa e2e skipped"; exit 0; }
HF=$SHARED/models/stories3M # every width a multiple of 32 (the legacy types need it)
T=$TMP/t.txt
head -c 12000 "$SHARED/text/tinystories-eval.txt" >"$T"
export OMP_WAIT_POLICY=passive

ISAS=scalar
for i in avx2 avx512; do
    QKIT_ISA=$i "$QKIT" info --json >"$OUT" 2>/dev/null
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["isa"] == sys.argv[2] else 1)' \
        "$OUT" "$i" && ISAS="$ISAS $i"
done
echo "instruction sets on this CPU: $ISAS"
BEST=${ISAS##* }
# The sanitizer tier checks memory safety, which the same code paths get elsewhere (test_gemm and
# test_simd_dot run every type's kernels on every ISA there): here it covers a 32-value block type
# and a k-quant and skips the thread counts.
TYPES="Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_XS"
FLOATS="f32 f16 bf16"
VERIFY="f16 Q8_0 Q4_K_M IQ4_XS Q2_K"
[ -n "$SANITIZED" ] && TYPES="Q8_0 Q4_K_M" FLOATS="f16" VERIFY="Q4_K_M" THREADS=1

# strip FILE: the JSON without the kernel name and timings, canonically printed.
strip() {
    python3 -c 'import json,sys
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if k not in ("kernels", "isa") and "second" not in k}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
print(json.dumps(clean(json.load(open(sys.argv[1]))), sort_keys=True))' "$1"
}

# same_everywhere NAME CMD...: CMD's --json stdout is the same under every ISA (1 thread) and,
# for the best ISA, 2 threads (thread-count independence has its own tests: THREADS=1 skips it).
same_everywhere() {
    name=$1
    shift
    first=
    ok=1
    for i in $ISAS; do
        ths=1
        [ "$i" = "$BEST" ] && ths=${THREADS:-1 2}
        for th in $ths; do
            QKIT_ISA=$i OMP_NUM_THREADS=$th "$@" >"$OUT" 2>"$ERR"
            rc=$?
            [ $rc -eq 0 ] || { ok=0; echo "  $i/$th: exit $rc"; head -c 500 "$ERR"; continue; }
            strip "$OUT" >"$TMP/s.$i.$th" || { ok=0; continue; }
            if [ -z "$first" ]; then first=$TMP/s.$i.$th
            elif ! cmp -s "$first" "$TMP/s.$i.$th"; then ok=0; echo "  $i with $th threads differs:"; diff "$first" "$TMP/s.$i.$th" | head -c 600
            fi
        done
    done
    [ $ok = 1 ] && echo "PASS $name" || echo "FAIL $name"
}

check convert-f32 0 "$QKIT" convert -q "$HF" -o "$TMP/f32.gguf" --outtype f32
# The long tier (QKIT_LONG=1) runs after the fast one: there only the searches below run, with the
# scalar kernels added; everything up to them already ran.
if [ -z "${QKIT_LONG:-}" ]; then
check convert-f16 0 "$QKIT" convert -q "$HF" -o "$TMP/f16.gguf" --outtype f16
check convert-bf16 0 "$QKIT" convert -q "$HF" -o "$TMP/bf16.gguf" --outtype bf16
for t in $TYPES; do
    check "quantize-$t" 0 "$QKIT" quantize -q "$TMP/f32.gguf" "$TMP/$t.gguf" "$t"
done

for m in $FLOATS $TYPES; do
    same_everywhere "perplexity-$m" "$QKIT" perplexity "$TMP/$m.gguf" -f "$T" --ctx 128 --chunks 4 --json -q
done
for m in $VERIFY; do
    same_everywhere "verify-$m" "$QKIT" verify --ref "$TMP/f32.gguf" "$TMP/$m.gguf" -f "$T" --ctx 128 --chunks 4 --json -q
done
# The figures differ between models (the test can tell them apart).
QKIT_ISA=scalar "$QKIT" perplexity "$TMP/Q4_K_M.gguf" -f "$T" --ctx 128 --chunks 4 --json -q >"$TMP/a.json"
QKIT_ISA=scalar "$QKIT" perplexity "$TMP/Q8_0.gguf" -f "$T" --ctx 128 --chunks 4 --json -q >"$TMP/b.json"
if [ "$(strip "$TMP/a.json")" != "$(strip "$TMP/b.json")" ]; then echo "PASS figures-differ-between-models"
else echo "FAIL figures-differ-between-models"; fi

# A mixture of experts (routing, per-expert products) and an importance matrix, byte for byte.
if [ -d "$SHARED/models/storiesMoE" ]; then
    check convert-moe 0 "$QKIT" convert -q "$SHARED/models/storiesMoE" -o "$TMP/moe.gguf" --outtype f16
    check quantize-moe 0 "$QKIT" quantize -q "$TMP/moe.gguf" "$TMP/moe-q4.gguf" Q4_K_M
    same_everywhere perplexity-moe "$QKIT" perplexity "$TMP/moe-q4.gguf" -f "$T" --ctx 128 --chunks 4 --json -q
    same_everywhere verify-moe "$QKIT" verify --ref "$TMP/moe.gguf" "$TMP/moe-q4.gguf" -f "$T" --ctx 128 --chunks 4 --json -q
fi
first=
ok=1
for i in $ISAS; do
    QKIT_ISA=$i "$QKIT" imatrix -q "$TMP/Q4_K_M.gguf" -f "$T" --ctx 128 --chunks 4 -o "$TMP/im-$i.gguf" || ok=0
    if [ -z "$first" ]; then first=$TMP/im-$i.gguf; elif ! cmp -s "$first" "$TMP/im-$i.gguf"; then ok=0; echo "  imatrix $i differs"; fi
done
[ $ok = 1 ] && echo "PASS imatrix-same-bytes" || echo "FAIL imatrix-same-bytes"
fi

# A size-budget allocation (its sensitivities are engine measurements) and an AWQ search (scales,
# clipping) write the same bytes on every ISA. The scalar kernels take a minute or two here: they
# join in the long tier (QKIT_LONG=1).
FAST=
for i in $ISAS; do [ "$i" = scalar ] && [ -z "${QKIT_LONG:-}" ] || FAST="$FAST $i"; done
[ -n "$SANITIZED" ] && FAST=
head -c 6000 "$SHARED/text/tinystories-calib.txt" >"$TMP/c.txt"
first=
ok=1
for i in $FAST; do
    QKIT_ISA=$i "$QKIT" quantize -q "$TMP/f32.gguf" "$TMP/t-$i.gguf" --target-bpw 4.5 --calib "$TMP/c.txt" \
        --calib-ctx 128 --calib-chunks 2 || ok=0
    if [ -z "$first" ]; then first=$TMP/t-$i.gguf; elif ! cmp -s "$first" "$TMP/t-$i.gguf"; then ok=0; echo "  target $i differs"; fi
done
[ -z "$FAST" ] || { [ $ok = 1 ] && echo "PASS target-size-same-bytes ($FAST )" || echo "FAIL target-size-same-bytes"; }
first=
ok=1
for i in $FAST; do
    QKIT_ISA=$i "$QKIT" awq -q "$HF" -f "$TMP/c.txt" -o "$TMP/awq-$i" --format awq --samples 2 --seq-len 64 --grid 4 || ok=0
    if [ -z "$first" ]; then first=$TMP/awq-$i; elif ! diff -r "$first" "$TMP/awq-$i" >/dev/null; then ok=0; echo "  awq $i differs"; fi
done
[ -z "$FAST" ] || { [ $ok = 1 ] && echo "PASS awq-same-bytes ($FAST )" || echo "FAIL awq-same-bytes"; }
