/* Writing a model given in Hugging Face terms as a GGUF file llama.cpp loads: llama.cpp's metadata
 * keys, its tensor names, its layouts (llama q/k rows interleaved, gpt2 Conv1D as [out, in], experts
 * merged into one 3-D tensor per projection). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "format/gguf_model.h"
#include "format/gguf_writer.h"

typedef struct planned {
    int index;        /* into the caller's tensors */
    char gguf[96];
    int expert;       /* -1 when not an expert tensor */
} planned;

static int cmp_planned(const void *a, const void *b) {
    const planned *x = a, *y = b;
    int c = strcmp(x->gguf, y->gguf);
    return c ? c : (x->expert > y->expert) - (x->expert < y->expert);
}

static int file_type_of(const ts_gguf_model_tensor *t, int n) {
    double count[TS_DTYPE_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        if (t[i].ndim < 2 || t[i].dtype >= TS_DTYPE_COUNT) continue;
        double e = 1;
        for (int d = 0; d < t[i].ndim; d++) e *= (double)t[i].shape[d];
        count[t[i].dtype] += e;
    }
    int best = TS_DTYPE_F32;
    for (int k = 0; k < TS_DTYPE_COUNT; k++)
        if (count[k] > count[best]) best = k;
    switch ((ts_dtype)best) {
    case TS_DTYPE_F16: return 1;
    case TS_DTYPE_BF16: return 32;
    case TS_DTYPE_Q8_0: return 7;
    case TS_DTYPE_Q4_0: return 2;
    case TS_DTYPE_Q4_1: return 3;
    case TS_DTYPE_Q4_K: return 15; /* Q4_K_M: mostly Q4_K with some Q6_K */
    case TS_DTYPE_Q5_K: return 17;
    case TS_DTYPE_Q6_K: return 18;
    case TS_DTYPE_IQ4_NL: return 25;
    case TS_DTYPE_IQ4_XS: return 30;
    default: return 0;
    }
}

static int set_arch_keys(ts_gguf_writer *w, const ts_model_config *c, ts_error *err) {
    const char *a = ts_gguf_arch_name(c->arch);
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    if (ts_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings, err) != 0 ||
        ts_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size, err) != 0 ||
        ts_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->num_layers, err) != 0 ||
        ts_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size, err) != 0 ||
        ts_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->num_heads, err) != 0)
        return -1;
    if (c->arch == TS_ARCH_GPT2)
        return ts_gguf_writer_set_f32(w, KEY("attention.layer_norm_epsilon"), (float)c->norm_eps, err);
    if (ts_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->num_kv_heads, err) != 0 ||
        ts_gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)c->rope_theta, err) != 0 ||
        ts_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->norm_eps, err) != 0)
        return -1;
    int explicit_head = c->arch == TS_ARCH_QWEN3 || c->arch == TS_ARCH_QWEN3_MOE || c->head_dim * c->num_heads != c->hidden_size;
    if (explicit_head && (ts_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim, err) != 0 ||
                          ts_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim, err) != 0))
        return -1;
    if (c->arch == TS_ARCH_LLAMA && (ts_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size, err) != 0 ||
                                     ts_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim, err) != 0))
        return -1;
    if (c->rope_kind == TS_ROPE_LINEAR &&
        (ts_gguf_writer_set_string(w, KEY("rope.scaling.type"), "linear", err) != 0 ||
         ts_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor, err) != 0))
        return -1;
    if (c->arch == TS_ARCH_QWEN3_MOE) {
        if (ts_gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)c->num_experts, err) != 0 ||
            ts_gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)c->num_experts_per_tok, err) != 0 ||
            ts_gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->moe_intermediate_size, err) != 0 ||
            ts_gguf_writer_set_bool(w, KEY("expert_weights_norm"), c->norm_topk_prob, err) != 0)
            return -1;
        if (!c->norm_topk_prob)
            ts_log_warn("qwen3moe with norm_topk_prob=false: llama.cpp always renormalises the routing weights");
        for (int l = 0; l < c->num_layers && l < TS_MAX_LAYERS; l++)
            if (!ts_model_config_layer_is_moe(c, l)) {
                ts_log_warn("qwen3moe layer %d is dense: llama.cpp cannot load such a file (tessera can)", l);
                break;
            }
    }
#undef KEY
    return 0;
}

