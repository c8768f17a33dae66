/* Element types of weights and their block layouts. Quantized types use GGUF's (ggml's) exact byte
 * layouts so that files read from and written to GGUF need no conversion. Pure data, no I/O. */
#ifndef TS_QUANT_DTYPE_H
#define TS_QUANT_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define TS_STATIC_ASSERT static_assert
#else
#define TS_STATIC_ASSERT _Static_assert
#endif

typedef enum ts_dtype {
    TS_DTYPE_F32 = 0,
    TS_DTYPE_F16,
    TS_DTYPE_BF16,
    TS_DTYPE_Q8_0,
    TS_DTYPE_Q4_0,
    TS_DTYPE_Q4_1,
    TS_DTYPE_Q4_K,
    TS_DTYPE_Q5_K,
    TS_DTYPE_Q6_K,
    TS_DTYPE_Q8_K, /* activations only: the partner of the K-quant dot products */
    TS_DTYPE_IQ4_NL, /* 4-bit indices into a fixed non-uniform grid (ts_iq4_nl_values), fp16 scale per 32 */
    TS_DTYPE_IQ4_XS, /* IQ4_NL's grid in 256-wide super-blocks: fp16 scale, 6-bit scale per 32 (4.25 bits) */
    TS_DTYPE_COUNT
} ts_dtype;

typedef struct ts_dtype_info {
    const char *name;  /* as users and GGUF tools spell it: "f32", "bf16", "q4_0", "q4_k" ... */
    int block_size;    /* elements per block (1 for plain floats) */
    int block_bytes;   /* bytes per block */
    int ggml_type;     /* the GGUF tensor type id */
} ts_dtype_info;

const ts_dtype_info *ts_dtype_get(ts_dtype t);
/* Returns -1 if the name is unknown. Accepts upper or lower case. */
int ts_dtype_from_name(const char *name, ts_dtype *out);
/* Returns -1 if tessera has no such GGUF type. */
int ts_dtype_from_ggml(int ggml_type, ts_dtype *out);
/* Bytes needed for a row of n elements; n must be a multiple of the block size (checked by callers). */
size_t ts_dtype_row_bytes(ts_dtype t, int64_t n);
int ts_dtype_is_quantized(ts_dtype t);
/* Average storage bits per weight, including scales. */
double ts_dtype_bits_per_weight(ts_dtype t);

#define TS_QK4_0 32
#define TS_QK4_1 32
#define TS_QK8_0 32
#define TS_QK_K 256
#define TS_K_SCALE_SIZE 12

typedef struct {
    uint16_t d; /* fp16 scale */
    uint8_t qs[TS_QK4_0 / 2];
} ts_block_q4_0;

typedef struct {
    uint16_t d; /* fp16 scale */
    uint16_t m; /* fp16 minimum */
    uint8_t qs[TS_QK4_1 / 2];
} ts_block_q4_1;

/* IQ4_NL: element k of a block is d * ts_iq4_nl_values[index], indices packed as Q4_0's (low nibbles
 * elements 0..15, high nibbles 16..31). The grid is denser near zero, where most weights are. */
#define TS_QK4_NL 32
typedef struct {
    uint16_t d;
    uint8_t qs[TS_QK4_NL / 2];
} ts_block_iq4_nl;
extern const int8_t ts_iq4_nl_values[16];

/* IQ4_XS: eight IQ4_NL blocks sharing one fp16 scale d; sub-block j (elements 32j..32j+31) has the
 * signed 6-bit scale ts_iq4_xs_sub_scale(b, j) in -32..31 (low 4 bits in scales_l, nibble j % 2 of byte
 * j / 2; high 2 bits at bit 2j of scales_h), and its 16 bytes of indices at qs + 16j in IQ4_NL's order.
 * Element 32j + k is d * sub_scale * ts_iq4_nl_values[index]. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[TS_QK_K / 64];
    uint8_t qs[TS_QK_K / 2];
} ts_block_iq4_xs;

static inline int ts_iq4_xs_sub_scale(const ts_block_iq4_xs *b, int j) {
    int ls = ((b->scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b->scales_h >> (2 * j)) & 3) << 4);
    return ls - 32;
}

static inline void ts_iq4_xs_set_sub_scale(ts_block_iq4_xs *b, int j, int s) {
    int ls = s + 32;
    b->scales_l[j / 2] = (uint8_t)((b->scales_l[j / 2] & (0xf0 >> (4 * (j % 2)))) | ((ls & 0x0f) << (4 * (j % 2))));
    b->scales_h = (uint16_t)((b->scales_h & ~(3u << (2 * j))) | ((unsigned)(ls >> 4) << (2 * j)));
}

typedef struct {
    uint16_t d;
    int8_t qs[TS_QK8_0];
} ts_block_q8_0;

typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[TS_K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[TS_QK_K / 2];
} ts_block_q4_k;

typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[TS_K_SCALE_SIZE];
    uint8_t qh[TS_QK_K / 8];
    uint8_t qs[TS_QK_K / 2];
} ts_block_q5_k;

typedef struct {
    uint8_t ql[TS_QK_K / 2];
    uint8_t qh[TS_QK_K / 4];
    int8_t scales[TS_QK_K / 16];
    uint16_t d;
} ts_block_q6_k;

typedef struct {
    float d;
    int8_t qs[TS_QK_K];
    int16_t bsums[TS_QK_K / 16];
} ts_block_q8_k;

TS_STATIC_ASSERT(sizeof(ts_block_q4_0) == 18, "q4_0 layout");
TS_STATIC_ASSERT(sizeof(ts_block_iq4_nl) == sizeof(ts_block_q4_0), "iq4_nl shares q4_0's layout");
TS_STATIC_ASSERT(sizeof(ts_block_iq4_xs) == 136, "iq4_xs layout");
TS_STATIC_ASSERT(sizeof(ts_block_q4_1) == 20, "q4_1 layout");
TS_STATIC_ASSERT(sizeof(ts_block_q8_0) == 34, "q8_0 layout");
TS_STATIC_ASSERT(sizeof(ts_block_q4_k) == 144, "q4_k layout");
TS_STATIC_ASSERT(sizeof(ts_block_q5_k) == 176, "q5_k layout");
TS_STATIC_ASSERT(sizeof(ts_block_q6_k) == 210, "q6_k layout");
TS_STATIC_ASSERT(sizeof(ts_block_q8_k) == 292, "q8_k layout");

#endif
