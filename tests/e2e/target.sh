# End-to-end checks of quality at a size budget (quantize --target-size/--target-bpw) and of
# `qkit sweep`: the file never exceeds the budget, the allocation is deterministic (threads,
# sensitivity cache), its measured KLD on held-out text beats llama.cpp's Q4_K_M-with-imatrix at
# the same size by the issue's margin (<= 0.45x), and bad budgets, type lists and caches are refused
# with one line, exit 2, nothing written.
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: target e2e skipped"; exit 0; }
HF=$SHARED/models/stories3M
C=$SHARED/text/tinystories-calib.txt
E=$SHARED/text/tinystories-eval.txt
nothing_at() {
    if [ -e "$2" ] || ls "$(dirname "$2")" | grep -q "$(basename "$2")\.tmp-"; then echo "FAIL $1: $2 written"
    else echo "PASS $1"; fi
}
size_of() { stat -c %s "$1"; }
check t-f32 0 "$QKIT" convert "$HF" -o "$TMP/f32.gguf" --outtype f32 -q
# The sanitizer tier checks memory, not quality: a shorter calibration and no KLD goal there
CHUNKS=""
[ -n "$SANITIZED" ] && CHUNKS="--chunks 16"
check t-imatrix 0 "$QKIT" imatrix "$TMP/f32.gguf" -f "$C" --ctx 256 $CHUNKS -o "$TMP/imx.gguf" -q
check t-q4km 0 "$QKIT" quantize -q --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/q4km.gguf" Q4_K_M
S=$(size_of "$TMP/q4km.gguf")

# ---- the budget holds, the report says what was chosen ----------------------------------------
check t-target 0 "$QKIT" quantize --json --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/t.gguf" \
    --target-size "$S" --calib "$C" --sens-cache "$TMP/sens.json"
expect_json t-target-json "d['target']['limit_bytes'] == $S and d['target']['engine_passes'] == 31 and not d['target']['cache_hit'] and d['target']['predicted_kld'] > 0 and sum(1 for t in d['tensors'] if 'predicted_kld' in t) == 30"
T=$(size_of "$TMP/t.gguf")
if [ "$T" -le "$S" ] && [ "$T" -gt $((S * 99 / 100)) ]; then echo "PASS t-size-within-budget ($T <= $S)"
else echo "FAIL t-size-within-budget ($T vs $S)"; fi
# another budget from the cache: no engine pass; the same budget again: the same bytes, and with
# one thread the same bytes too
check t-cache 0 "$QKIT" quantize --json --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/t3.gguf" \
    --target-bpw 3.5 --calib "$C" --sens-cache "$TMP/sens.json"
expect_json t-cache-hit "d['target']['cache_hit'] and d['target']['engine_passes'] == 0 and abs(d['totals']['bpw'] - 3.5) < 0.01 and d['totals']['bpw'] <= 3.5"
check t-again 0 "$QKIT" quantize -q --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/t-again.gguf" 1 \
    --target-size "$S" --calib "$C" --sens-cache "$TMP/sens.json"
check t-deterministic 0 cmp "$TMP/t.gguf" "$TMP/t-again.gguf"
if [ -z "$SANITIZED" ]; then # a second cold run: the fast tier checks this, the sanitizer tier skips it
check t-no-cache-1thread 0 "$QKIT" quantize -q --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/t-1.gguf" 1 \
    --target-size "$S" --calib "$C"
check t-threads-same 0 cmp "$TMP/t.gguf" "$TMP/t-1.gguf"
fi
check t-reads 0 "$QKIT" inspect "$TMP/t.gguf" --json
expect_json t-ftype 'd["metadata"]["general.file_type"] in (1, 2, 7, 8, 10, 12, 15, 17, 18, 25, 30)'

# ---- the goal: mean KLD on held-out text at most 0.45x llama.cpp's Q4_K_M with an imatrix ------
if [ -z "$SANITIZED" ]; then
    check t-verify 0 "$QKIT" verify --ref "$TMP/f32.gguf" "$TMP/q4km.gguf" "$TMP/t.gguf" -f "$E" --ctx 256 --chunks 40 --json
    expect_json t-kld-goal 'd["candidates"][1]["kld_mean"] <= 0.45 * d["candidates"][0]["kld_mean"]'