/* llama3 rope: the per-frequency factors llama.cpp reads from rope_freqs.weight. */
static int add_rope_freqs(ts_gguf_writer *w, const ts_model_config *c, ts_error *err) {
    int n = c->head_dim / 2;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f) return ts_fail(err, "out of memory");
    double lo_wl = c->rope_original_max_position / c->rope_low_freq_factor;
    double hi_wl = c->rope_original_max_position / c->rope_high_freq_factor;
    for (int i = 0; i < n; i++) {
        double freq = pow(c->rope_theta, -2.0 * i / c->head_dim), wl = 2 * M_PI / freq;
        if (wl < hi_wl) f[i] = 1.0f;
        else if (wl > lo_wl) f[i] = (float)c->rope_factor;
        else {
            double s = (c->rope_original_max_position / wl - c->rope_low_freq_factor) /
                       (c->rope_high_freq_factor - c->rope_low_freq_factor);
            f[i] = (float)(1.0 / ((1 - s) / c->rope_factor + s));
        }
    }
    int64_t shape[1] = {n};
    if (ts_gguf_writer_own(w, f, err) != 0) return -1;
    return ts_gguf_writer_add_tensor(w, "rope_freqs.weight", 0, 1, shape, f, (size_t)n * sizeof *f, err);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int is_conv1d(const char *name) {
    return ends_with(name, "attn.c_attn.weight") || ends_with(name, "attn.c_proj.weight") ||
           ends_with(name, "mlp.c_fc.weight") || ends_with(name, "mlp.c_proj.weight");
}

/* Data of one non-expert tensor as llama.cpp wants it (a new buffer owned by w when rewritten). */
static int prepare_data(ts_gguf_writer *w, const ts_model_config *c, const ts_gguf_model_tensor *t, int64_t shape[4],
                        const void **data, ts_error *err) {
    *data = t->data;
    for (int d = 0; d < 4; d++) shape[d] = d < t->ndim ? t->shape[d] : 1;
    const ts_dtype_info *ti = ts_dtype_get(t->dtype);
    if (c->arch == TS_ARCH_GPT2 && is_conv1d(t->name) && !t->out_in_layout) {
        if (t->ndim != 2 || ti->block_size != 1)
            return ts_fail(err, "tensor \"%s\": a [in, out] Conv1D weight can only be transposed in a float type, not %s", t->name,
                           ti->name);
        int64_t in = t->shape[0], out = t->shape[1];
        size_t es = (size_t)ti->block_bytes;
        uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (!buf || ts_gguf_writer_own(w, buf, err) != 0) return ts_fail(err, "out of memory");
        const uint8_t *s = t->data;
        for (int64_t i = 0; i < in; i++)
            for (int64_t o = 0; o < out; o++) memcpy(buf + ((size_t)o * in + i) * es, s + ((size_t)i * out + o) * es, es);
        shape[0] = out;
        shape[1] = in;
        *data = buf;
        return 0;
    }
    int is_q = ends_with(t->name, "self_attn.q_proj.weight") || ends_with(t->name, "self_attn.q_proj.bias");
    int is_k = ends_with(t->name, "self_attn.k_proj.weight") || ends_with(t->name, "self_attn.k_proj.bias");
    if (c->arch == TS_ARCH_LLAMA && (is_q || is_k)) {
        int64_t rows = t->shape[0];
        if ((t->ndim == 1 && ti->block_size != 1) || rows <= 0)
            return ts_fail(err, "tensor \"%s\" cannot be permuted in type %s", t->name, ti->name);
        uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (!buf || ts_gguf_writer_own(w, buf, err) != 0) return ts_fail(err, "out of memory");
        if (ts_gguf_permute_qk_rows(t->data, buf, rows, t->nbytes / (size_t)rows, is_q ? c->num_heads : c->num_kv_heads, 1) != 0)
            return ts_fail(err, "tensor \"%s\": %" PRId64 " rows are not whole heads", t->name, rows);
        *data = buf;
    }
    return 0;
}

static size_t expected_bytes(const ts_gguf_model_tensor *t) {
    const ts_dtype_info *ti = ts_dtype_get(t->dtype);
    if (!ti || t->ndim < 1 || t->ndim > 4 || t->shape[t->ndim - 1] % ti->block_size != 0) return (size_t)-1;
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return (size_t)(n / (uint64_t)ti->block_size * (uint64_t)ti->block_bytes);
}

