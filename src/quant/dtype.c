#include "quant/dtype.h"

#include <strings.h>

static const ts_dtype_info g_info[TS_DTYPE_COUNT] = {
    [TS_DTYPE_F32] = {"f32", 1, 4, 0},
    [TS_DTYPE_F16] = {"f16", 1, 2, 1},
    [TS_DTYPE_BF16] = {"bf16", 1, 2, 30},
    [TS_DTYPE_Q8_0] = {"q8_0", TS_QK8_0, sizeof(ts_block_q8_0), 8},
    [TS_DTYPE_Q4_0] = {"q4_0", TS_QK4_0, sizeof(ts_block_q4_0), 2},
    [TS_DTYPE_Q4_1] = {"q4_1", TS_QK4_1, sizeof(ts_block_q4_1), 3},
    [TS_DTYPE_Q4_K] = {"q4_k", TS_QK_K, sizeof(ts_block_q4_k), 12},
    [TS_DTYPE_Q5_K] = {"q5_k", TS_QK_K, sizeof(ts_block_q5_k), 13},
    [TS_DTYPE_Q6_K] = {"q6_k", TS_QK_K, sizeof(ts_block_q6_k), 14},
    [TS_DTYPE_Q8_K] = {"q8_k", TS_QK_K, sizeof(ts_block_q8_k), 15},
    [TS_DTYPE_IQ4_NL] = {"iq4_nl", TS_QK4_NL, sizeof(ts_block_iq4_nl), 20},
    [TS_DTYPE_IQ4_XS] = {"iq4_xs", TS_QK_K, sizeof(ts_block_iq4_xs), 23},
};

/* The levels GGUF's IQ4_NL uses (ggml type 20), so that files match llama.cpp's bit for bit. */
const int8_t ts_iq4_nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

const ts_dtype_info *ts_dtype_get(ts_dtype t) {
    if ((int)t < 0 || t >= TS_DTYPE_COUNT) return NULL;
    return &g_info[t];
}

int ts_dtype_from_name(const char *name, ts_dtype *out) {
    for (int i = 0; i < TS_DTYPE_COUNT; i++) {
        if (!strcasecmp(name, g_info[i].name)) {
            *out = (ts_dtype)i;
            return 0;
        }
    }
    if (!strcasecmp(name, "fp32") || !strcasecmp(name, "float32")) { *out = TS_DTYPE_F32; return 0; }
    if (!strcasecmp(name, "fp16") || !strcasecmp(name, "float16")) { *out = TS_DTYPE_F16; return 0; }
    if (!strcasecmp(name, "bfloat16")) { *out = TS_DTYPE_BF16; return 0; }
    return -1;
}

int ts_dtype_from_ggml(int ggml_type, ts_dtype *out) {
    for (int i = 0; i < TS_DTYPE_COUNT; i++) {
        if (g_info[i].ggml_type == ggml_type) {
            *out = (ts_dtype)i;
            return 0;
        }
    }
    return -1;
}

size_t ts_dtype_row_bytes(ts_dtype t, int64_t n) {
    const ts_dtype_info *in = &g_info[t];
    return (size_t)(n / in->block_size) * (size_t)in->block_bytes;
}

int ts_dtype_is_quantized(ts_dtype t) { return g_info[t].block_size > 1; }

double ts_dtype_bits_per_weight(ts_dtype t) {
    return 8.0 * (double)g_info[t].block_bytes / (double)g_info[t].block_size;
}