fi
check t-verify-flag 0 "$QKIT" quantize --json --imatrix "$TMP/imx.gguf" "$TMP/f32.gguf" "$TMP/tv.gguf" \
    --target-bpw 4 --calib "$C" --sens-cache "$TMP/sens.json" --verify "$E" --calib-ctx 256
expect_json t-verify-flag-json 'd["verify"]["kld_mean"] > 0 and d["verify"]["top1"] > 50'

# ---- bad input ----------------------------------------------------------------------------------
check t-too-small 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-size 900K --calib "$C"
expect_err t-too-small-msg "is below the smallest possible file: 1141280 bytes"
nothing_at t-too-small-nothing "$TMP/bad.gguf"
# rows of 256 and 768 values: no tensor holds whole 1024-value rows... q4_K's blocks are 256, so
# a type list of only 32-row-block types with an odd width is what fails; stories3M fits all, so
# the refusal is the budget: a q6_K-only list cannot make 4 bits per weight
check t-types-none 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-bpw 4 --types q6_K --calib "$C"
expect_err t-types-none-msg "is below the smallest possible file"
# stories260K's rows are 64 wide: no q4_K block (256) fits them
check t-types-fit-none 2 "$QKIT" quantize "$SHARED/models/stories260K.gguf" "$TMP/bad.gguf" --target-bpw 5 --types q4_K --calib "$C"
expect_err t-types-fit-none-msg "fit none of the candidate types"
check t-types-bad 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-bpw 4 --types q4_K,bogus --calib "$C"
check t-both 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-bpw 4 --target-size 2M --calib "$C"
check t-no-calib 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-bpw 4
expect_err t-no-calib-msg "needs --calib TEXT"
check t-other-cache 2 "$QKIT" quantize "$SHARED/models/stories260K.gguf" "$TMP/bad.gguf" --target-bpw 9 --calib "$C" --sens-cache "$TMP/sens.json"
expect_err t-other-cache-msg "a sensitivity cache of another model"
printf '{"qkit": 1}' >"$TMP/junk.json"
check t-junk-cache 2 "$QKIT" quantize "$TMP/f32.gguf" "$TMP/bad.gguf" --target-bpw 4 --calib "$C" --sens-cache "$TMP/junk.json"
expect_err t-junk-cache-msg "not a qkit sensitivity cache"
nothing_at t-bad-nothing "$TMP/bad.gguf"

# ---- sweep ---------------------------------------------------------------------------------------
mkdir -p "$TMP/sw"
check sweep 0 "$QKIT" sweep "$TMP/f32.gguf" -f "$E" --imatrix "$TMP/imx.gguf" --types Q2_K,Q4_K_M \
    --calib "$C" --target-bpw 2,4.5 --chunks 8 -o "$TMP/sw" --json
expect_json sweep-json "[s['name'] for s in d['schemes']] == ['Q2_K', 'Q4_K_M', 'bpw 2.00', 'bpw 4.50'] and 'smallest possible' in d['schemes'][2]['skipped'] and d['schemes'][1]['bytes'] == $S and d['schemes'][3]['bpw'] <= 4.5 and d['schemes'][3]['kld_mean'] < d['schemes'][1]['kld_mean'] and d['ref_ppl'] > 1"
check sweep-svg 0 python3 -c 'import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert len(r.findall(ns + "circle")) == 3 and len(r.findall(ns + "rect")) >= 3, "series missing"' "$TMP/sw/sweep.svg"
check sweep-txt 0 grep -q "Q4_K_M" "$TMP/sw/sweep.txt"
if ls -a "$TMP/sw" | grep -q qkit-sweep; then echo "FAIL sweep-temporaries-left"; else echo "PASS sweep-temporaries-removed"; fi
check sweep-no-calib 2 "$QKIT" sweep "$TMP/f32.gguf" -f "$E" --target-bpw 4 -o "$TMP/sw"