static int add_tensors(ts_gguf_writer *w, const ts_model_config *c, const ts_gguf_model_tensor *t, int n, ts_error *err) {
    planned *plan = calloc((size_t)(n ? n : 1), sizeof *plan);
    planned *experts = calloc((size_t)(n ? n : 1), sizeof *experts);
    char *emitted = calloc((size_t)(n ? n : 1), 1);
    int ne = 0, rc = -1;
    const void **parts = NULL;
    size_t *part_bytes = NULL;
    if (!plan || !experts || !emitted) {
        ts_fail(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        plan[i].index = i;
        if (t[i].dtype >= TS_DTYPE_COUNT || expected_bytes(&t[i]) != t[i].nbytes) {
            ts_fail(err, "tensor \"%s\": %zu bytes do not match its type and shape", t[i].name, t[i].nbytes);
            goto done;
        }
        if ((c->arch == TS_ARCH_GPT2 && (ends_with(t[i].name, ".attn.bias") || ends_with(t[i].name, ".attn.masked_bias"))) ||
            !strcmp(t[i].name, "rope_freqs.weight")) {
            /* GPT-2's causal-mask buffers are not weights; rope factors are regenerated from cfg. */
            plan[i].gguf[0] = '\0';
            plan[i].expert = -2;
            continue;
        }
        if (ts_gguf_name_from_hf(c->arch, t[i].name, plan[i].gguf, sizeof plan[i].gguf, &plan[i].expert) != 0) {
            ts_fail(err, "tensor \"%s\" has no GGUF name for architecture %s", t[i].name, ts_gguf_arch_name(c->arch));
            goto done;
        }
        if (plan[i].expert >= 0) experts[ne++] = plan[i];
    }
    qsort(experts, (size_t)ne, sizeof *experts, cmp_planned);
    parts = malloc((size_t)(ne ? ne : 1) * sizeof *parts);
    part_bytes = malloc((size_t)(ne ? ne : 1) * sizeof *part_bytes);
    if (!parts || !part_bytes) {
        ts_fail(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const ts_gguf_model_tensor *ti = &t[plan[i].index];
        if (plan[i].expert == -2 || emitted[i]) continue;
        if (plan[i].expert < 0) {
            int64_t shape[4];
            const void *data;
            if (prepare_data(w, c, ti, shape, &data, err) != 0 ||
                ts_gguf_writer_add_tensor(w, plan[i].gguf, ts_dtype_get(ti->dtype)->ggml_type, ti->ndim, shape, data,
                                          ti->nbytes, err) != 0)
                goto done;
            continue;
        }
        /* The whole group of this merged expert tensor, in expert order. */
        planned key = plan[i];
        key.expert = 0;
        int lo = 0, hi = ne;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (strcmp(experts[mid].gguf, key.gguf) < 0) lo = mid + 1;
            else hi = mid;
        }
        int count = 0;
        const ts_gguf_model_tensor *first = &t[experts[lo].index];
        while (lo + count < ne && !strcmp(experts[lo + count].gguf, key.gguf)) {
            const planned *p = &experts[lo + count];
            const ts_gguf_model_tensor *e = &t[p->index];
            if (p->expert != count) {
                ts_fail(err, "%s: expert %d is missing (found expert %d next)", key.gguf, count, p->expert);
                goto done;
            }
            if (e->dtype != first->dtype || e->ndim != 2 || e->shape[0] != first->shape[0] || e->shape[1] != first->shape[1]) {
                ts_fail(err, "tensor \"%s\" differs in type or shape from expert 0 of the same projection", e->name);
                goto done;
            }
            parts[count] = e->data;
            part_bytes[count] = e->nbytes;
            emitted[p->index] = 1;
            count++;
        }
        if (c->num_experts > 0 && count != c->num_experts) {
            ts_fail(err, "%s: %d experts given, the configuration has %d", key.gguf, count, c->num_experts);
            goto done;
        }
        int64_t shape[3] = {count, first->shape[0], first->shape[1]};
        if (ts_gguf_writer_add_tensor_parts(w, key.gguf, ts_dtype_get(first->dtype)->ggml_type, 3, shape, parts, part_bytes,
                                            count, err) != 0)
            goto done;
    }
    rc = 0;
done:
    free(plan);
    free(experts);
    free(emitted);
    free(parts);
    free(part_bytes);
    return rc;
}

int ts_gguf_write_model(const char *path, const ts_model_config *cfg, const ts_gguf_model_tensor *tensors, int n,
                        const ts_vocab_spec *vocab, const char *name, ts_error *err) {
    const char *arch = ts_gguf_arch_name(cfg->arch);
    if (!arch) return ts_fail(err, "%s: architecture %s cannot be written as GGUF", path, ts_arch_name(cfg->arch));
    ts_gguf_writer *w = ts_gguf_writer_new();
    if (!w) return ts_fail(err, "out of memory");
    int rc = -1;
    if (ts_gguf_writer_set_string(w, "general.architecture", arch, err) != 0 ||
        ts_gguf_writer_set_string(w, "general.type", "model", err) != 0 ||
        (name && ts_gguf_writer_set_string(w, "general.name", name, err) != 0) ||
        set_arch_keys(w, cfg, err) != 0 ||
        ts_gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type_of(tensors, n), err) != 0 ||
        ts_gguf_writer_set_u32(w, "general.quantization_version", 2, err) != 0)
        goto done;
    if (vocab && vocab->n_tokens > 0 && ts_gguf_write_vocab(w, vocab, err) != 0) goto done;
    if (cfg->rope_kind == TS_ROPE_LLAMA3 && cfg->arch != TS_ARCH_GPT2 && add_rope_freqs(w, cfg, err) != 0) goto done;
    if (add_tensors(w, cfg, tensors, n, err) != 0) goto done;
    rc = ts_gguf_writer_write(w, path, err);
done:
    if (rc != 0) ts_error_prefix(err, "%s: ", path);
    ts_gguf_writer_free(w);
    return rc;
}
