# End-to-end checks of the hardening rules (issue 14): no command destroys an input, split sets
# are whole, --json is always valid UTF-8 JSON with null for non-finite figures, hostile names
# and values are one-line errors, memory exhaustion never looks like a failed bound, -q/--json
# everywhere.
. tests/e2e/lib.inc
QKIT=$(cd "$(dirname "$QKIT")" && pwd)/$(basename "$QKIT") # the checks below change folder
have_shared || { echo "shared data missing: hardening e2e skipped"; exit 0; }
M=$SHARED/models/stories260K.gguf
HF=$SHARED/models/stories260K
T=$SHARED/text/tinystories-eval.txt
head -c 6000 "$T" >"$TMP/t.txt"
T=$TMP/t.txt
sum() { cksum <"$1"; }
# same_sum NAME FILE SUM: the file still has checksum SUM (the input was not touched).
same_sum() { if [ "$(sum "$2")" = "$3" ]; then echo "PASS $1"; else echo "FAIL $1: $2 changed"; fi; }
# no_tmp NAME DIR: no temporary (*.tmp-*) is left in DIR.
no_tmp() { if ls "$2" | grep -q '\.tmp-'; then echo "FAIL $1: temporaries left: $(ls "$2")"; else echo "PASS $1"; fi; }
err_has() { if grep -qF -- "$2" "$ERR"; then echo "PASS $1"; else echo "FAIL $1: stderr lacks '$2'"; head -c 2000 "$ERR"; fi; }

# ---- an output that is an input ---------------------------------------------------------------
mkdir "$TMP/a"
cp "$M" "$TMP/a/m.gguf"
ln -s m.gguf "$TMP/a/link.gguf"
ln "$TMP/a/m.gguf" "$TMP/a/hard.gguf"
S=$(sum "$TMP/a/m.gguf")
cd "$TMP/a" || exit 1
for out in m.gguf ./m.gguf "$TMP/a/m.gguf" link.gguf hard.gguf; do
    check "quantize-onto-input-$out" 2 "$QKIT" quantize m.gguf "$out" Q4_K_M
    expect_err "quantize-onto-input-$out-msg" "writing it would destroy the input"
done
check quantize-from-link-onto-target 2 "$QKIT" quantize link.gguf m.gguf Q4_K_M
cd - >/dev/null || exit 1
same_sum quantize-input-untouched "$TMP/a/m.gguf" "$S"
no_tmp quantize-no-temporary "$TMP/a"

cp -r "$HF" "$TMP/hf"
S=$(sum "$TMP/hf/model.safetensors")
check convert-onto-shard 2 "$QKIT" convert "$TMP/hf" -o "$TMP/hf/model.safetensors"
expect_err convert-onto-shard-msg "model.safetensors: is the input"
check convert-onto-config 2 "$QKIT" convert "$TMP/hf" -o "$TMP/hf/config.json"
ln -s ../hf/model.safetensors "$TMP/a/st-link.gguf"
check convert-onto-link-to-shard 2 "$QKIT" convert "$TMP/hf" -o "$TMP/a/st-link.gguf"
same_sum convert-input-untouched "$TMP/hf/model.safetensors" "$S"
no_tmp convert-no-temporary "$TMP/hf"

S=$(sum "$TMP/a/m.gguf")
check verify-save-onto-ref 2 "$QKIT" verify --ref "$TMP/a/m.gguf" "$M" -f "$T" --ctx 64 --save-logits "$TMP/a/hard.gguf"
expect_err verify-save-onto-ref-msg "hard.gguf: is the input"
check verify-save-onto-text 2 "$QKIT" verify --ref "$TMP/a/m.gguf" "$M" -f "$T" --ctx 64 --save-logits "$T"
same_sum verify-input-untouched "$TMP/a/m.gguf" "$S"

mkdir "$TMP/cfg"
cp tests/data/demo/config.json "$TMP/cfg/config.json"
S=$(sum "$TMP/cfg/config.json")
check synth-onto-config-folder 2 "$QKIT" synth --config "$TMP/cfg/config.json" --tokenizer-gen --layers 1 -o "$TMP/cfg/" --force
expect_err synth-onto-config-folder-msg "(the same folder)"
same_sum synth-config-untouched "$TMP/cfg/config.json" "$S"

