/* test_awq.c — the 4-bit checkpoint layouts and AutoAWQ's quantizer against worked examples taken
 * from the formats' own sources (AutoAWQ awq/utils/packing_utils.py and gemm.py: AWQ_ORDER
 * [0,2,4,6,1,3,5,7]; compressed-tensors pack_quantized: q + 8 in little-endian nibbles), then
 * pack → row decode round trips on random data, including zero points packed along the output
 * dimension. */
#include "tu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/awq.h"
#include "../formats/awq.h"

/* One row of eight output columns: q = [0,3,5,6,8,12,15,8] packs to 0x8C63F850 (AutoAWQ order). */
static void test_awq_word(void **state)
{
    (void)state;
    const uint8_t qcol[8] = {0, 3, 5, 6, 8, 12, 15, 8};
    uint8_t q[8], z[8];
    for (int o = 0; o < 8; o++)
        q[o] = qcol[o], z[o] = 0; /* [out = 8][in = 1], one group of 1 */
    int32_t qw, qz;
    awq_gemm_pack(q, z, 8, 1, 1, &qw, &qz);
    assert_int_equal((uint32_t)qw, 0x8C63F850u);
    const uint8_t seq[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    awq_gemm_pack(seq, z, 8, 1, 1, &qw, &qz);
    assert_int_equal((uint32_t)qw, 0x86427531u);
}

/* compressed-tensors: signed q [-8,-7,-1,0,1,2,6,7] (stored + 8) packs to 0xFEA98710; zero points
 * [-8,-3,0,2,5,7,-1,1] of eight rows pack along the output dimension to 0x97FDA850. */
static void test_ct_words(void **state)
{
    (void)state;
    const int sq[8] = {-8, -7, -1, 0, 1, 2, 6, 7}, szp[8] = {-8, -3, 0, 2, 5, 7, -1, 1};
    uint8_t q[8 * 8], z[8];
    memset(q, 8, sizeof q);
    for (int i = 0; i < 8; i++)
        q[i] = (uint8_t)(sq[i] + 8); /* row 0, in = 8 */
    for (int o = 0; o < 8; o++)
        z[o] = (uint8_t)(szp[o] + 8); /* one group of 8 */
    int32_t packed[8], zp[1];
    ct_pack(q, z, 8, 8, 8, packed, zp);
    assert_int_equal((uint32_t)packed[0], 0xFEA98710u);
    assert_int_equal((uint32_t)zp[0], 0x97FDA850u);
}

/* AutoAWQ's pseudo_quantize_tensor on the documented group: s = f16(0.1), z = 5,
 * q = [0,3,5,6,8,12,15,8]. */
static void test_quantize_example(void **state)
{
    (void)state;
    const float x[8] = {-0.5f, -0.2f, 0.0f, 0.1f, 0.3f, 0.7f, 1.0f, 0.26f};
    uint8_t q[8], z;
    float s, deq[8];
    awq_quantize_row(x, 8, 8, 4, q, &s, &z, deq);
    const uint8_t want[8] = {0, 3, 5, 6, 8, 12, 15, 8};
    assert_memory_equal(q, want, 8);
    assert_int_equal(z, 5);
    assert_true(s == 0.0999755859375f); /* 0.1 rounded to f16 */
    for (int i = 0; i < 8; i++)
        assert_true(deq[i] == (float)(q[i] - 5) * s);
}

/* Random linears: both layouts decode, row by row, to (q − z) · s exactly. */
static void test_roundtrips(void **state)
{
    (void)state;
    const int64_t out = 24, in = 64, g = 16, ng = in / g;
    uint8_t *q = malloc((size_t)(out * in)), *z = malloc((size_t)(out * ng));
    float *s_og = malloc((size_t)(out * ng) * sizeof(float)), *s_go = malloc((size_t)(out * ng) * sizeof(float));
    int32_t *qw = malloc((size_t)(out * in / 8) * 4), *qz = malloc((size_t)(out * ng / 8) * 4);
    int32_t *wp = malloc((size_t)(out * in / 8) * 4), *zp = malloc((size_t)((out + 7) / 8 * ng) * 4);
    float row[64];
    uint64_t seed = 11;
    for (int64_t i = 0; i < out * in; i++)
        q[i] = (uint8_t)(tu_rand(&seed) >> 60);
    for (int64_t i = 0; i < out * ng; i++) {
        z[i] = (uint8_t)(tu_rand(&seed) >> 60);
        s_og[i] = (float)((tu_rand(&seed) >> 40) + 1) * 1e-7f;
    }
    for (int64_t o = 0; o < out; o++)
        for (int64_t gi = 0; gi < ng; gi++)
            s_go[gi * out + o] = s_og[o * ng + gi];
    awq_gemm_pack(q, z, out, in, g, qw, qz);
    ct_pack(q, z, out, in, g, wp, zp);
    for (int64_t o = 0; o < out; o++) {
        awq_gemm_row(qw, qz, s_go, out, in, g, o, row);
        for (int64_t i = 0; i < in; i++)
            assert_true(row[i] == (float)(q[o * in + i] - z[o * ng + i / g]) * s_og[o * ng + i / g]);
        ct_row(wp, zp, s_og, out, in, g, o, row);
        for (int64_t i = 0; i < in; i++)
            assert_true(row[i] == (float)(q[o * in + i] - z[o * ng + i / g]) * s_og[o * ng + i / g]);
    }
    free(q), free(z), free(s_og), free(s_go), free(qw), free(qz), free(wp), free(zp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_awq_word),
        cmocka_unit_test(test_ct_words),
        cmocka_unit_test(test_quantize_example),
        cmocka_unit_test(test_roundtrips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
