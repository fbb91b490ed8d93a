# End-to-end checks of `qkit perplexity` and `qkit verify` (exit codes, messages, JSON fields).
. tests/e2e/lib.inc
have_shared || { echo "shared data missing: engine e2e skipped"; exit 0; }
M=$SHARED/models/stories260K.gguf
Q=$SHARED/golden/stories260K-Q4_K_M.gguf
T=$SHARED/text/tinystories-eval.txt

check ppl-runs 0 "$QKIT" perplexity "$M" -f "$T" --ctx 256 --chunks 2
expect_out ppl-running-values "[1]4.2248,[2]4.7464,"
check ppl-json 0 "$QKIT" perplexity "$M" -f "$T" --ctx 256 --chunks 2 --json
expect_json ppl-json-fields 'round(d["ppl"], 4) == 4.7464 and d["ppl_stderr"] > 0 and d["chunks"] == 2'

: >"$TMP/empty.txt"
check ppl-empty-text 2 "$QKIT" perplexity "$M" -f "$TMP/empty.txt" --ctx 256
expect_err ppl-empty-text-msg "the text is empty"
head -c 300 "$T" >"$TMP/short.txt"
check ppl-short-text 2 "$QKIT" perplexity "$M" -f "$TMP/short.txt" --ctx 256
expect_err ppl-short-text-msg "at least 2 x n_ctx"
check ppl-ctx-too-large 2 "$QKIT" perplexity "$M" -f "$T" --ctx 4096
expect_err ppl-ctx-too-large-msg "exceeds the model's 2048"
check ppl-missing-model 3 "$QKIT" perplexity "$TMP/nope.gguf" -f "$T"
check ppl-no-text 2 "$QKIT" perplexity "$M"
check ppl-bad-ctx 2 "$QKIT" perplexity "$M" -f "$T" --ctx abc

check verify-pass 0 "$QKIT" verify --ref "$M" "$Q" -f "$T" --ctx 128 --chunks 4 --max-kld 0.5 --min-top1 50
expect_out verify-table "KLD mean"
check verify-gate-kld 1 "$QKIT" verify --ref "$M" "$Q" -f "$T" --ctx 128 --chunks 4 --max-kld 0.000001
expect_err verify-gate-kld-msg "exceeds --max-kld 1e-06"
check verify-gate-ratio 1 "$QKIT" verify --ref "$M" "$Q" -f "$T" --ctx 128 --chunks 4 --max-ppl-ratio 1.0000001 --json
expect_json verify-json-fields 'd["candidates"][0]["kld_p99"] > 0'
expect_json verify-json-fail 'd["candidates"][0]["pass"] is False'
check verify-self-passes 0 "$QKIT" verify --ref "$M" "$M" -f "$T" --ctx 128 --chunks 2 --max-kld 0.000001 --min-top1 100 --json
expect_json verify-self-top1 'd["candidates"][0]["top1"] == 100 and d["candidates"][0]["kld_mean"] >= 0'

check verify-save 0 "$QKIT" verify --ref "$M" "$Q" -f "$T" --ctx 128 --chunks 3 --save-logits "$TMP/ref.lg" --json
cp "$OUT" "$TMP/a.json"
check verify-reuse 0 "$QKIT" verify --ref-logits "$TMP/ref.lg" "$Q" -f "$T" --ctx 128 --chunks 3 --json
grep kld_mean "$TMP/a.json" | sed 's/.*"kld_mean"/"kld_mean"/' >"$TMP/a.k"
grep kld_mean "$OUT" | sed 's/.*"kld_mean"/"kld_mean"/' >"$TMP/b.k"
if cmp -s "$TMP/a.k" "$TMP/b.k"; then echo "PASS verify-reuse-identical"; else echo "FAIL verify-reuse-identical"; fi
check verify-reuse-mismatch 2 "$QKIT" verify --ref-logits "$TMP/ref.lg" "$Q" -f "$T" --ctx 256 --chunks 3
expect_err verify-reuse-mismatch-msg "this run needs"
check verify-usage 2 "$QKIT" verify "$Q" -f "$T"

# A HuggingFace folder is read through the converter's tables, no GGUF written.
check hf-ppl 0 "$QKIT" perplexity "$SHARED/models/stories260K" -f "$T" --ctx 256 --chunks 2
expect_out hf-ppl-same-as-gguf "[1]4.2248,[2]4.7464,"
check hf-verify-ref 0 "$QKIT" verify --ref "$SHARED/models/stories260K" "$M" -f "$T" --ctx 128 --chunks 2 --max-kld 0.0001 --json
expect_json hf-verify-top1 'd["candidates"][0]["top1"] == 100'
mkdir -p "$TMP/nocfg"
check hf-missing-config 2 "$QKIT" perplexity "$TMP/nocfg" -f "$T"
expect_err hf-missing-config-msg "config.json"