# ---- lost error text: the path and the cause ---------------------------------------------------
check quantize-no-folder 3 "$QKIT" quantize -q "$M" "$TMP/nodir/x.gguf" Q4_K_M
expect_err quantize-no-folder-msg "$TMP/nodir/x.gguf: cannot create temporary file: No such file or directory"
check convert-not-a-folder 3 "$QKIT" convert "$HF" -o "$TMP/a/m.gguf/x.gguf" -q
expect_err convert-not-a-folder-msg "x.gguf: cannot create temporary file: Not a directory"
if [ "$(id -u)" != 0 ]; then
    mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
    check quantize-read-only 3 "$QKIT" quantize -q "$M" "$TMP/ro/x.gguf" Q4_K_M
    expect_err quantize-read-only-msg "$TMP/ro/x.gguf: cannot create temporary file: Permission denied"
fi

# ---- split outputs are one set ------------------------------------------------------------------
check split-convert 0 "$QKIT" convert "$HF" -o "$TMP/s.gguf" --outtype f32 --split-max-size 400K -q
N=$(ls "$TMP"/s-0000?-of-0000?.gguf | wc -l)
check split-f16 0 "$QKIT" quantize -q --keep-split "$TMP/s-00001-of-0000$N.gguf" "$TMP/x.gguf" F16
check split-bf16 0 "$QKIT" quantize -q --keep-split "$TMP/s-00001-of-0000$N.gguf" "$TMP/y.gguf" BF16
check split-whole-reads 0 "$QKIT" perplexity "$TMP/x-00001-of-0000$N.gguf" -f "$T" --ctx 64 --chunks 1 -q
cp "$TMP/y-00002-of-0000$N.gguf" "$TMP/x-00002-of-0000$N.gguf"
check split-mixed-refused 2 "$QKIT" perplexity "$TMP/x-00001-of-0000$N.gguf" -f "$T" --ctx 64 --chunks 1
expect_err split-mixed-msg "the parts are a mixed set"
check split-mixed-inspect 2 "$QKIT" inspect "$TMP/x-00002-of-0000$N.gguf"
# the same conversion twice: the same split.id, byte for byte
check split-again 0 "$QKIT" convert "$HF" -o "$TMP/s2.gguf" --outtype f32 --split-max-size 400K -q
if cmp -s "$TMP/s-00002-of-0000$N.gguf" "$TMP/s2-00002-of-0000$N.gguf"; then echo "PASS split-reproducible"
else echo "FAIL split-reproducible"; fi

# ---- JSON: hostile names, invalid UTF-8, non-finite figures --------------------------------------
Q="$TMP/q\"uo\\te
new.gguf"
B="$TMP/bad$(printf '\377\376')name.gguf"
cp "$M" "$Q"
cp "$M" "$B"
for f in "$Q" "$B"; do
    tag=$(case "$f" in *uo*) echo quote;; *) echo utf8;; esac)
    check "json-ppl-$tag" 0 "$QKIT" perplexity "$f" -f "$T" --ctx 64 --chunks 1 --json
    expect_json "json-ppl-$tag-parses" 'd["ppl"] > 1'
    check "json-verify-$tag" 0 "$QKIT" verify --ref "$f" "$f" -f "$T" --ctx 64 --chunks 1 --json
    expect_json "json-verify-$tag-parses" 'd["candidates"][0]["top1"] == 100'
    check "json-inspect-$tag" 0 "$QKIT" inspect "$f" --json
    expect_json "json-inspect-$tag-parses" 'd["format"] == "gguf"'
    check "json-quantize-$tag" 0 "$QKIT" quantize --json "$f" "$f.q.gguf" Q4_K_M
    expect_json "json-quantize-$tag-parses" 'd["totals"]["tensors"] == 48'
    check "json-tokenize-$tag" 0 "$QKIT" tokenize "$f" -p 'Once upon a time' --json
    expect_json "json-tokenize-$tag-parses" 'd["count"] > 2 and len(d["ids"]) == d["count"]'
    check "json-convert-$tag" 0 "$QKIT" convert "$HF" -o "$f.c.gguf" --outtype f16 --json
    expect_json "json-convert-$tag-parses" 'd["tensors"] == 47'
