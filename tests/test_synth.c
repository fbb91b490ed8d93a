/* test_synth.c — qkit synth: tensor tables checked against real configs and published parameter
 * counts, written checkpoints read back through the safetensors reader, determinism across runs,
 * threads, dtypes and shard layouts, and one test per bad input. */
#include "tu.h"

#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "../calib/tokenizer.h"
#include "../convert/synth.h"
#include "../formats/outfile.h"
#include "../formats/safetensors.h"
#include "../formats/spm_model.h"
#include "../quant/fp16.h"
#include "../quant/fp8.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A folder holding config.json with this text; returns the config's path. */
static const char *config_text(const char *name, const char *json)
{
    const char *dir = tu_mkdir(name);
    const char *p = tu_join(dir, "config.json");
    tu_write(p, json, strlen(json));
    return p;
}

/* A small config; head_dim 0 leaves it out, extra is appended inside the object. */
static const char *config_small(const char *name, const char *arch, int hidden, int heads, int kv,
                                int head_dim, const char *extra)
{
    char json[2048], hd[64] = "";
    if (head_dim)
        snprintf(hd, sizeof hd, "\"head_dim\": %d, ", head_dim);
    snprintf(json, sizeof json,
             "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": 160, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
             "%s\"vocab_size\": 300, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0%s%s}",
             arch, hidden, heads, kv, hd, extra ? ", " : "", extra ? extra : "");
    return config_text(name, json);
}

static sy_options opts(const char *config, const char *out)
{
    return (sy_options){.config_path = config, .out_dir = out, .dtype = ST_BF16, .seed = 7};
}

static void synth_ok(const sy_options *o, sy_result *r)
{
    qk_err err = {{0}};
    int rc = sy_synth(o, r, &err);
    if (rc != QK_OK)
        fail_msg("sy_synth: %s", err.msg);
}

/* Runs a synth expected to fail with code and a message holding fragment; checks nothing named
 * out or out.tmp-* is left behind. */
static void synth_fails(const sy_options *o, int code, const char *fragment)
{
    qk_err err = {{0}};
    sy_result r;
    int rc = sy_synth(o, &r, &err);
    if (rc != code || !strstr(err.msg, fragment))
        fail_msg("expected %d with '%s', got %d: %s", code, fragment, rc, err.msg);
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", o->out_dir);
    char *slash = strrchr(parent, '/');
    assert_non_null(slash);
    const char *base = o->out_dir + (slash - parent) + 1;
    *slash = 0;
    DIR *d = opendir(parent);
    assert_non_null(d);
    struct dirent *e;
    char tmp_prefix[512];
    snprintf(tmp_prefix, sizeof tmp_prefix, "%s.tmp-", base);
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, tmp_prefix, strlen(tmp_prefix)))
            fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

static void expect_shape(const st_model *m, const char *name, int64_t d0, int64_t d1)
{
    const st_tensor *t = st_model_find(m, name);
    if (!t)
        fail_msg("tensor '%s' missing", name);
    assert_int_equal(t->n_dims, d1 ? 2 : 1);
    assert_int_equal(t->shape[0], d0);
    if (d1)
        assert_int_equal(t->shape[1], d1);
}

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    void *pa = tu_read(a, &na), *pb = tu_read(b, &nb);
    int eq = na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
}

static float value_at(const st_tensor *t, uint64_t i)
{
    const uint16_t *h = t->data;
    switch (t->dtype) {
    case ST_F32: return ((const float *)t->data)[i];
    case ST_F16: return q_fp16_to_fp32(h[i]);
    default: return q_bf16_to_fp32(h[i]);
    }
}

/* ---- hyper-parameters and tensor tables from real configs --------------------------------- */

typedef struct {
    sy_arch a;
    sy_tensor *t;
    size_t n;
    uint64_t params;
} table;

static int table_of(const char *config_path, table *tb, qk_err *err)
{
    cJSON *cfg = tu_read_json(config_path);
    memset(tb, 0, sizeof *tb);
    int rc = sy_arch_from_config(&tb->a, cfg, config_path, err);
    cJSON_Delete(cfg);
    if (rc == QK_OK)
        rc = sy_arch_tensors(&tb->a, &tb->t, &tb->n, err);
    for (size_t i = 0; rc == QK_OK && i < tb->n; i++)
        tb->params += (uint64_t)tb->t[i].shape[0] * (uint64_t)(tb->t[i].n_dims >= 2 ? tb->t[i].shape[1] : 1) *
                      (uint64_t)(tb->t[i].n_dims == 3 ? tb->t[i].shape[2] : 1);
    return rc;
}

static const sy_tensor *table_find(const table *tb, const char *name)
{
    for (size_t i = 0; i < tb->n; i++)
        if (!strcmp(tb->t[i].name, name))
            return &tb->t[i];
    return NULL;
}

static void table_shape(const table *tb, const char *name, int64_t d0, int64_t d1)
{
    const sy_tensor *t = table_find(tb, name);
    if (!t)
        fail_msg("tensor '%s' missing", name);
    assert_int_equal(t->n_dims, d1 ? 2 : 1);
    assert_int_equal(t->shape[0], d0);
    assert_int_equal(t->shape[1], d1);
}

static void table_real(const char *rel, table *tb)
{
    qk_err err = {{0}};
    if (table_of(rel, tb, &err) != QK_OK)
        fail_msg("%s", err.msg);
}

/* Published parameter counts (model cards / HF "Safetensors" box) are independent anchors. */
static void test_table_tinyllama(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json");
    table tb;
    table_real(p, &tb);
    assert_string_equal(tb.a.arch, "LlamaForCausalLM");
    assert_int_equal(tb.a.head_dim, 64);
    assert_int_equal(tb.n, 1 + 22 * 9 + 2);
    assert_true(tb.params == 1100048384ull);
    table_shape(&tb, "model.layers.21.self_attn.k_proj.weight", 256, 2048);
    table_shape(&tb, "model.layers.0.mlp.down_proj.weight", 2048, 5632);
    table_shape(&tb, "lm_head.weight", 32000, 2048);
    assert_null(table_find(&tb, "model.layers.0.self_attn.q_proj.bias"));
    free(tb.t);
}

static void test_table_qwen25_biases_tied(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Qwen2.5-0.5B-Instruct/config.json");
    table tb;
    table_real(p, &tb);
    assert_int_equal(tb.n, 1 + 24 * 12 + 1);
    assert_true(tb.params == 494032768ull);
    table_shape(&tb, "model.layers.3.self_attn.q_proj.bias", 896, 0);
    table_shape(&tb, "model.layers.3.self_attn.k_proj.bias", 128, 0);
    table_shape(&tb, "model.layers.3.self_attn.v_proj.bias", 128, 0);
    assert_null(table_find(&tb, "model.layers.3.self_attn.o_proj.bias"));
    assert_null(table_find(&tb, "lm_head.weight"));
    tu_assert_near(tb.t[0].std, 0.02, 1e-9);
    free(tb.t);
}

static void test_table_qwen3_head_dim_qk_norm(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Qwen3-0.6B/config.json");
    table tb;
    table_real(p, &tb);
    assert_int_equal(tb.n, 1 + 28 * 11 + 1);
    assert_true(tb.params == 596049920ull);
    table_shape(&tb, "model.layers.0.self_attn.q_proj.weight", 2048, 1024);
    table_shape(&tb, "model.layers.0.self_attn.o_proj.weight", 1024, 2048);
    table_shape(&tb, "model.layers.27.self_attn.q_norm.weight", 128, 0);
    table_shape(&tb, "model.layers.27.self_attn.k_norm.weight", 128, 0);
    const sy_tensor *qn = table_find(&tb, "model.layers.27.self_attn.q_norm.weight");
    tu_assert_near(qn->mean, 1.0, 0);
    assert_null(table_find(&tb, "lm_head.weight"));
    free(tb.t);
}

static void test_table_smollm2_rope_parameters(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/SmolLM2-135M/config.json");
    table tb;
    table_real(p, &tb);
    assert_true(tb.params == 134515008ull);
    assert_true(tb.a.tied);
    tu_assert_near(tb.t[0].std, 0.041666666666666664, 1e-8);
    free(tb.t);
}

static void test_table_llama32(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Llama-3.2-1B/config.json");
    table tb;
    table_real(p, &tb);
    assert_true(tb.params == 1235814400ull);
    free(tb.t);
}

/* The real shard index of a Mistral checkpoint names every tensor the model has, and its
 * total_size is the bf16 byte count: both must match the table exactly. */
static void check_against_index(const table *tb, const char *index_path, uint64_t bytes_per)
{
    cJSON *idx = tu_read_json(index_path);
    const cJSON *wm = cJSON_GetObjectItem(idx, "weight_map");
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(idx, "metadata"), "total_size");
    assert_int_equal((size_t)cJSON_GetArraySize(wm), tb->n);
    for (size_t i = 0; i < tb->n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(wm, tb->t[i].name))
            fail_msg("'%s' is not in %s", tb->t[i].name, index_path);
    assert_true((double)(tb->params * bytes_per) == ts->valuedouble);
    cJSON_Delete(idx);
}

static void test_table_mistral24b_matches_real_index(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Dolphin3.0-R1-Mistral-24B/config.json");
    TU_SHARED(ip, "hf-configs/Dolphin3.0-R1-Mistral-24B/model.safetensors.index.json");
    table tb;
    table_real(p, &tb);
    table_shape(&tb, "model.layers.0.self_attn.q_proj.weight", 4096, 5120); /* head_dim 128 */
    check_against_index(&tb, ip, 2);
    free(tb.t);
}

/* SmolLM3 stores Llama's tensors (its differences are in RoPE); read as a Llama config, the
 * table must equal its official index. Its config leaves tie_word_embeddings to SmolLM3's
 * default, true, where Llama's default is false: the copy spells it out. */
static void test_table_smollm3_as_llama_matches_real_index(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/SmolLM3-3B/config.json");
    TU_SHARED(ip, "hf-configs/SmolLM3-3B/model.safetensors.index.json");
    cJSON *cfg = tu_read_json(p);
    cJSON_ReplaceItemInObject(cfg, "architectures",
                              cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1));
    cJSON_AddTrueToObject(cfg, "tie_word_embeddings");
    char *text = cJSON_Print(cfg);
    const char *cp = config_text("smollm3", text);
    cJSON_free(text);
    cJSON_Delete(cfg);
    table tb;
    table_real(cp, &tb);
    check_against_index(&tb, ip, 2);
    free(tb.t);
}

