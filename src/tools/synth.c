#include "tools/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "base/splitmix.h"
#include "quant/float16.h"

typedef struct {
    ts_dtype type;
    int64_t rows, cols;
    uint8_t *data;
    uint64_t seed;
    int part, parts;
    float std;
} fill_job;

static float uniform(uint64_t *s) { return (float)((double)(ts_splitmix64(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* Random bytes everywhere, then scales overwritten with plausible values so that the decoded weights
 * have roughly the requested standard deviation. */
static void *fill_part(void *arg) {
    fill_job *j = arg;
    const ts_dtype_info *in = ts_dtype_get(j->type);
    size_t row_bytes = ts_dtype_row_bytes(j->type, j->cols);
    int64_t r0 = j->rows * j->part / j->parts, r1 = j->rows * (j->part + 1) / j->parts;
    uint64_t s = j->seed ^ ((uint64_t)j->part * 0x632be59bd9b4e019ull);
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *row = j->data + (size_t)r * row_bytes;
        if (j->type == TS_DTYPE_F32 || j->type == TS_DTYPE_F16 || j->type == TS_DTYPE_BF16) {
            for (int64_t k = 0; k < j->cols; k++) {
                float v = uniform(&s) * j->std * 1.7320508f;
                if (j->type == TS_DTYPE_F32) memcpy(row + 4 * k, &v, 4);
                else {
                    uint16_t h = j->type == TS_DTYPE_F16 ? ts_f32_to_f16(v) : ts_f32_to_bf16(v);
                    memcpy(row + 2 * k, &h, 2);
                }
            }
            continue;
        }
        for (size_t b = 0; b < row_bytes; b += 8) {
            uint64_t v = ts_splitmix64(&s);
            memcpy(row + b, &v, row_bytes - b < 8 ? row_bytes - b : 8);
        }
        int64_t blocks = j->cols / in->block_size;
        for (int64_t b = 0; b < blocks; b++) {
            uint8_t *p = row + (size_t)b * (size_t)in->block_bytes;
            uint16_t d;
            switch (j->type) {
            case TS_DTYPE_Q8_0:
                d = ts_f32_to_f16(j->std / 73.0f);
                memcpy(p, &d, 2);
                break;
            case TS_DTYPE_Q4_0:
                d = ts_f32_to_f16(j->std / 4.6f);
                memcpy(p, &d, 2);
                break;
            case TS_DTYPE_IQ4_NL: /* random indices: grid values have a standard deviation of about 70 */
                d = ts_f32_to_f16(j->std / 70.0f);
                memcpy(p, &d, 2);
                break;
            case TS_DTYPE_Q4_1: {
                d = ts_f32_to_f16(j->std / 4.6f);
                uint16_t m = ts_f32_to_f16(-7.5f * j->std / 4.6f);
                memcpy(p, &d, 2);
                memcpy(p + 2, &m, 2);
                break;
            }
            case TS_DTYPE_Q4_K:
            case TS_DTYPE_Q5_K: {
                /* scales and minimums of 6 bits average ~32 and ~32: d*32*q - dmin*32 */
                float span = j->type == TS_DTYPE_Q4_K ? 15.0f : 31.0f;
                d = ts_f32_to_f16(j->std * 3.4f / span / 32.0f);
                uint16_t dm = ts_f32_to_f16(j->std * 1.7f / 32.0f);
                memcpy(p, &d, 2);
                memcpy(p + 2, &dm, 2);
                break;
            }
            case TS_DTYPE_IQ4_XS: /* random 6-bit sub-scales (rms about 18.5) times grid values (about 70) */
                d = ts_f32_to_f16(j->std / 1295.0f);
                memcpy(p, &d, 2);
                break;
            case TS_DTYPE_Q6_K:
                d = ts_f32_to_f16(j->std / 18.0f / 64.0f);
                memcpy(p + 208, &d, 2);
                break;
            default: break;
            }
        }
    }
    return NULL;
}

static int add_tensor(ts_tensor_table *t, const char *name, ts_dtype type, int64_t rows, int64_t cols, float std,
                      uint64_t seed, int threads, ts_error *err) {
    size_t bytes = ts_dtype_row_bytes(type, cols) * (size_t)rows;
    uint8_t *data = malloc(bytes ? bytes : 1);
    if (!data) return ts_fail(err, "synth: cannot allocate %zu bytes for %s", bytes, name);
    if (ts_tensor_table_own(t, data, err) != 0) return -1;
    if (threads < 1) threads = 1;
    if (threads > TS_MAX_JOBS) threads = TS_MAX_JOBS;
    fill_job jobs[TS_MAX_JOBS];
    int parts = rows >= threads ? threads : 1;
    for (int p = 0; p < parts; p++) jobs[p] = (fill_job){type, rows, cols, data, seed, p, parts, std};
    ts_run_jobs(fill_part, jobs, sizeof jobs[0], parts);
    ts_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.name = (char *)name;
    d.dtype = type;
    snprintf(d.file_dtype, sizeof d.file_dtype, "%s", ts_dtype_get(type)->name);
    d.ndim = rows == 1 ? 1 : 2;
    d.shape[0] = rows == 1 ? cols : rows;
    d.shape[1] = cols;
    d.data = data;
    d.nbytes = bytes;
    d.file_index = -1;
    return ts_tensor_table_add(t, &d, err);
}

static int add_vector(ts_tensor_table *t, const char *name, int64_t n, float value, ts_error *err) {
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return ts_fail(err, "out of memory");
    for (int64_t i = 0; i < n; i++) v[i] = value;
    if (ts_tensor_table_own(t, v, err) != 0) return -1;
    ts_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.name = (char *)name;
    d.dtype = TS_DTYPE_F32;
    snprintf(d.file_dtype, sizeof d.file_dtype, "F32");
    d.ndim = 1;
    d.shape[0] = n;
    d.data = v;
    d.nbytes = (size_t)n * sizeof(float);
    d.file_index = -1;
    return ts_tensor_table_add(t, &d, err);
}

int ts_synth_table(const ts_model_config *c, ts_dtype type, uint64_t seed, int threads, ts_tensor_table *t,
                   ts_error *err) {
    int64_t d = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    char name[256];
    uint64_t s = seed;
#define MAT(nm, rows, cols)                                                                                  \
    do {                                                                                                     \
        ts_dtype tt = (cols) % ts_dtype_get(type)->block_size == 0 ? type : TS_DTYPE_F16;                    \
        if (add_tensor(t, nm, tt, rows, cols, 1.0f / sqrtf((float)(cols)), ts_splitmix64(&s), threads, err) != 0)     \
            return -1;                                                                                       \
    } while (0)
    if (c->arch == TS_ARCH_GPT2) {
        int64_t inner = c->intermediate_size;
        MAT("wte.weight", c->vocab_size, d);
        MAT("wpe.weight", c->max_position_embeddings, d);
        if (add_vector(t, "ln_f.weight", d, 1.0f, err) || add_vector(t, "ln_f.bias", d, 0.0f, err)) return -1;
        t->gguf_layout = 1; /* Conv1D weights written [out, in] */
        for (int l = 0; l < c->num_layers; l++) {
            const struct { const char *n; int64_t r, c; } mats[] = {
                {"attn.c_attn", 3 * d, d}, {"attn.c_proj", d, d}, {"mlp.c_fc", inner, d}, {"mlp.c_proj", d, inner}};
            for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof name, "h.%d.%s.weight", l, mats[i].n);
                MAT(name, mats[i].r, mats[i].c);
                snprintf(name, sizeof name, "h.%d.%s.bias", l, mats[i].n);
                if (add_vector(t, name, mats[i].r, 0.0f, err)) return -1;
            }
            for (int i = 1; i <= 2; i++) {
                snprintf(name, sizeof name, "h.%d.ln_%d.weight", l, i);
                if (add_vector(t, name, d, 1.0f, err)) return -1;
                snprintf(name, sizeof name, "h.%d.ln_%d.bias", l, i);
                if (add_vector(t, name, d, 0.0f, err)) return -1;
            }
        }
        return 0;
    }
    MAT("model.embed_tokens.weight", c->vocab_size, d);
    if (!c->tie_word_embeddings) MAT("lm_head.weight", c->vocab_size, d);
    if (add_vector(t, "model.norm.weight", d, 1.0f, err)) return -1;
    for (int l = 0; l < c->num_layers; l++) {
        const struct { const char *n; int64_t r, c; } attn[] = {
            {"q_proj", q, d}, {"k_proj", kv, d}, {"v_proj", kv, d}, {"o_proj", d, q}};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, attn[i].n);
            MAT(name, attn[i].r, attn[i].c);
            if (c->attention_bias && i < 3) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, attn[i].n);
                if (add_vector(t, name, attn[i].r, 0.0f, err)) return -1;
            }
        }
        if (c->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            if (add_vector(t, name, c->head_dim, 1.0f, err)) return -1;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            if (add_vector(t, name, c->head_dim, 1.0f, err)) return -1;
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if (add_vector(t, name, d, 1.0f, err)) return -1;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (add_vector(t, name, d, 1.0f, err)) return -1;
        if (ts_model_config_layer_is_moe(c, l)) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", l);
            if (add_tensor(t, name, TS_DTYPE_F32, c->num_experts, d, 1.0f / sqrtf((float)d), ts_splitmix64(&s), threads, err)) return -1;
            for (int e = 0; e < c->num_experts; e++) {
                int64_t inner = c->moe_intermediate_size;
                snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
                MAT(name, inner, d);
                snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
                MAT(name, inner, d);
                snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
                MAT(name, d, inner);
            }
        } else {
            int64_t inner = c->intermediate_size;
            snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
            MAT(name, inner, d);
            snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
            MAT(name, inner, d);
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
            MAT(name, d, inner);
        }
    }
#undef MAT
    return 0;
}