done
check json-utf8-flagged 0 "$QKIT" inspect "$B" --json
expect_json json-utf8-flag 'd["invalid_utf8_replaced"] >= 1 and "\ufffd" in d["path"]'
check json-quote-kept 0 "$QKIT" perplexity "$Q" -f "$T" --ctx 64 --chunks 1 --json
expect_json json-quote-name 'd["model"].endswith("q\"uo\\te\nnew.gguf") and "invalid_utf8_replaced" not in d'
check json-info 0 "$QKIT" info --json
expect_json json-info-parses 'd["threads"] >= 1'
check json-synth 0 "$QKIT" synth --config tests/data/demo/config.json --tokenizer-gen --layers 1 -o "$B.d" --json
expect_json json-synth-parses 'd["tensors"] == 12 and d["invalid_utf8_replaced"] == 1'

# GGUF strings that are not UTF-8 (a metadata value and a key)
python3 - "$TMP/meta.gguf" <<'EOF'
import struct, sys
def s(b): return struct.pack('<Q', len(b)) + b
kv = s(b'general.name') + struct.pack('<I', 8) + s(b'caf\xe9 \xff\x01')
kv += s(b'odd.\xc3key') + struct.pack('<I', 4) + struct.pack('<I', 7)
open(sys.argv[1], 'wb').write(b'GGUF' + struct.pack('<IQQ', 3, 0, 2) + kv)
EOF
check json-gguf-strings 0 "$QKIT" inspect "$TMP/meta.gguf" --json
expect_json json-gguf-strings-valid 'd["invalid_utf8_replaced"] == 2 and d["metadata"]["general.name"].startswith("caf\ufffd")'

# NaN weights: the figures are null, "invalid" names the tensor, exit 2
cp "$M" "$TMP/nan.gguf"; chmod u+w "$TMP/nan.gguf"
size=$(wc -c <"$M")
off=$((size - 1171200 + 1126912 + 5 * 64 * 4 + 12))
printf '\000\000\300\177' | dd of="$TMP/nan.gguf" bs=1 seek=$off conv=notrunc 2>/dev/null
check nan-ppl-json 2 "$QKIT" perplexity "$TMP/nan.gguf" -f "$T" --ctx 64 --json
expect_json nan-ppl-null 'd["ppl"] is None and d["ppl_stderr"] is None and "blk.4.ffn_up.weight" in d["invalid"]'
expect_err nan-ppl-msg "tensor 'blk.4.ffn_up.weight': row 5 holds a non-finite value (NaN or Inf)"
check nan-ppl-text 2 "$QKIT" perplexity "$TMP/nan.gguf" -f "$T" --ctx 64 -q
expect_out nan-ppl-text-invalid "PPL = invalid"
check nan-verify-json 2 "$QKIT" verify --ref "$M" "$TMP/nan.gguf" -f "$T" --ctx 64 --json --max-kld 1
expect_json nan-verify-null 'd["candidates"][0]["kld_mean"] is None and d["candidates"][0]["pass"] is False and d["reference"]["ppl"] > 1'
check nan-reference 2 "$QKIT" verify --ref "$TMP/nan.gguf" "$M" -f "$T" --ctx 64 --save-logits "$TMP/nan.lg"
if [ -e "$TMP/nan.lg" ]; then echo "FAIL nan-reference-not-saved"; else echo "PASS nan-reference-not-saved"; fi

# verify's table never shows -0.000000 (a KLD of -1e-9 from rounding is 0)
check verify-self-table 0 "$QKIT" verify --ref "$M" "$M" -f "$T" --ctx 64 --chunks 2
if grep -q -- '-0\.0' "$OUT"; then echo "FAIL verify-no-negative-zero"; cat "$OUT"; else echo "PASS verify-no-negative-zero"; fi