static void test_supported_list_names_every_arch(void **state)
{
    (void)state;
    char list[256];
    snprintf(list, sizeof list, "%s", sy_supported_archs());
    int n = 0;
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", "), n++) {
        char name[64];
        snprintf(name, sizeof name, "arch%d", n);
        table tb;
        qk_err err = {{0}};
        const char *moe = strstr(tok, "Mixtral") ? "\"num_local_experts\": 4, \"num_experts_per_tok\": 2"
                          : strstr(tok, "Moe") ? "\"num_experts\": 4, \"num_experts_per_tok\": 2, "
                                                 "\"moe_intermediate_size\": 32"
                          : strstr(tok, "Llama4") ? "\"num_local_experts\": 4, \"num_experts_per_tok\": 1, "
                                                    "\"intermediate_size_mlp\": 64"
                                                  : NULL;
        if (table_of(config_small(name, tok, 64, 4, 2, 16, moe), &tb, &err) != QK_OK)
            fail_msg("%s: %s", tok, err.msg);
        assert_string_equal(tb.a.arch, tok);
        free(tb.t);
    }
    assert_int_equal(n, 8);
}

/* ---- written checkpoints ------------------------------------------------------------------ */

static void expect_layer_common(const st_model *m, int l, int64_t h, int64_t q, int64_t kv)
{
    char n[128];
#define L(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
    expect_shape(m, L("self_attn.q_proj.weight"), q, h);
    expect_shape(m, L("self_attn.k_proj.weight"), kv, h);
    expect_shape(m, L("self_attn.v_proj.weight"), kv, h);
    expect_shape(m, L("self_attn.o_proj.weight"), h, q);
    expect_shape(m, L("mlp.gate_proj.weight"), 160, h);
    expect_shape(m, L("mlp.up_proj.weight"), 160, h);
    expect_shape(m, L("mlp.down_proj.weight"), h, 160);
    expect_shape(m, L("input_layernorm.weight"), h, 0);
    expect_shape(m, L("post_attention_layernorm.weight"), h, 0);
#undef L
}

static st_model *open_model(const char *path)
{
    st_model *m;
    qk_err err = {{0}};
    if (st_model_open(&m, path, &err) != QK_OK)
        fail_msg("%s", err.msg);
    return m;
}

