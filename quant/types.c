#include "types.h"

#include <strings.h>

static const q_type_info_t TYPES[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = {"f32", 1, 4, 0},
    [Q_TYPE_F16] = {"f16", 1, 2, 0},
    [Q_TYPE_Q4_0] = {"q4_0", 32, 18, 1},
    [Q_TYPE_Q4_1] = {"q4_1", 32, 20, 1},
    [Q_TYPE_Q5_0] = {"q5_0", 32, 22, 1},
    [Q_TYPE_Q5_1] = {"q5_1", 32, 24, 1},
    [Q_TYPE_Q8_0] = {"q8_0", 32, 34, 1},
    [Q_TYPE_Q8_1] = {"q8_1", 32, 36, 1},
    [Q_TYPE_Q2_K] = {"q2_K", Q_QK_K, 84, 1},
    [Q_TYPE_Q3_K] = {"q3_K", Q_QK_K, 110, 1},
    [Q_TYPE_Q4_K] = {"q4_K", Q_QK_K, 144, 1},
    [Q_TYPE_Q5_K] = {"q5_K", Q_QK_K, 176, 1},
    [Q_TYPE_Q6_K] = {"q6_K", Q_QK_K, 210, 1},
    [Q_TYPE_Q8_K] = {"q8_K", Q_QK_K, 292, 1},
    [Q_TYPE_IQ2_XXS] = {"iq2_xxs", Q_QK_K, 66, 1},
    [Q_TYPE_IQ2_XS] = {"iq2_xs", Q_QK_K, 74, 1},
    [Q_TYPE_IQ3_XXS] = {"iq3_xxs", Q_QK_K, 98, 1},
    [Q_TYPE_IQ1_S] = {"iq1_s", Q_QK_K, 50, 1},
    [Q_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, 1},
    [Q_TYPE_IQ3_S] = {"iq3_s", Q_QK_K, 110, 1},
    [Q_TYPE_IQ2_S] = {"iq2_s", Q_QK_K, 82, 1},
    [Q_TYPE_IQ4_XS] = {"iq4_xs", Q_QK_K, 136, 1},
    [Q_TYPE_I8] = {"i8", 1, 1, 0},
    [Q_TYPE_I16] = {"i16", 1, 2, 0},
    [Q_TYPE_I32] = {"i32", 1, 4, 0},
    [Q_TYPE_I64] = {"i64", 1, 8, 0},
    [Q_TYPE_F64] = {"f64", 1, 8, 0},
    [Q_TYPE_IQ1_M] = {"iq1_m", Q_QK_K, 56, 1},
    [Q_TYPE_BF16] = {"bf16", 1, 2, 0},
    [Q_TYPE_TQ1_0] = {"tq1_0", Q_QK_K, 54, 1},
    [Q_TYPE_TQ2_0] = {"tq2_0", Q_QK_K, 66, 1},
};

const q_type_info_t *q_type_info(int type)
{
    if (type < 0 || type >= Q_TYPE_COUNT || !TYPES[type].name)
        return NULL;
    return &TYPES[type];
}

int q_type_from_name(const char *name)
{
    for (int t = 0; t < Q_TYPE_COUNT; t++)
        if (TYPES[t].name && strcasecmp(TYPES[t].name, name) == 0)
            return t;
    return -1;
}

size_t q_row_size(int type, int64_t n)
{
    const q_type_info_t *ti = q_type_info(type);
    if (!ti || n < 0 || n % ti->blck_size)
        return 0;
    return (size_t)(n / ti->blck_size) * ti->type_size;
}