# the same figures, bit for bit, for any thread count (and a pinned instruction set)
check verdict-1-thread 0 "$QKIT" verify --ref "$M" "$SHARED/golden/stories260K-Q4_K_M.gguf" -f "$T" --ctx 64 --threads 1 --json
cp "$OUT" "$TMP/v1.json"
check verdict-3-threads 0 "$QKIT" verify --ref "$M" "$SHARED/golden/stories260K-Q4_K_M.gguf" -f "$T" --ctx 64 --threads 3 --json
if cmp -s "$OUT" "$TMP/v1.json"; then echo "PASS verdict-same-for-any-thread-count"; else echo "FAIL verdict-same-for-any-thread-count"; fi
expect_json verdict-names-kernels 'd["kernels"] in ("scalar", "avx2", "avx512", "neon")'

# ---- hostile values ---------------------------------------------------------------------------
# a safetensors tensor name with an escaped NUL: refused naming the file, not cut to "a"
hdr='{"a\u0000b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
python3 - "$TMP/nul.safetensors" "$hdr" <<'EOF'
import struct, sys
h = sys.argv[2].encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + b'\0' * 8)
EOF
check st-nul-name 2 "$QKIT" inspect "$TMP/nul.safetensors"
expect_err st-nul-name-msg "nul.safetensors: header holds an escaped NUL (\\u0000) in a string"

# importance values: all zero → unweighted with a warning; negative → error naming the entry
"$QKIT" inspect "$M" --json --tensors >"$TMP/m.json"
python3 - "$TMP/m.json" "$TMP" <<'EOF'
import json, struct, sys
d = json.load(open(sys.argv[1]))
ents = [t for t in d['tensors'] if len(t['shape']) >= 2 and t['name'] != 'token_embd.weight']
for fn, bad in (('zero.dat', 0.0), ('neg.dat', -1.0)):
    b = struct.pack('<i', len(ents))
    for i, t in enumerate(ents):
        n, ne0 = t['name'].encode(), t['shape'][0]
        v = [0.0] * ne0
        if i == 2: v[3] = bad
        b += struct.pack('<i', len(n)) + n + struct.pack('<ii', 1, ne0) + struct.pack('<%df' % ne0, *v)
    open(sys.argv[2] + '/' + fn, 'wb').write(b)
EOF
check imatrix-zero 0 "$QKIT" quantize --imatrix "$TMP/zero.dat" "$M" "$TMP/z.gguf" Q4_K_M
err_has imatrix-zero-warning "importance matrix entry is all zeros: quantized without importance weights"
check imatrix-zero-ppl 0 "$QKIT" perplexity "$TMP/z.gguf" -f "$T" --ctx 64 --json
cp "$OUT" "$TMP/z.json"
check imatrix-none-ppl 0 "$QKIT" quantize -q "$M" "$TMP/p.gguf" Q4_K_M
check imatrix-none-ppl2 0 "$QKIT" perplexity "$TMP/p.gguf" -f "$T" --ctx 64 --json
if python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a["ppl"] != b["ppl"] or a["ppl"] > 10)' "$TMP/z.json" "$OUT"; then
    echo "PASS imatrix-zero-same-as-unweighted"; else echo "FAIL imatrix-zero-same-as-unweighted"; fi
check imatrix-negative 2 "$QKIT" quantize -q --imatrix "$TMP/neg.dat" "$M" "$TMP/n.gguf" Q4_K_M
expect_err imatrix-negative-msg "neg.dat: entry '"

# loose config.json values: one line naming the key
cfg_case() {
    name=$1 from=$2 to=$3 msg=$4
    rm -rf "$TMP/cc"; cp -r "$HF" "$TMP/cc"
    sed "s/$from/$to/" "$HF/config.json" >"$TMP/cc/config.json"
    check "config-$name" 2 "$QKIT" convert "$TMP/cc" -o "$TMP/cc.gguf"
    expect_err "config-$name-msg" "$msg"
}
cfg_case tie-yes '"rms_norm_eps"' '"tie_word_embeddings": "yes", "rms_norm_eps"' "'tie_word_embeddings' must be true or false"
cfg_case rope-zero '"rms_norm_eps"' '"rope_scaling": {"type": "linear", "factor": 0}, "rms_norm_eps"' "linear rope scaling 'factor' must be positive"
cfg_case rope-negative '"rms_norm_eps"' '"rope_scaling": {"type": "linear", "factor": -3}, "rms_norm_eps"' "got -3"
cfg_case bos-range '"rms_norm_eps"' '"bos_token_id": 99999, "rms_norm_eps"' "'bos_token_id' must be a token id below vocab_size 512"
cfg_case eos-range '"rms_norm_eps"' '"eos_token_id": -2, "rms_norm_eps"' "'eos_token_id' must be a token id"