static void test_write_llama_untied(void **state)
{
    (void)state;
    const char *cfg = config_small("llama", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_tmp("llama-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    assert_int_equal(r.n_files, 1);
    assert_false(tu_exists(tu_join(out, "model.safetensors.index.json")));
    st_model *m = open_model(tu_join(out, "model.safetensors"));
    assert_int_equal(st_model_n_tensors(m), 1 + 2 * 9 + 2);
    for (int l = 0; l < 2; l++)
        expect_layer_common(m, l, 64, 64, 32);
    expect_shape(m, "model.embed_tokens.weight", 300, 64);
    expect_shape(m, "model.norm.weight", 64, 0);
    expect_shape(m, "lm_head.weight", 300, 64);
    for (size_t i = 0; i < st_model_n_tensors(m); i++)
        assert_int_equal(st_model_tensor(m, i)->dtype, ST_BF16);
    assert_int_equal(st_model_n_meta(m), 1);
    assert_string_equal(st_model_meta_key(m, 0), "format");
    assert_string_equal(st_model_meta_value(m, 0), "pt");
    /* safetensors stores names sorted: layers.1 before lm_head, embed before layers */
    for (size_t i = 1; i < st_model_n_tensors(m); i++)
        assert_true(strcmp(st_model_tensor(m, i - 1)->name, st_model_tensor(m, i)->name) < 0);
    assert_true(r.n_params == st_model_data_bytes(m) / 2);
    st_model_close(m);
}

static void test_write_qwen2_biases_tied(void **state)
{
    (void)state;
    const char *cfg = config_small("qwen2", "Qwen2ForCausalLM", 64, 4, 2, 0,
                                   "\"tie_word_embeddings\": true");
    const char *out = tu_tmp("qwen2-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    st_model *m = open_model(out);
    assert_int_equal(st_model_n_tensors(m), 1 + 2 * 12 + 1);
    expect_layer_common(m, 1, 64, 64, 32);
    expect_shape(m, "model.layers.1.self_attn.q_proj.bias", 64, 0);
    expect_shape(m, "model.layers.1.self_attn.k_proj.bias", 32, 0);
    expect_shape(m, "model.layers.1.self_attn.v_proj.bias", 32, 0);
    assert_null(st_model_find(m, "model.layers.1.self_attn.o_proj.bias"));
    assert_null(st_model_find(m, "lm_head.weight"));
    st_model_close(m);
}

static void test_write_qwen3_decoupled_head_dim(void **state)
{
    (void)state;
    const char *cfg = config_small("qwen3", "Qwen3ForCausalLM", 64, 4, 2, 24,
                                   "\"tie_word_embeddings\": true, \"attention_bias\": false");
    const char *out = tu_tmp("qwen3-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    st_model *m = open_model(out);
    assert_int_equal(st_model_n_tensors(m), 1 + 2 * 11 + 1);
    expect_layer_common(m, 0, 64, 96, 48);
    expect_shape(m, "model.layers.0.self_attn.q_norm.weight", 24, 0);
    expect_shape(m, "model.layers.0.self_attn.k_norm.weight", 24, 0);
    assert_null(st_model_find(m, "model.layers.0.self_attn.q_proj.bias"));
    assert_null(st_model_find(m, "lm_head.weight"));
    st_model_close(m);
}

static void test_write_mistral_and_llama_biases(void **state)
{
    (void)state;
    const char *cfg = config_small("mistral", "MistralForCausalLM", 64, 4, 1, 32, NULL);
    const char *out = tu_tmp("mistral-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    st_model *m = open_model(out);
    assert_int_equal(st_model_n_tensors(m), 1 + 2 * 9 + 2);
    expect_layer_common(m, 1, 64, 128, 32);
    st_model_close(m);

    cfg = config_small("llama-b", "LlamaForCausalLM", 64, 4, 2, 0,
                       "\"attention_bias\": true, \"mlp_bias\": true");
    out = tu_tmp("llama-b-out");
    o = opts(cfg, out);
    synth_ok(&o, &r);
    m = open_model(out);
    assert_int_equal(st_model_n_tensors(m), 1 + 2 * 16 + 2);
    expect_shape(m, "model.layers.0.self_attn.o_proj.bias", 64, 0);
    expect_shape(m, "model.layers.0.mlp.gate_proj.bias", 160, 0);
    expect_shape(m, "model.layers.0.mlp.down_proj.bias", 64, 0);
    st_model_close(m);
}

static void test_config_rewritten(void **state)
{
    (void)state;
    const char *cfg = config_small("cfgout", "LlamaForCausalLM", 64, 4, 2, 0,
                                   "\"dtype\": \"float32\", \"rope_parameters\": {\"rope_theta\": "
                                   "100000, \"rope_type\": \"default\"}, \"layer_types\": "
                                   "[\"full_attention\", \"sliding_attention\"]");
    const char *out = tu_tmp("cfgout-out");
    sy_options o = opts(cfg, out);
    o.layers = 3;
    o.dtype = ST_F16;
    sy_result r;
    synth_ok(&o, &r);
    assert_int_equal(r.arch.n_layers, 3);
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    assert_int_equal(cJSON_GetObjectItem(c, "num_hidden_layers")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(c, "dtype")->valuestring, "float16");
    assert_null(cJSON_GetObjectItem(c, "torch_dtype"));
    const cJSON *lt = cJSON_GetObjectItem(c, "layer_types");
    assert_int_equal(cJSON_GetArraySize(lt), 3);
    assert_string_equal(cJSON_GetArrayItem(lt, 2)->valuestring, "full_attention");
    const cJSON *rp = cJSON_GetObjectItem(c, "rope_parameters");
    assert_int_equal(cJSON_GetObjectItem(rp, "rope_theta")->valueint, 100000);
    assert_int_equal(cJSON_GetObjectItem(c, "vocab_size")->valueint, 300);
    cJSON_Delete(c);
    st_model *m = open_model(out);
    assert_non_null(st_model_find(m, "model.layers.2.mlp.up_proj.weight"));
    assert_null(st_model_find(m, "model.layers.3.mlp.up_proj.weight"));
    assert_int_equal(st_model_tensor(m, 0)->dtype, ST_F16);
    st_model_close(m);
}

static void test_config_gets_torch_dtype_when_absent(void **state)
{
    (void)state;
    const char *cfg = config_small("cfgtd", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_tmp("cfgtd-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    assert_string_equal(cJSON_GetObjectItem(c, "torch_dtype")->valuestring, "bfloat16");
    assert_int_equal(cJSON_GetObjectItem(c, "num_hidden_layers")->valueint, 2);
    cJSON_Delete(c);
}

/* ---- values ------------------------------------------------------------------------------- */

/* Wide enough for the parallel path (the 300 x 256 embeddings pass 65536 elements) and for
 * tight statistics. */
static const char *config_big(const char *name)
{
    return config_small(name, "LlamaForCausalLM", 256, 4, 2, 0, "\"initializer_range\": 0.03");
}

static void stats(const st_tensor *t, double *mean, double *sd, double *maxdev, double center)
{
    double s = 0, s2 = 0, mx = 0;
    for (uint64_t i = 0; i < t->n_elements; i++) {
        double v = value_at(t, i);
        assert_true(isfinite(v));
        s += v;
        s2 += v * v;
        if (fabs(v - center) > mx)
            mx = fabs(v - center);
    }
    *mean = s / (double)t->n_elements;
    *sd = sqrt(s2 / (double)t->n_elements - *mean * *mean);
    *maxdev = mx;
}

static void test_value_statistics(void **state)
{
    (void)state;
    const char *out = tu_tmp("stats-out");
    sy_options o = opts(config_big("stats"), out);
    o.dtype = ST_F32;
    sy_result r;
    synth_ok(&o, &r);
    st_model *m = open_model(out);
    double mean, sd, mx;
    const st_tensor *g = st_model_find(m, "model.layers.1.mlp.gate_proj.weight");
    assert_int_equal(g->n_elements, 160 * 256);
    stats(g, &mean, &sd, &mx, 0);
    /* 40960 samples: the mean's standard error is sd/202, the sd's about sd/sqrt(2n) = sd/286 */
    tu_assert_near(mean, 0, 5 * 0.03 / 202);
    tu_assert_near(sd, 0.03, 5 * 0.03 / 286);
    assert_true(mx <= 0.03 * 2 * sqrt(3.0) * 1.0001); /* Irwin–Hall bound */
    assert_true(mx > 0.03 * 2.5);                      /* but tails do reach out */
    const st_tensor *e = st_model_find(m, "model.embed_tokens.weight");
    stats(e, &mean, &sd, &mx, 0);
    tu_assert_near(sd, 0.03, 5 * 0.03 / 392); /* 76800 samples */
    const st_tensor *nrm = st_model_find(m, "model.layers.0.input_layernorm.weight");
    stats(nrm, &mean, &sd, &mx, 1.0);
    tu_assert_near(mean, 1.0, 5 * 0.03 / 16);
    assert_true(mx <= 0.03 * 2 * sqrt(3.0) * 1.0001);
    /* two matrices are not the same numbers */
    const st_tensor *u = st_model_find(m, "model.layers.1.mlp.up_proj.weight");
    assert_memory_not_equal(g->data, u->data, 1024);
    st_model_close(m);
}

static void synth_to(const char *cfg, const char *out, int threads, st_dtype dt, uint64_t seed,
                     int64_t layers)
{
    sy_options o = opts(cfg, out);
    o.dtype = dt;
    o.seed = seed;
    o.layers = layers;
    sy_result r;
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    synth_ok(&o, &r);
    omp_set_num_threads(saved);
}

static void test_same_args_same_bytes_any_threads(void **state)
{
    (void)state;
    const char *cfg = config_big("det");
    synth_to(cfg, tu_tmp("det-a"), 1, ST_BF16, 7, 0);
    synth_to(cfg, tu_tmp("det-b"), 2, ST_BF16, 7, 0);
    synth_to(cfg, tu_tmp("det-c"), 3, ST_BF16, 7, 0);
    assert_true(files_equal(tu_join(tu_tmp("det-a"), "model.safetensors"),
                            tu_join(tu_tmp("det-b"), "model.safetensors")));
    assert_true(files_equal(tu_join(tu_tmp("det-a"), "model.safetensors"),
                            tu_join(tu_tmp("det-c"), "model.safetensors")));
    assert_true(files_equal(tu_join(tu_tmp("det-a"), "config.json"),
                            tu_join(tu_tmp("det-c"), "config.json")));
    synth_to(cfg, tu_tmp("det-s"), 2, ST_BF16, 8, 0);
    assert_false(files_equal(tu_join(tu_tmp("det-a"), "model.safetensors"),
                             tu_join(tu_tmp("det-s"), "model.safetensors")));
}

/* One set of numbers, rounded per dtype; and a layer's values do not depend on how many
 * layers the run has. */
static void test_dtypes_and_layers_share_values(void **state)
{
    (void)state;
    const char *cfg = config_big("dt");
    synth_to(cfg, tu_tmp("dt-f32"), 2, ST_F32, 1, 1);
    synth_to(cfg, tu_tmp("dt-f16"), 2, ST_F16, 1, 1);
    synth_to(cfg, tu_tmp("dt-bf16"), 2, ST_BF16, 1, 2);
    st_model *a = open_model(tu_tmp("dt-f32")), *h = open_model(tu_tmp("dt-f16")),
             *b = open_model(tu_tmp("dt-bf16"));
    assert_int_equal(st_model_n_tensors(a), 1 + 9 + 2);
    assert_int_equal(st_model_n_tensors(b), 1 + 18 + 2);
    for (size_t i = 0; i < st_model_n_tensors(a); i++) {
        const st_tensor *ta = st_model_tensor(a, i);
        const st_tensor *th = st_model_find(h, ta->name), *tb = st_model_find(b, ta->name);
        assert_non_null(th);
        assert_non_null(tb);
        const float *f = ta->data;
        const uint16_t *hh = th->data, *bb = tb->data;
        for (uint64_t k = 0; k < ta->n_elements; k++) {
            if (hh[k] != q_fp32_to_fp16(f[k]) || bb[k] != q_fp32_to_bf16(f[k]))
                fail_msg("%s[%llu]: f32 %.9g, f16 %04x, bf16 %04x", ta->name,
                         (unsigned long long)k, f[k], hh[k], bb[k]);
        }
    }
    st_model_close(a);
    st_model_close(h);
    st_model_close(b);
}

static void test_fill_split_independent(void **state)
{
    (void)state;
    enum { N = 200003 };
    float *one = malloc(N * sizeof *one), *parts = malloc(N * sizeof *parts);
    assert_non_null(one);
    assert_non_null(parts);
    uint64_t key = sy_tensor_key(42, "model.layers.0.mlp.up_proj.weight");
    sy_fill(key, 0, N, 0.0f, 0.02f, ST_F32, one);
    sy_fill(key, 0, 77777, 0.0f, 0.02f, ST_F32, parts);
    sy_fill(key, 77777, N - 77777, 0.0f, 0.02f, ST_F32, parts + 77777);
    assert_memory_equal(one, parts, N * sizeof *one);
    assert_true(sy_tensor_key(42, "a") != sy_tensor_key(43, "a"));
    assert_true(sy_tensor_key(42, "a") != sy_tensor_key(42, "b"));
    free(one);
    free(parts);
}

/* ---- shards ------------------------------------------------------------------------------- */

static void expect_same_tensors(const st_model *a, const st_model *b)
{
    assert_int_equal(st_model_n_tensors(a), st_model_n_tensors(b));
    for (size_t i = 0; i < st_model_n_tensors(a); i++) {
        const st_tensor *ta = st_model_tensor(a, i), *tb = st_model_find(b, ta->name);
        assert_non_null(tb);
        assert_int_equal(ta->nbytes, tb->nbytes);
        assert_memory_equal(ta->data, tb->data, ta->nbytes);
    }
}

static void test_shards_by_count(void **state)
{
    (void)state;
    const char *cfg = config_small("sh", "Qwen2ForCausalLM", 64, 4, 2, 0, NULL);
    const char *single = tu_tmp("sh-1"), *out = tu_tmp("sh-3");
    sy_options o = opts(cfg, single);
    sy_result r;
    synth_ok(&o, &r);
    o.out_dir = out;
    o.shards = 3;
    synth_ok(&o, &r);
    assert_int_equal(r.n_files, 3);
    assert_false(tu_exists(tu_join(out, "model.safetensors")));
    const char *names[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"};
    st_model *m = open_model(out), *s = open_model(single);
    assert_int_equal(st_model_n_files(m), 3);
    for (int i = 0; i < 3; i++) {
        st_model *part = open_model(tu_join(out, names[i]));
        assert_true(st_model_n_tensors(part) > 0);
        st_model_close(part);
    }
    expect_same_tensors(m, s);
    int found = 0;
    for (size_t i = 0; i < st_model_n_index_meta(m); i++) {
        if (!strcmp(st_model_index_meta_key(m, i), "total_size")) {
            assert_true(strtoull(st_model_index_meta_value(m, i), NULL, 10) ==
                        st_model_data_bytes(s));
            found++;
        }
    }
    assert_int_equal(found, 1);
    st_model_close(m);
    st_model_close(s);
}

/* save_pretrained's rule: a file closes when the next tensor would take it past the limit. */
static void test_shards_by_max_size(void **state)
{
    (void)state;
    const char *cfg = config_small("ms", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_tmp("ms-out");
    sy_options o = opts(cfg, out);
    o.max_shard_size = 40000; /* bf16: embed 38400, q 8192, gate 20480 ... */
    sy_result r;
    synth_ok(&o, &r);
    assert_true(r.n_files > 2);
    st_model *m = open_model(out);
    assert_int_equal(st_model_n_files(m), (size_t)r.n_files);
    uint64_t total = 0;
    for (size_t f = 0; f < st_model_n_files(m); f++) {
        st_model *part = open_model(st_model_file_path(m, f));
        uint64_t bytes = st_model_data_bytes(part);
        total += bytes;
        assert_true(bytes <= 40000 || st_model_n_tensors(part) == 1);
        st_model_close(part);
    }
    assert_true(total == st_model_data_bytes(m));
    st_model_close(m);
}

static void test_shard_count_above_tensor_count(void **state)
{
    (void)state;
    const char *cfg = config_small("shbad", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    sy_options o = opts(cfg, tu_tmp("shbad-out"));
    o.shards = 22;
    synth_fails(&o, QK_ERANGE, "22 shards asked but the model has only 21 tensors");
    assert_false(tu_exists(o.out_dir));
}

/* ---- tokenizer files ---------------------------------------------------------------------- */

static void test_tokenizer_copied_from_config_folder(void **state)
{
    (void)state;
    const char *cfg = config_small("tokcfg", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *dir = tu_tmp("tokcfg");
    tu_write(tu_join(dir, "tokenizer.json"), "{\"model\": {}}", 13);
    tu_write(tu_join(dir, "merges.txt"), "#version: 0.2\na b\n", 18);
    tu_write(tu_join(dir, "README.md"), "not a tokenizer", 15);
    const char *out = tu_tmp("tokcfg-out");
    sy_options o = opts(cfg, out);
    sy_result r;
    synth_ok(&o, &r);
    assert_int_equal(r.n_tokenizer_files, 2);
    assert_true(files_equal(tu_join(dir, "tokenizer.json"), tu_join(out, "tokenizer.json")));
    assert_true(files_equal(tu_join(dir, "merges.txt"), tu_join(out, "merges.txt")));
    assert_false(tu_exists(tu_join(out, "README.md")));
}

static void test_tokenizer_from_real_folder(void **state)
{
    (void)state;
    TU_SHARED(tl, "hf-configs/TinyLlama-1.1B-Chat-v1.0");
    const char *cfg = config_small("tokreal", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_tmp("tokreal-out");
    sy_options o = opts(cfg, out);
    o.tokenizer_dir = tl;
    sy_result r;
    synth_ok(&o, &r);
    const char *files[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                           "special_tokens_map.json", "chat_template.jinja",
                           "generation_config.json"};
    assert_int_equal(r.n_tokenizer_files, 6);
    for (size_t i = 0; i < 6; i++)
        assert_true(files_equal(tu_join(tl, files[i]), tu_join(out, files[i])));
    /* the config is ours, not the tokenizer folder's */
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    assert_int_equal(cJSON_GetObjectItem(c, "hidden_size")->valueint, 64);
    cJSON_Delete(c);
}

static void test_tokenizer_folder_without_files(void **state)
{
    (void)state;
    const char *cfg = config_small("toknone", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    sy_options o = opts(cfg, tu_tmp("toknone-out"));
    o.tokenizer_dir = tu_mkdir("empty-tok");
    synth_fails(&o, QK_EFORMAT, "no tokenizer files");
    assert_false(tu_exists(o.out_dir));
}

static void test_tokenizer_folder_missing(void **state)
{
    (void)state;
    const char *cfg = config_small("tokmiss", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    sy_options o = opts(cfg, tu_tmp("tokmiss-out"));
    o.tokenizer_dir = tu_tmp("no-such-folder");
    synth_fails(&o, QK_EFORMAT, "no-such-folder: not a folder");
}

/* ---- generated tokenizer ------------------------------------------------------------------ */

#define SPACE "\xE2\x96\x81"

static spm_model *load_spm(const char *dir)
{
    spm_model *m = NULL;
    qk_err err = {{0}};
    if (spm_model_load(tu_join(dir, "tokenizer.model"), &m, &err) != QK_OK)
        fail_msg("%s", err.msg);
    return m;
}

static const char *gen_dir(const char *name, int64_t vocab)
{
    const char *dir = tu_mkdir(name);
    qk_err err = {{0}};
    if (sy_tokenizer_write(dir, vocab, &err) != QK_OK)
        fail_msg("sy_tokenizer_write: %s", err.msg);
    return dir;
}

static int piece_is(const spm_piece *p, const char *text)
{
    return p->len == strlen(text) && !memcmp(p->text, text, p->len);
}

/* Id of the piece with this text, -1 when absent. */
static int64_t piece_id(const spm_model *m, const char *text, size_t len)
{
    for (uint32_t i = 0; i < m->n_pieces; i++)
        if (m->pieces[i].len == len && !memcmp(m->pieces[i].text, text, len))
            return i;
    return -1;
}

/* The SPM encoder can only build a word out of pieces whose prefixes are pieces: every NORMAL
 * piece longer than one character must have its prefix without the last character at a lower
 * id (for a "▁x" piece, the prefix is "▁"). */
static void expect_prefix_closed(const spm_model *m)
{
    for (uint32_t i = 259; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        size_t cut = p->len;
        while (cut > 0 && ((unsigned char)p->text[cut - 1] & 0xC0) == 0x80)
            cut--; /* back to the start of the last UTF-8 character */
        cut = cut > 0 ? cut - 1 : 0;
        if (cut == 0)
            continue;
        int64_t id = piece_id(m, p->text, cut);
        if (id < 0 || id >= i)
            fail_msg("piece %u '%s': prefix '%.*s' is %s", i, p->text, (int)cut, p->text,
                     id < 0 ? "missing" : "a later piece");
    }
}

/* The layout sentencepiece gives Llama 2's tokenizer, and the trainer/normalizer fields. */
static void test_gen_tokenizer_layout(void **state)
{
    (void)state;
    spm_model *m = load_spm(gen_dir("gen-layout", 512));
    assert_int_equal(m->n_pieces, 512);
    assert_int_equal(m->vocab_size, 512);
    assert_int_equal(m->model_type, 2);
    assert_true(m->byte_fallback);
    assert_int_equal(m->unk_id, 0);
    assert_int_equal(m->bos_id, 1);
    assert_int_equal(m->eos_id, 2);
    assert_int_equal(m->pad_id, -1);
    assert_true(m->add_dummy_prefix);
    assert_false(m->remove_extra_whitespaces);
    assert_true(m->escape_whitespaces);
    assert_true(piece_is(&m->pieces[0], "<unk>") && m->pieces[0].type == SPM_PIECE_UNKNOWN);
    assert_true(piece_is(&m->pieces[1], "<s>") && m->pieces[1].type == SPM_PIECE_CONTROL);
    assert_true(piece_is(&m->pieces[2], "</s>") && m->pieces[2].type == SPM_PIECE_CONTROL);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        assert_true(piece_is(&m->pieces[3 + b], name));
        assert_int_equal(m->pieces[3 + b].type, SPM_PIECE_BYTE);
    }
    for (uint32_t i = 0; i < 259; i++)
        tu_assert_near(m->pieces[i].score, 0.0, 0);
    assert_true(piece_is(&m->pieces[259], SPACE));
    /* then each printable ASCII character once */
    int seen[128] = {0};
    for (uint32_t i = 260; i < 260 + 94; i++) {
        const spm_piece *p = &m->pieces[i];
        assert_int_equal(p->len, 1);
        assert_true(p->text[0] > ' ' && p->text[0] < 127);
        assert_int_equal(seen[(int)p->text[0]]++, 0);
    }
    for (uint32_t i = 259; i < m->n_pieces; i++) {
        assert_int_equal(m->pieces[i].type, SPM_PIECE_NORMAL);
        if (i > 259 && !(m->pieces[i].score < m->pieces[i - 1].score))
            fail_msg("score of piece %u is not below its predecessor's", i);
    }
    expect_prefix_closed(m);
    spm_model_free(m);
}

/* The protobuf bytes themselves, worked out by hand from sentencepiece_model.proto, so the
 * writer is checked against the format and not only against qkit's own reader. */
static void test_gen_tokenizer_wire_bytes(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = tu_read(tu_join(gen_dir("gen-wire", 512), "tokenizer.model"), &n);
    /* pieces (1, LEN 14) { piece (1, LEN 5) "<unk>", score (2, I32) 0.0f, type (3) UNKNOWN } */
    static const uint8_t head[] = {0x0A, 0x0E, 0x0A, 0x05, '<', 'u', 'n', 'k', '>',
                                   0x15, 0, 0, 0, 0, 0x18, 0x02};
    /* trainer_spec (2, LEN 29) { model_type 2, vocab_size 512, byte_fallback 1, unk_id 0,
     * bos_id 1, eos_id 2, pad_id -1 as ten bytes }, normalizer_spec (3, LEN 16) { name
     * "identity", add_dummy_prefix 1, remove_extra_whitespaces 0, escape_whitespaces 1 } */
    static const uint8_t tail[] = {
        0x12, 0x1D, 0x18, 0x02, 0x20, 0x80, 0x04, 0x98, 0x02, 0x01, 0xC0, 0x02, 0x00, 0xC8,
        0x02, 0x01, 0xD0, 0x02, 0x02, 0xD8, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xFF, 0x01, 0x1A, 0x10, 0x0A, 0x08, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y',
        0x18, 0x01, 0x20, 0x00, 0x28, 0x01};
    assert_true(n > sizeof head + sizeof tail);
    assert_memory_equal(b, head, sizeof head);
    assert_memory_equal(b + n - sizeof tail, tail, sizeof tail);
    /* "▁" (piece 259) scores +0.0f and the character after it -1.0f; NORMAL has no type field */
    static const uint8_t space[] = {0x0A, 0x0A, 0x0A, 0x03, 0xE2, 0x96, 0x81, 0x15, 0, 0, 0, 0,
                                    0x0A, 0x08, 0x0A, 0x01};
    const uint8_t *at = NULL;
    for (size_t i = 0; !at && i + sizeof space <= n; i++)
        if (!memcmp(b + i, space, sizeof space))
            at = b + i;
    assert_non_null(at);
    static const uint8_t minus_one[] = {0x15, 0x00, 0x00, 0x80, 0xBF};
    assert_memory_equal(at + sizeof space + 1, minus_one, sizeof minus_one);
    free(b);
}

static void test_gen_tokenizer_deterministic_and_nested(void **state)
{
    (void)state;
    const char *a = gen_dir("gen-det-a", 512), *b = gen_dir("gen-det-b", 512);
    const char *big = gen_dir("gen-det-big", 2000);
    const char *files[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < 3; i++)
        assert_true(files_equal(tu_join(a, files[i]), tu_join(b, files[i])));
    /* a larger vocabulary extends a smaller one: the same first 512 pieces */
    spm_model *s = load_spm(a), *l = load_spm(big);
    assert_int_equal(l->n_pieces, 2000);
    for (uint32_t i = 0; i < 512; i++) {
        assert_int_equal(s->pieces[i].len, l->pieces[i].len);
        assert_memory_equal(s->pieces[i].text, l->pieces[i].text, s->pieces[i].len);
    }
    spm_model_free(s);
    spm_model_free(l);
}

/* Beyond the built-in list letter strings fill the vocabulary: still unique (tok_vocab_create
 * refuses duplicates) and prefix-closed. */
static void test_gen_tokenizer_large_vocab(void **state)
{
    (void)state;
    const char *dir = gen_dir("gen-big", 32000);
    spm_model *m = load_spm(dir);
    assert_int_equal(m->n_pieces, 32000);
    assert_int_equal(m->vocab_size, 32000);
    expect_prefix_closed(m);
    tu_assert_near(m->pieces[31999].score, -(31999.0 - 259.0), 0);
    tok_vocab *v = NULL;
    qk_err err = {{0}};
    if (tok_vocab_from_spm(m, &v, &err) != QK_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(v->n_tokens, 32000);
    tok_vocab_free(v);
    spm_model_free(m);
}

static void test_gen_tokenizer_smallest_and_largest(void **state)
{
    (void)state;
    spm_model *m = load_spm(gen_dir("gen-259", 259));
    assert_int_equal(m->n_pieces, 259);
    assert_true(piece_is(&m->pieces[258], "<0xFF>"));
    spm_model_free(m);
    m = load_spm(gen_dir("gen-max", SY_GEN_MAX_VOCAB));
    assert_int_equal(m->n_pieces, SY_GEN_MAX_VOCAB);
    assert_int_equal(m->vocab_size, SY_GEN_MAX_VOCAB);
    spm_model_free(m);
}

/* The vocabulary qkit convert builds from the folder: ids, specials, English as multi-character
 * tokens, and any text back exactly. */
static tok_vocab *load_hf_vocab(const char *dir)
{
    tok_vocab *v = NULL;
    qk_err err = {{0}};
    if (tok_vocab_load_hf(dir, NULL, &v, &err) != QK_OK)
        fail_msg("tok_vocab_load_hf: %s", err.msg);
    return v;
}

static void encode(const tok_vocab *v, const char *text, unsigned flags, tok_ids *ids)
{
    qk_err err = {{0}};
    ids->n = 0;
    if (tok_encode(v, text, strlen(text), flags, ids, &err) != QK_OK)
        fail_msg("tok_encode: %s", err.msg);
}

static void expect_round_trip(const tok_vocab *v, const char *text)
{
    tok_ids ids = {0};
    encode(v, text, 0, &ids);
    char *back = NULL;
    size_t len = 0;
    qk_err err = {{0}};
    for (size_t i = 0; i < ids.n; i++)
        assert_true(ids.ids[i] >= 0 && (uint32_t)ids.ids[i] < v->n_tokens);
    if (tok_decode(v, ids.ids, ids.n, 0, &back, &len, &err) != QK_OK)
        fail_msg("tok_decode: %s", err.msg);
    if (len != strlen(text) || memcmp(back, text, len))
        fail_msg("'%s' came back as '%s'", text, back);
    free(back);
    tok_ids_free(&ids);
}

/* A 512-token Llama synthesized with --tokenizer-gen; extra is appended to the config, and
 * a file named `plant` (if not NULL) is put beside it. */
static const char *gen_synth(const char *name, const char *extra, const char *plant)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
             "\"intermediate_size\": 96, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
             "\"vocab_size\": 512%s}", extra);
    char dir_name[256];
    snprintf(dir_name, sizeof dir_name, "%s-cfg", name);
    const char *cfg = config_text(dir_name, json);
    if (plant)
        tu_write(tu_join(tu_tmp(dir_name), plant), "{}", 2);
    const char *out = tu_tmp(name);
    sy_options o = opts(cfg, out);
    o.tokenizer_gen = 1;
    sy_result r;
    synth_ok(&o, &r);
    assert_int_equal(r.n_tokenizer_files, 3);
    return out;
}

static void test_gen_tokenizer_encodes_english(void **state)
{
    (void)state;
    tok_vocab *v = load_hf_vocab(gen_synth("gen-enc", "", NULL));
    assert_int_equal(v->kind, TOK_KIND_SPM);
    assert_int_equal(v->n_tokens, 512);
    assert_int_equal(v->special[TOK_BOS], 1);
    assert_int_equal(v->special[TOK_EOS], 2);
    assert_true(tok_vocab_add_bos(v));
    assert_false(tok_vocab_add_eos(v));
    assert_true(v->add_space_prefix);
    /* common words are one token each, the word with its space */
    static const char *const words[] = {"the", "and", "of", "to", "in", "is", "was", "that",
                                        "with", "for", "The", "she", "you", "from", "have"};
    tok_ids ids = {0};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        encode(v, words[i], 0, &ids);
        char want[32];
        snprintf(want, sizeof want, SPACE "%s", words[i]);
        if (ids.n != 1 || strcmp(v->tokens[ids.ids[0]], want))
            fail_msg("'%s': %zu tokens, first '%s'", words[i], ids.n, v->tokens[ids.ids[0]]);
    }
    const char *text = "The cat and the dog were in the house, but she was not there with them.";
    encode(v, text, TOK_ADD_SPECIAL, &ids);
    assert_int_equal(ids.ids[0], 1);
    assert_true((ids.n - 1) * 5 <= strlen(text) * 2); /* 2.5+ characters a token, not letters */
    for (size_t i = 0; i < ids.n; i++)
        assert_true(ids.ids[i] >= 0 && ids.ids[i] < 512);
    tok_ids_free(&ids);
    expect_round_trip(v, text);
    expect_round_trip(v, "Caf\xC3\xA9 \xE2\x9C\x85 na\xC3\xAFve:\ttabs,\n\nnewlines and  two  "
                         "spaces ");
    expect_round_trip(v, "int main(void) { return 0; } // {}[]<>~`^|\\");
    tok_vocab_free(v);
}

/* The model file alone loads too, with the trainer's special ids. */
static void test_gen_tokenizer_loads_as_spm(void **state)
{
    (void)state;
    const char *dir = gen_dir("gen-spm", 400);
    tok_vocab *v = NULL;
    qk_err err = {{0}};
    if (tok_vocab_load_spm(tu_join(dir, "tokenizer.model"), &v, &err) != QK_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(v->n_tokens, 400);
    assert_int_equal(v->special[TOK_UNK], 0);
    assert_int_equal(v->special[TOK_BOS], 1);
    assert_int_equal(v->special[TOK_EOS], 2);
    assert_int_equal(v->special[TOK_PAD], -1);
    assert_int_equal(v->types[0], TOK_TYPE_UNKNOWN);
    assert_int_equal(v->types[1], TOK_TYPE_CONTROL);
    assert_int_equal(v->types[3 + 0x41], TOK_TYPE_BYTE);
    expect_round_trip(v, "A short line of text.");
    tok_vocab_free(v);
}

static void test_gen_tokenizer_hf_json(void **state)
{
    (void)state;
    const char *dir = gen_dir("gen-json", 300);
    cJSON *c = tu_read_json(tu_join(dir, "tokenizer_config.json"));
    assert_string_equal(cJSON_GetObjectItem(c, "tokenizer_class")->valuestring, "LlamaTokenizer");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "add_bos_token")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(c, "add_eos_token")));
    assert_string_equal(cJSON_GetObjectItem(c, "bos_token")->valuestring, "<s>");
    assert_string_equal(cJSON_GetObjectItem(c, "eos_token")->valuestring, "</s>");
    assert_string_equal(cJSON_GetObjectItem(c, "unk_token")->valuestring, "<unk>");
    cJSON_Delete(c);
    c = tu_read_json(tu_join(dir, "special_tokens_map.json"));
    assert_int_equal(cJSON_GetArraySize(c), 3);
    assert_string_equal(cJSON_GetObjectItem(c, "bos_token")->valuestring, "<s>");
    assert_string_equal(cJSON_GetObjectItem(c, "eos_token")->valuestring, "</s>");
    assert_string_equal(cJSON_GetObjectItem(c, "unk_token")->valuestring, "<unk>");
    cJSON_Delete(c);
}

/* The config agrees with the generated tokenizer; tokenizer files beside the config are left
 * alone; the same arguments give the same folder. */
static void test_gen_tokenizer_in_synth(void **state)
{
    (void)state;
    const char *ids = ", \"bos_token_id\": 128000, \"eos_token_id\": 128001, \"pad_token_id\": 5";
    const char *out = gen_synth("gen-cfg", ids, NULL);
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    assert_int_equal(cJSON_GetObjectItem(c, "bos_token_id")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(c, "eos_token_id")->valueint, 2);
    assert_null(cJSON_GetObjectItem(c, "pad_token_id"));
    assert_int_equal(cJSON_GetObjectItem(c, "vocab_size")->valueint, 512);
    cJSON_Delete(c);
    const char *again = gen_synth("gen-cfg-again", ids, "tokenizer.json");
    assert_false(tu_exists(tu_join(again, "tokenizer.json")));
    const char *files[] = {"config.json", "tokenizer.model", "tokenizer_config.json",
                           "special_tokens_map.json", "model.safetensors"};
    for (size_t i = 0; i < 5; i++)
        assert_true(files_equal(tu_join(out, files[i]), tu_join(again, files[i])));
}

/* The demo's model: the config the README's `make demo` starts from. */
static void test_gen_tokenizer_demo_config(void **state)
{
    (void)state;
    const char *cfg = "tests/data/demo/config.json";
    table tb;
    table_real(cfg, &tb);
    assert_string_equal(tb.a.arch, "LlamaForCausalLM");
    assert_int_equal(tb.a.hidden, 256);
    assert_int_equal(tb.a.n_layers, 4);
    assert_int_equal(tb.a.n_heads, 4);
    assert_int_equal(tb.a.n_kv_heads, 2);
    assert_int_equal(tb.a.head_dim, 64);
    assert_int_equal(tb.a.intermediate, 768);
    assert_int_equal(tb.a.vocab, 512);
    assert_false(tb.a.tied);
    tu_assert_near(tb.a.init_std, 0.02, 1e-9);
    /* embeddings and head 2·512·256; per layer q, o 256², k, v 256·128, three MLP matrices
     * 256·768 and two norms; the final norm */
    assert_true(tb.params == 2 * 512 * 256 + 4 * (2 * 65536 + 2 * 32768 + 3 * 196608 + 512) + 256);
    free(tb.t);
    const char *out = tu_tmp("gen-demo");
    sy_options o = opts(cfg, out);
    o.tokenizer_gen = 1;
    sy_result r;
    synth_ok(&o, &r);
    tok_vocab *v = load_hf_vocab(out);
    assert_int_equal(v->n_tokens, 512);
    expect_round_trip(v, "qkit converts, quantizes and verifies models.");
    tok_vocab_free(v);
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    assert_int_equal(cJSON_GetObjectItem(c, "max_position_embeddings")->valueint, 1024);
    tu_assert_near(cJSON_GetObjectItem(c, "rope_theta")->valuedouble, 10000, 0);
    tu_assert_near(cJSON_GetObjectItem(c, "rms_norm_eps")->valuedouble, 1e-5, 0);
    cJSON_Delete(c);
}

static void test_gen_tokenizer_vocab_too_small(void **state)
{
    (void)state;
    const char *cfg = config_text("gen-small", "{\"architectures\": [\"LlamaForCausalLM\"], "
                                  "\"hidden_size\": 64, \"intermediate_size\": 96, "
                                  "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                                  "\"vocab_size\": 258}");
    sy_options o = opts(cfg, tu_tmp("gen-small-out"));
    o.tokenizer_gen = 1;
    synth_fails(&o, QK_ERANGE, "gen-small/config.json: vocab_size 258 is below 259");
    assert_false(tu_exists(o.out_dir));
    /* without --tokenizer-gen the same config is fine */
    o.tokenizer_gen = 0;
    sy_result r;
    synth_ok(&o, &r);
}

static void test_gen_tokenizer_vocab_too_large(void **state)
{
    (void)state;
    const char *dir = tu_mkdir("gen-huge");
    qk_err err = {{0}};
    assert_int_equal(sy_tokenizer_write(dir, SY_GEN_MAX_VOCAB + 1, &err), QK_ERANGE);
    if (!strstr(err.msg, "gen-huge: vocab_size 1048577 is above 1048576"))
        fail_msg("message: %s", err.msg);
    assert_false(tu_exists(tu_join(dir, "tokenizer.model")));
    assert_int_equal(sy_tokenizer_write(dir, -1, &err), QK_ERANGE);
    if (!strstr(err.msg, "vocab_size -1 is below 259"))
        fail_msg("message: %s", err.msg);
}

static void test_gen_tokenizer_excludes_folder(void **state)
{
    (void)state;
    const char *cfg = config_small("gen-excl", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    sy_options o = opts(cfg, tu_tmp("gen-excl-out"));
    o.tokenizer_gen = 1;
    o.tokenizer_dir = tu_tmp("gen-excl");
    synth_fails(&o, QK_EFORMAT, "generate the tokenizer or copy it from");
    assert_false(tu_exists(o.out_dir));
}

/* ---- output folder ------------------------------------------------------------------------ */

static void test_out_not_empty_refused(void **state)
{
    (void)state;
    const char *cfg = config_small("ne", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_mkdir("ne-out");
    tu_write(tu_join(out, "keep.txt"), "x", 1);
    sy_options o = opts(cfg, out);
    synth_fails(&o, QK_EFORMAT, "not empty");
    assert_true(tu_exists(tu_join(out, "keep.txt")));
    assert_false(tu_exists(tu_join(out, "config.json")));
}

static void test_out_not_empty_force_replaces(void **state)
{
    (void)state;
    const char *cfg = config_small("nf", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_mkdir("nf-out");
    tu_write(tu_join(out, "old.txt"), "x", 1);
    sy_options o = opts(cfg, out);
    o.force = 1;
    sy_result r;
    synth_ok(&o, &r);
    assert_false(tu_exists(tu_join(out, "old.txt")));
    assert_true(tu_exists(tu_join(out, "model.safetensors")));
}

static void test_out_force_refuses_subfolder(void **state)
{
    (void)state;
    const char *cfg = config_small("nsub", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_mkdir("nsub-out");
    assert_int_equal(mkdir(tu_join(out, "inner"), 0755), 0);
    sy_options o = opts(cfg, out);
    o.force = 1;
    synth_fails(&o, QK_EFORMAT, "holds the sub-folder 'inner'");
    assert_true(tu_exists(tu_join(out, "inner")));
}

static void test_out_empty_folder_accepted(void **state)
{
    (void)state;
    const char *cfg = config_small("ef", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_mkdir("ef-out");
    char slashed[4096];
    snprintf(slashed, sizeof slashed, "%s//", out);
    sy_options o = opts(cfg, slashed);
    sy_result r;
    synth_ok(&o, &r);
    assert_true(tu_exists(tu_join(out, "model.safetensors")));
}

static void test_out_is_a_file(void **state)
{
    (void)state;
    const char *cfg = config_small("of", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    const char *out = tu_tmp("of-out");
    tu_write(out, "x", 1);
    sy_options o = opts(cfg, out);
    o.force = 1;
    synth_fails(&o, QK_EFORMAT, "exists and is not a folder");
}

/* A signal in the middle of writing: the handler's two calls leave nothing behind. */
static const char *interrupt_out;
static int interrupted;

static void interrupt_now(void *ud, uint64_t done, uint64_t total)
{
    (void)ud;
    (void)total;
    if (interrupted++ || done == 0)
        return;
    of_remove_all_temporaries();
    sy_remove_temporaries();
}

static void test_interrupted_run_leaves_nothing(void **state)
{
    (void)state;
    const char *cfg = config_small("intr", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    tu_write(tu_join(tu_tmp("intr"), "tokenizer.json"), "{}", 2);
    interrupt_out = tu_tmp("intr-out");
    sy_options o = opts(cfg, interrupt_out);
    o.shards = 2;
    o.progress = interrupt_now;
    synth_fails(&o, QK_EIO, "intr-out");
    assert_int_equal(interrupted > 0, 1);
    assert_false(tu_exists(interrupt_out));
}

/* A write refused by the system half-way through (here the file size limit): the writer
 * thread's error comes back with the file's name and nothing is left. */
static void test_write_failure_reported(void **state)
{
    (void)state;
    struct rlimit old, small = {64 << 10, 64 << 10};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    sy_options o = opts(config_big("efbig"), tu_tmp("efbig-out"));
    o.shards = 2;
    qk_err err = {{0}};
    sy_result r;
    int rc = sy_synth(&o, &r, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, QK_EIO);
    if (!strstr(err.msg, "model-00001-of-00002.safetensors: write failed: File too large"))
        fail_msg("message: %s", err.msg);
    assert_false(tu_exists(o.out_dir));
}

/* ---- bad configs -------------------------------------------------------------------------- */

static void bad_config(const char *name, const char *json, int code, const char *fragment)
{
    const char *cfg = config_text(name, json);
    char out[4096];
    snprintf(out, sizeof out, "%s-out", cfg);
    sy_options o = opts(cfg, out);
    synth_fails(&o, code, fragment);
    assert_false(tu_exists(out));
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_attention_heads\": 4, " \
             "\"vocab_size\": 100"

static void test_bad_missing_config(void **state)
{
    (void)state;
    sy_options o = opts(tu_tmp("nope/config.json"), tu_tmp("nope-out"));
    synth_fails(&o, QK_EFORMAT, "nope/config.json: cannot open");
}

static void test_bad_config_not_json(void **state)
{
    (void)state;
    bad_config("notjson", "{\"architectures\": [\"LlamaForCausalLM\"], ", QK_EFORMAT,
               "not valid JSON");
}

static void test_bad_config_not_object(void **state)
{
    (void)state;
    bad_config("notobj", "[1, 2]", QK_EFORMAT, "not a JSON object");
}

static void test_bad_unsupported_arch(void **state)
{
    (void)state;
    bad_config("gpt2", "{\"architectures\": [\"GPT2LMHeadModel\"], " BASE
               ", \"num_hidden_layers\": 2}",
               QK_EUNSUPPORTED, "'GPT2LMHeadModel' is not supported (supported: "
                                "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, "
                                "Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, "
                                "Llama4ForConditionalGeneration, Llama4ForCausalLM)");
}

/* Mixture-of-experts configs: one 2-D tensor per expert and projection, a router per block. */
static void test_table_qwen3_moe(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Qwen3-30B-A3B/config.json");
    table tb;
    table_real(p, &tb);
    /* per block: q k v o, q/k norms, router, 128 experts x 3, two norms */
    assert_int_equal(tb.n, 1 + 48 * (4 + 2 + 1 + 128 * 3 + 2) + 2);
    table_shape(&tb, "model.layers.0.mlp.gate.weight", 128, 2048);
    table_shape(&tb, "model.layers.47.mlp.experts.127.down_proj.weight", 2048, 768);
    table_shape(&tb, "model.layers.47.mlp.experts.127.gate_proj.weight", 768, 2048);
    table_shape(&tb, "model.layers.3.self_attn.q_proj.weight", 4096, 2048);
    assert_null(table_find(&tb, "model.layers.0.mlp.gate_proj.weight"));
    /* 30.5B parameters, as the model card says (30,532,122,624) */
    assert_true(tb.params == 30532122624ull);
    free(tb.t);
}

static void test_table_mixtral(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Mixtral-8x7B-v0.1/config.json");
    table tb;
    table_real(p, &tb);
    assert_int_equal(tb.n, 1 + 32 * (4 + 1 + 8 * 3 + 2) + 2);
    table_shape(&tb, "model.layers.31.block_sparse_moe.gate.weight", 8, 4096);
    table_shape(&tb, "model.layers.31.block_sparse_moe.experts.7.w1.weight", 14336, 4096);
    table_shape(&tb, "model.layers.31.block_sparse_moe.experts.7.w2.weight", 4096, 14336);
    /* 46.7B parameters (Mixtral's model card) */
    assert_true(tb.params == 46702792704ull);
    free(tb.t);
}

/* Llama 4 Scout: the text model's keys from text_config, fused 3-D expert tensors
 * [n_expert, n_embd, 2·n_ff] and [n_expert, n_ff, n_embd], a shared expert and a router per
 * block, everything under language_model. */
static void test_table_llama4_scout(void **state)
{
    (void)state;
    TU_SHARED(p, "hf-configs/Llama-4-Scout-17B-16E-Instruct/config.json");
    table tb;
    table_real(p, &tb);
    /* per block: q k v o, router, gate_up, down, 3 shared, 2 norms */
    assert_int_equal(tb.n, 1 + 48 * (4 + 1 + 2 + 3 + 2) + 2);
    const sy_tensor *gu = table_find(&tb, "language_model.model.layers.47.feed_forward.experts.gate_up_proj");
    assert_non_null(gu);
    assert_int_equal(gu->n_dims, 3);
    assert_int_equal(gu->shape[0], 16);
    assert_int_equal(gu->shape[1], 5120);
    assert_int_equal(gu->shape[2], 16384);
    const sy_tensor *dn = table_find(&tb, "language_model.model.layers.0.feed_forward.experts.down_proj");
    assert_non_null(dn);
    assert_int_equal(dn->shape[0], 16);
    assert_int_equal(dn->shape[1], 8192);
    assert_int_equal(dn->shape[2], 5120);
    table_shape(&tb, "language_model.model.layers.0.feed_forward.router.weight", 16, 5120);
    table_shape(&tb, "language_model.model.layers.0.feed_forward.shared_expert.down_proj.weight", 5120, 8192);
    table_shape(&tb, "language_model.lm_head.weight", 202048, 5120);
    assert_null(table_find(&tb, "language_model.model.layers.0.feed_forward.gate_proj.weight"));
    /* Llama 4 Scout's text model: 107.8 B parameters (109 B with the vision tower) */
    assert_true(tb.params > 107000000000ull && tb.params < 108000000000ull);
    free(tb.t);
}

/* decoder_sparse_step and mlp_only_layers make dense blocks between MoE blocks. */
static void test_table_qwen3_moe_dense_layers(void **state)
{
    (void)state;
    table tb;
    qk_err err = {{0}};
    const char *p = config_small("moe-dense", "Qwen3MoeForCausalLM", 64, 4, 2, 16,
                                 "\"num_experts\": 4, \"num_experts_per_tok\": 2, "
                                 "\"moe_intermediate_size\": 32, \"decoder_sparse_step\": 2, "
                                 "\"mlp_only_layers\": [1]");
    if (table_of(p, &tb, &err) != QK_OK)
        fail_msg("%s", err.msg);
    /* two layers: layer 0 dense ((0+1) % 2 != 0), layer 1 dense (listed) */
    table_shape(&tb, "model.layers.0.mlp.gate_proj.weight", 160, 64);
    table_shape(&tb, "model.layers.1.mlp.down_proj.weight", 64, 160);
    assert_null(table_find(&tb, "model.layers.1.mlp.gate.weight"));
    free(tb.t);
    p = config_small("moe-step", "Qwen3MoeForCausalLM", 64, 4, 2, 16,
                     "\"num_experts\": 4, \"num_experts_per_tok\": 2, "
                     "\"moe_intermediate_size\": 32, \"decoder_sparse_step\": 2");
    if (table_of(p, &tb, &err) != QK_OK)
        fail_msg("%s", err.msg);
    table_shape(&tb, "model.layers.1.mlp.experts.3.up_proj.weight", 32, 64);
    table_shape(&tb, "model.layers.0.mlp.up_proj.weight", 160, 64);
    free(tb.t);
}

static void test_bad_no_architectures(void **state)
{
    (void)state;
    bad_config("noarch", "{" BASE ", \"num_hidden_layers\": 2}", QK_EFORMAT,
               "missing 'architectures'");
}

static void test_bad_missing_field(void **state)
{
    (void)state;
    bad_config("nohidden", "{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 96, "
               "\"num_attention_heads\": 4, \"vocab_size\": 100, \"num_hidden_layers\": 2}",
               QK_EFORMAT, "missing 'hidden_size'");
}

static void test_bad_zero_layers(void **state)
{
    (void)state;
    bad_config("zerol", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 0}",
               QK_ERANGE, "'num_hidden_layers' is 0, outside [1, 65536]");
}

static void test_bad_field_type(void **state)
{
    (void)state;
    bad_config("strl", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": \"2\"}",
               QK_EFORMAT, "'num_hidden_layers' must be an integer");
}

static void test_bad_fractional(void **state)
{
    (void)state;
    bad_config("frac", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 2.5}",
               QK_EFORMAT, "'num_hidden_layers' must be an integer, not 2.5");
}

static void test_bad_huge_dim(void **state)
{
    (void)state;
    bad_config("huge", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 1e300, "
               "\"intermediate_size\": 96, \"num_attention_heads\": 4, \"vocab_size\": 100, "
               "\"num_hidden_layers\": 2}",
               QK_ERANGE, "'hidden_size' is 1e+300, outside");
}

static void test_bad_heads_not_dividing_hidden(void **state)
{
    (void)state;
    bad_config("hdiv", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 66, "
               "\"intermediate_size\": 96, \"num_attention_heads\": 4, \"vocab_size\": 100, "
               "\"num_hidden_layers\": 2}",
               QK_ERANGE, "hidden_size 66 is not divisible by num_attention_heads 4");
}

static void test_bad_kv_heads(void **state)
{
    (void)state;
    bad_config("kvdiv", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 2, \"num_key_value_heads\": 3}",
               QK_ERANGE, "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
}

static void test_bad_qwen3_without_head_dim(void **state)
{
    (void)state;
    bad_config("q3hd", "{\"architectures\": [\"Qwen3ForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 2}",
               QK_EFORMAT, "Qwen3ForCausalLM needs an explicit 'head_dim'");
}

static void test_bad_odd_head_dim(void **state)
{
    (void)state;
    bad_config("oddhd", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 2, \"head_dim\": 7}",
               QK_ERANGE, "head_dim 7 is odd");
}

static void test_bad_tie_type(void **state)
{
    (void)state;
    bad_config("tie", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE
               ", \"num_hidden_layers\": 2, \"tie_word_embeddings\": 1}",
               QK_EFORMAT, "'tie_word_embeddings' must be true or false");
}

static void test_bad_options(void **state)
{
    (void)state;
    const char *cfg = config_small("opt", "LlamaForCausalLM", 64, 4, 2, 0, NULL);
    sy_options o = opts(cfg, tu_tmp("opt-out"));
    o.dtype = ST_I8;
    synth_fails(&o, QK_EUNSUPPORTED, "dtype I8 is not one of F32, F16, BF16");
    o = opts(cfg, tu_tmp("opt-out"));
    o.shards = 2;
    o.max_shard_size = 1000;
    synth_fails(&o, QK_EFORMAT, "not both");
}

/* ---- FP8 checkpoints (--dtype fp8) ---------------------------------------------------------- */

#define FP8_B 128

/* hidden 192 and widths of 160 make every scale grid 2 x 2 with partial last blocks (64 and 32
 * wide); head_dim 48. */
static const char *config_fp8_moe(const char *name)
{
    return config_small(name, "Qwen3MoeForCausalLM", 192, 4, 2, 48,
                        "\"num_experts\": 4, \"num_experts_per_tok\": 2, "
                        "\"moe_intermediate_size\": 160, \"tie_word_embeddings\": false");
}

static const char *config_fp8_llama(const char *name)
{
    return config_small(name, "LlamaForCausalLM", 192, 4, 2, 0,
                        "\"attention_bias\": true, \"mlp_bias\": true");
}

/* Which tensors an FP8 checkpoint stores as FP8, by HF name (DeepSeek-V3 / Qwen3-FP8: the
 * blocks' Linear weights; not embeddings, lm_head, norms, biases or the MoE router). */
static int is_fp8_name(const char *name, int n_dims)
{
    size_t n = strlen(name);
    int weight = n > 7 && !strcmp(name + n - 7, ".weight");
    return n_dims == 2 && weight && strstr(name, "model.layers.") &&
           (strstr(name, "_proj.weight") || strstr(name, ".experts."));
}

/* The bound on |fp8(code)·scale − x| for code = e4m3(x / scale): half a step of e4m3 is at most
 * 2^-4 of the value in the normal range (3 mantissa bits) and 2^-10 below 2^-6 (subnormal step
 * 2^-9), times the scale; the float32 division and multiplication add two roundings of 2^-24
 * each (relative). So |x|·(2^-4 + 2^-22) + scale·2^-10·(1 + 2^-23); at most about 2^-4 of the
 * block's max|x|. */
static double fp8_bound(double x, double scale)
{
    return fabs(x) * (0x1p-4 + 0x1p-22) + scale * 0x1p-10 * (1 + 0x1p-23);
}

/* Every tensor of the FP8 checkpoint at out against the float32 values synth generates for the
 * config: the right dtypes and scale shapes, scales equal to max|x| / 448 per block, every
 * dequantized value within fp8_bound of its float32 value, BF16 tensors the bf16 rounding. */
static void check_fp8_checkpoint(const char *cfg, const char *out, uint64_t seed, size_t *n_fp8)
{
    table tb;
    qk_err err = {{0}};
    if (table_of(cfg, &tb, &err) != QK_OK)
        fail_msg("%s", err.msg);
    st_model *m = open_model(out);
    size_t linear = 0;
    double worst = 0; /* max error / block max */
    for (size_t i = 0; i < tb.n; i++) {
        const sy_tensor *t = &tb.t[i];
        assert_int_equal(t->linear, is_fp8_name(t->name, t->n_dims));
        linear += t->linear != 0;
        const st_tensor *s = st_model_find(m, t->name);
        if (!s)
            fail_msg("'%s' missing", t->name);
        const int64_t rows = t->shape[0], cols = t->n_dims == 2 ? t->shape[1] : 1;
        float *x = malloc((size_t)(rows * cols) * sizeof *x);
        assert_non_null(x);
        sy_fill(sy_tensor_key(seed, t->name), 0, (size_t)(rows * cols), t->mean, t->std, ST_F32, x);
        char sname[SY_NAME_MAX + 16];
        snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
        const st_tensor *sc = st_model_find(m, sname);
        if (!t->linear) {
            assert_int_equal(s->dtype, ST_BF16);
            assert_null(sc);
            const uint16_t *h = s->data;
            for (int64_t k = 0; k < rows * cols; k++)
                if (h[k] != q_fp32_to_bf16(x[k]))
                    fail_msg("%s[%lld]: bf16 %04x, want %04x", t->name, (long long)k, h[k],
                             q_fp32_to_bf16(x[k]));
            free(x);
            continue;
        }
        const int64_t gr = (rows + FP8_B - 1) / FP8_B, gc = (cols + FP8_B - 1) / FP8_B;
        assert_int_equal(s->dtype, ST_F8_E4M3);
        assert_int_equal(s->n_dims, 2);
        assert_int_equal(s->shape[0], rows);
        assert_int_equal(s->shape[1], cols);
        if (!sc)
            fail_msg("'%s' missing", sname);
        assert_int_equal(sc->dtype, ST_F32);
        assert_int_equal(sc->n_dims, 2);
        assert_int_equal(sc->shape[0], gr);
        assert_int_equal(sc->shape[1], gc);
        const float *scale = sc->data;
        const uint8_t *code = s->data;
        /* the scales, recomputed here */
        for (int64_t br = 0; br < gr; br++)
            for (int64_t bc = 0; bc < gc; bc++) {
                float amax = 0;
                for (int64_t r = br * FP8_B; r < rows && r < (br + 1) * FP8_B; r++)
                    for (int64_t c = bc * FP8_B; c < cols && c < (bc + 1) * FP8_B; c++)
                        amax = fmaxf(amax, fabsf(x[r * cols + c]));
                const float want = amax > 0 ? amax / 448.0f : 1.0f;
                if (q_f32_bits(scale[br * gc + bc]) != q_f32_bits(want))
                    fail_msg("%s block (%lld, %lld): scale %.9g, want %.9g", sname, (long long)br,
                             (long long)bc, scale[br * gc + bc], want);
            }
        float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
        assert_non_null(deq);
        q_fp8_dequant_rows(Q_FP8_E4M3, code, scale, cols, FP8_B, FP8_B, 0, rows, deq);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                const int64_t k = r * cols + c;
                const float sk = scale[(r / FP8_B) * gc + c / FP8_B];
                if ((code[k] & 0x7F) == 0x7F)
                    fail_msg("%s[%lld]: NaN code", t->name, (long long)k);
                const double e = fabs((double)deq[k] - x[k]);
                if (e > fp8_bound(x[k], sk))
                    fail_msg("%s (%lld, %lld): %.9g dequantizes to %.9g (scale %.9g)", t->name,
                             (long long)r, (long long)c, x[k], deq[k], sk);
                worst = fmax(worst, e / (448.0 * sk));
            }
        free(deq);
        free(x);
    }
    /* nothing else in the files, and the bound is e4m3's: tight, not vacuous */
    assert_int_equal(st_model_n_tensors(m), tb.n + linear);
    assert_true(worst <= 0x1p-4 * (1 + 0x1p-20));
    assert_true(worst > 0x1p-6);
    *n_fp8 = linear;
    st_model_close(m);
    free(tb.t);
}

static void expect_fp8_config(const char *out)
{
    cJSON *c = tu_read_json(tu_join(out, "config.json"));
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "quantization_config");
    assert_true(cJSON_IsObject(q));
    assert_string_equal(cJSON_GetObjectItem(q, "quant_method")->valuestring, "fp8");
    assert_string_equal(cJSON_GetObjectItem(q, "activation_scheme")->valuestring, "dynamic");
    assert_string_equal(cJSON_GetObjectItem(q, "fmt")->valuestring, "e4m3");
    const cJSON *b = cJSON_GetObjectItem(q, "weight_block_size");
    assert_int_equal(cJSON_GetArraySize(b), 2);
    assert_int_equal(cJSON_GetArrayItem(b, 0)->valueint, 128);
    assert_int_equal(cJSON_GetArrayItem(b, 1)->valueint, 128);
    assert_string_equal(cJSON_GetObjectItem(c, "torch_dtype")->valuestring, "bfloat16");
    cJSON_Delete(c);
}

static void test_fp8_qwen3_moe(void **state)
{
    (void)state;
    const char *cfg = config_fp8_moe("fp8moe"), *out = tu_tmp("fp8moe-out");
    sy_options o = opts(cfg, out);
    o.dtype = ST_F8_E4M3;
    sy_result r;
    synth_ok(&o, &r);
    size_t n_fp8;
    check_fp8_checkpoint(cfg, out, o.seed, &n_fp8);
    /* per layer q k v o and 4 experts x 3 */
    assert_int_equal(n_fp8, 2 * (4 + 4 * 3));
    st_model *m = open_model(out);
    assert_int_equal(r.n_tensors, st_model_n_tensors(m));
    assert_true(r.n_bytes == st_model_data_bytes(m));
    expect_shape(m, "model.layers.1.mlp.experts.3.down_proj.weight_scale_inv", 2, 2);
    assert_int_equal(st_model_find(m, "model.layers.1.mlp.gate.weight")->dtype, ST_BF16);
    assert_int_equal(st_model_find(m, "model.layers.1.self_attn.q_norm.weight")->dtype, ST_BF16);
    assert_int_equal(st_model_find(m, "lm_head.weight")->dtype, ST_BF16);
    uint64_t elements = 0; /* parameters: the scale grids do not count */
    for (size_t i = 0; i < st_model_n_tensors(m); i++)
        if (!strstr(st_model_tensor(m, i)->name, "_scale_inv"))
            elements += st_model_tensor(m, i)->n_elements;
    assert_true(r.n_params == elements);
    for (size_t i = 1; i < st_model_n_tensors(m); i++) /* sorted: weight before its scale */
        assert_true(strcmp(st_model_tensor(m, i - 1)->name, st_model_tensor(m, i)->name) < 0);
    st_model_close(m);
    expect_fp8_config(out);
}

static void test_fp8_llama_biases_stay_bf16(void **state)
{
    (void)state;
    const char *cfg = config_fp8_llama("fp8llama"), *out = tu_tmp("fp8llama-out");
    sy_options o = opts(cfg, out);
    o.dtype = ST_F8_E4M3;
    o.seed = 11;
    sy_result r;
    synth_ok(&o, &r);
    size_t n_fp8;
    check_fp8_checkpoint(cfg, out, o.seed, &n_fp8);
    assert_int_equal(n_fp8, 2 * 7);
    st_model *m = open_model(out);
    assert_int_equal(st_model_find(m, "model.layers.0.self_attn.q_proj.bias")->dtype, ST_BF16);
    assert_int_equal(st_model_find(m, "model.layers.0.mlp.down_proj.bias")->dtype, ST_BF16);
    assert_int_equal(st_model_find(m, "model.embed_tokens.weight")->dtype, ST_BF16);
    expect_shape(m, "model.layers.0.mlp.down_proj.weight_scale_inv", 2, 2);
    st_model_close(m);
    expect_fp8_config(out);
}

/* FP8 bytes do not depend on the thread count or the shard layout. Every tensor in its own file
 * puts each weight and its scale grid in different files (the grid is recomputed when written);
 * the bytes are those of the single-file run. */
static void test_fp8_threads_and_shards(void **state)
{
    (void)state;
    const char *cfg = config_fp8_moe("fp8det");
    synth_to(cfg, tu_tmp("fp8det-1"), 1, ST_F8_E4M3, 3, 0);
    synth_to(cfg, tu_tmp("fp8det-2"), 2, ST_F8_E4M3, 3, 0);
    assert_true(files_equal(tu_join(tu_tmp("fp8det-1"), "model.safetensors"),
                            tu_join(tu_tmp("fp8det-2"), "model.safetensors")));
    st_model *s = open_model(tu_tmp("fp8det-1"));
    const size_t n = st_model_n_tensors(s);
    sy_options o = opts(cfg, tu_tmp("fp8det-n"));
    o.dtype = ST_F8_E4M3;
    o.seed = 3;
    o.shards = (int64_t)n;
    sy_result r;
    synth_ok(&o, &r);
    assert_int_equal(r.n_files, (int64_t)n);
    st_model *m = open_model(tu_tmp("fp8det-n"));
    assert_int_equal(st_model_n_files(m), n);
    expect_same_tensors(m, s);
    const st_tensor *w = st_model_find(m, "model.layers.0.self_attn.o_proj.weight");
    const st_tensor *ws = st_model_find(m, "model.layers.0.self_attn.o_proj.weight_scale_inv");
    assert_int_not_equal(w->file, ws->file);
    /* total_size counts each tensor with its own dtype */
    int found = 0;
    for (size_t i = 0; i < st_model_n_index_meta(m); i++)
        if (!strcmp(st_model_index_meta_key(m, i), "total_size") && ++found)
            assert_true(strtoull(st_model_index_meta_value(m, i), NULL, 10) ==
                        st_model_data_bytes(s));
    assert_int_equal(found, 1);
    /* by size: a limit below every weight gives each its own file, scales join the next */
    o.out_dir = tu_tmp("fp8det-ms");
    o.shards = 0;
    o.max_shard_size = 1000;
    synth_ok(&o, &r);
    st_model *ms = open_model(tu_tmp("fp8det-ms"));
    expect_same_tensors(ms, s);
    st_model_close(ms);
    st_model_close(m);
    st_model_close(s);
}

/* The same seed gives the same float32 values in f32 and fp8 runs: fp8 codes are the f32 values
 * quantized (check_fp8_checkpoint), and a BF16 tensor of an fp8 run is byte-identical to the bf16
 * run's. A quantization_config in the given config is replaced by fp8's, and dropped by the
 * other dtypes. */
static void test_fp8_shares_values_and_config(void **state)
{
    (void)state;
    const char *cfg = config_small("fp8q", "Qwen3ForCausalLM", 192, 4, 2, 48,
                                   "\"quantization_config\": {\"quant_method\": \"fp8\", "
                                   "\"weight_block_size\": [64, 64]}");
    synth_to(cfg, tu_tmp("fp8q-fp8"), 2, ST_F8_E4M3, 5, 0);
    synth_to(cfg, tu_tmp("fp8q-bf16"), 2, ST_BF16, 5, 0);
    expect_fp8_config(tu_tmp("fp8q-fp8"));
    size_t n_fp8;
    check_fp8_checkpoint(cfg, tu_tmp("fp8q-fp8"), 5, &n_fp8);
    assert_int_equal(n_fp8, 2 * 7);
    st_model *a = open_model(tu_tmp("fp8q-fp8")), *b = open_model(tu_tmp("fp8q-bf16"));
    for (size_t i = 0; i < st_model_n_tensors(b); i++) {
        const st_tensor *tb = st_model_tensor(b, i), *ta = st_model_find(a, tb->name);
        assert_non_null(ta);
        if (ta->dtype == ST_BF16)
            assert_memory_equal(ta->data, tb->data, tb->nbytes);
    }
    st_model_close(a);
    st_model_close(b);
    cJSON *c = tu_read_json(tu_join(tu_tmp("fp8q-bf16"), "config.json"));
    assert_null(cJSON_GetObjectItemCaseSensitive(c, "quantization_config"));
    cJSON_Delete(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_tinyllama),
        cmocka_unit_test(test_table_qwen25_biases_tied),
        cmocka_unit_test(test_table_qwen3_head_dim_qk_norm),
        cmocka_unit_test(test_table_smollm2_rope_parameters),
        cmocka_unit_test(test_table_llama32),
        cmocka_unit_test(test_table_mistral24b_matches_real_index),
        cmocka_unit_test(test_table_smollm3_as_llama_matches_real_index),
        cmocka_unit_test(test_supported_list_names_every_arch),
        cmocka_unit_test(test_write_llama_untied),
        cmocka_unit_test(test_write_qwen2_biases_tied),
        cmocka_unit_test(test_write_qwen3_decoupled_head_dim),
        cmocka_unit_test(test_write_mistral_and_llama_biases),
        cmocka_unit_test(test_config_rewritten),
        cmocka_unit_test(test_config_gets_torch_dtype_when_absent),
        cmocka_unit_test(test_value_statistics),
        cmocka_unit_test(test_same_args_same_bytes_any_threads),
        cmocka_unit_test(test_dtypes_and_layers_share_values),
        cmocka_unit_test(test_fill_split_independent),
        cmocka_unit_test(test_shards_by_count),
        cmocka_unit_test(test_shards_by_max_size),
        cmocka_unit_test(test_shard_count_above_tensor_count),
        cmocka_unit_test(test_tokenizer_copied_from_config_folder),
        cmocka_unit_test(test_tokenizer_from_real_folder),
        cmocka_unit_test(test_tokenizer_folder_without_files),
        cmocka_unit_test(test_tokenizer_folder_missing),
        cmocka_unit_test(test_gen_tokenizer_layout),
        cmocka_unit_test(test_gen_tokenizer_wire_bytes),
        cmocka_unit_test(test_gen_tokenizer_deterministic_and_nested),
        cmocka_unit_test(test_gen_tokenizer_large_vocab),
        cmocka_unit_test(test_gen_tokenizer_smallest_and_largest),
        cmocka_unit_test(test_gen_tokenizer_encodes_english),
        cmocka_unit_test(test_gen_tokenizer_loads_as_spm),
        cmocka_unit_test(test_gen_tokenizer_hf_json),
        cmocka_unit_test(test_gen_tokenizer_in_synth),
        cmocka_unit_test(test_gen_tokenizer_demo_config),
        cmocka_unit_test(test_gen_tokenizer_vocab_too_small),
        cmocka_unit_test(test_gen_tokenizer_vocab_too_large),
        cmocka_unit_test(test_gen_tokenizer_excludes_folder),
        cmocka_unit_test(test_out_not_empty_refused),
        cmocka_unit_test(test_out_not_empty_force_replaces),
        cmocka_unit_test(test_out_force_refuses_subfolder),
        cmocka_unit_test(test_out_empty_folder_accepted),
        cmocka_unit_test(test_out_is_a_file),
        cmocka_unit_test(test_interrupted_run_leaves_nothing),
        cmocka_unit_test(test_write_failure_reported),
        cmocka_unit_test(test_bad_missing_config),
        cmocka_unit_test(test_bad_config_not_json),
        cmocka_unit_test(test_bad_config_not_object),
        cmocka_unit_test(test_bad_unsupported_arch),
        cmocka_unit_test(test_table_qwen3_moe),
        cmocka_unit_test(test_table_mixtral),
        cmocka_unit_test(test_table_llama4_scout),
        cmocka_unit_test(test_table_qwen3_moe_dense_layers),
        cmocka_unit_test(test_bad_no_architectures),
        cmocka_unit_test(test_bad_missing_field),
        cmocka_unit_test(test_bad_zero_layers),
        cmocka_unit_test(test_bad_field_type),
        cmocka_unit_test(test_bad_fractional),
        cmocka_unit_test(test_bad_huge_dim),
        cmocka_unit_test(test_bad_heads_not_dividing_hidden),
        cmocka_unit_test(test_bad_kv_heads),
        cmocka_unit_test(test_bad_qwen3_without_head_dim),
        cmocka_unit_test(test_bad_odd_head_dim),
        cmocka_unit_test(test_bad_tie_type),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_fp8_qwen3_moe),
        cmocka_unit_test(test_fp8_llama_biases_stay_bf16),
        cmocka_unit_test(test_fp8_threads_and_shards),
        cmocka_unit_test(test_fp8_shares_values_and_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
