/* types.h — the ggml tensor type table: ids, names, block sizes, bytes per block.
 *
 * Contract: ids equal ggml's (GGUF stores them), so every type a GGUF file may name is listed here,
 * including the ones qkit cannot quantize; q_type_info() returns NULL for ids ggml never used or
 * removed. Pure data: formats/ uses it for sizes, quant/ adds the math elsewhere. */
#ifndef QKIT_QUANT_TYPES_H
#define QKIT_QUANT_TYPES_H

#include <stddef.h>
#include <stdint.h>

#define Q_QK_K 256 /* super-block size of the k-quants and iq4_xs */

enum q_type {
    Q_TYPE_F32 = 0,
    Q_TYPE_F16 = 1,
    Q_TYPE_Q4_0 = 2,
    Q_TYPE_Q4_1 = 3,
    Q_TYPE_Q5_0 = 6,
    Q_TYPE_Q5_1 = 7,
    Q_TYPE_Q8_0 = 8,
    Q_TYPE_Q8_1 = 9,
    Q_TYPE_Q2_K = 10,
    Q_TYPE_Q3_K = 11,
    Q_TYPE_Q4_K = 12,
    Q_TYPE_Q5_K = 13,
    Q_TYPE_Q6_K = 14,
    Q_TYPE_Q8_K = 15,
    Q_TYPE_IQ2_XXS = 16,
    Q_TYPE_IQ2_XS = 17,
    Q_TYPE_IQ3_XXS = 18,
    Q_TYPE_IQ1_S = 19,
    Q_TYPE_IQ4_NL = 20,
    Q_TYPE_IQ3_S = 21,
    Q_TYPE_IQ2_S = 22,
    Q_TYPE_IQ4_XS = 23,
    Q_TYPE_I8 = 24,
    Q_TYPE_I16 = 25,
    Q_TYPE_I32 = 26,
    Q_TYPE_I64 = 27,
    Q_TYPE_F64 = 28,
    Q_TYPE_IQ1_M = 29,
    Q_TYPE_BF16 = 30,
    Q_TYPE_TQ1_0 = 34,
    Q_TYPE_TQ2_0 = 35,
    Q_TYPE_COUNT = 39,
};

typedef struct {
    const char *name;  /* ggml's spelling: "q4_K", "bf16" ... */
    int64_t blck_size; /* values per block */
    size_t type_size;  /* bytes per block */
    int is_quantized;
} q_type_info_t;

/* Borrowed, static lifetime; NULL when id is not a ggml type. */
const q_type_info_t *q_type_info(int type);

/* Case-insensitive lookup by ggml name; -1 when unknown. */
int q_type_from_name(const char *name);

/* Bytes of a row of n values; 0 when n is not a multiple of the block size or the type is unknown
 * (callers check divisibility first). */
size_t q_row_size(int type, int64_t n);

#endif