# ---- memory exhaustion: never exit 1 ("bound exceeded"), never a temporary left -----------------
case "$SANITIZED" in
1) echo "memory-limit checks skipped under AddressSanitizer" ;;
*)
    mkdir "$TMP/oom"
    for v in 15000 20000 30000; do
        for cmd in "convert $HF -o $TMP/oom/c.gguf --outtype f32 -q" "quantize -q $M $TMP/oom/q.gguf Q4_K_M" \
                   "perplexity $M -f $T --ctx 64 --chunks 2 -q"; do
            (ulimit -v $v; exec "$QKIT" $cmd) >"$OUT" 2>"$ERR"
            rc=$?
            tag="oom-$v-${cmd%% *}"
            if [ $rc -eq 127 ] && grep -q "error while loading shared libraries" "$ERR"; then
                echo "PASS $tag (the limit leaves no room to start)"
            elif [ $rc -eq 0 ] || { [ $rc -ge 2 ] && [ $rc -le 3 ] && [ "$(wc -l <"$ERR" | tr -d ' ')" -ge 1 ]; }; then
                echo "PASS $tag (exit $rc)"
            else echo "FAIL $tag: exit $rc"; head -c 500 "$ERR"; fi
            no_tmp "$tag-no-temporary" "$TMP/oom"
            rm -f "$TMP"/oom/*
        done
    done
    ;;
esac

# ---- -q/--quiet and --json on every command ---------------------------------------------------
check quiet-quantize 0 "$QKIT" quantize -q "$M" "$TMP/qq.gguf" Q4_K_M
if [ -s "$OUT" ] || [ -s "$ERR" ]; then echo "FAIL quiet-quantize-silent"; else echo "PASS quiet-quantize-silent"; fi
check quiet-convert 0 "$QKIT" convert "$HF" -o "$TMP/qc.gguf" -q
check quiet-perplexity 0 "$QKIT" perplexity "$M" -f "$T" --ctx 64 --chunks 2 -q
if [ "$(wc -l <"$OUT")" -le 2 ] && grep -q "Final estimate" "$OUT"; then echo "PASS quiet-perplexity-final-only"
else echo "FAIL quiet-perplexity-final-only"; cat "$OUT"; fi
check quiet-verify 0 "$QKIT" verify --ref "$M" "$M" -f "$T" --ctx 64 --chunks 2 --quiet
check quiet-inspect 0 "$QKIT" inspect "$M" -q
check quiet-tokenize 0 "$QKIT" tokenize "$M" -p hi -q
check quiet-info 0 "$QKIT" info -q
check quiet-synth 0 "$QKIT" synth --config tests/data/demo/config.json --tokenizer-gen --layers 1 -o "$TMP/qs" -q
if [ -s "$OUT" ]; then echo "FAIL quiet-synth-silent"; else echo "PASS quiet-synth-silent"; fi

# ---- tokenize -p processes escapes like llama-tokenize ----------------------------------------
printf 'a\nb\t"c"\\' >"$TMP/esc.txt"
check tokenize-file 0 "$QKIT" tokenize "$M" -f "$TMP/esc.txt" --ids --no-bos
cp "$OUT" "$TMP/esc.ids"
check tokenize-escapes 0 "$QKIT" tokenize "$M" -p 'a\nb\t\"c\"\\' --ids --no-bos
if cmp -s "$OUT" "$TMP/esc.ids"; then echo "PASS tokenize-escapes-same-as-file"; else echo "FAIL tokenize-escapes-same-as-file"; fi
check tokenize-no-escape 0 "$QKIT" tokenize "$M" -p 'a\nb\t\"c\"\\' --ids --no-bos --no-escape
if cmp -s "$OUT" "$TMP/esc.ids"; then echo "FAIL tokenize-no-escape-literal"; else echo "PASS tokenize-no-escape-literal"; fi
