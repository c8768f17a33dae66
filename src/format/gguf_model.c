/* Reading a GGUF model as its Hugging Face equivalent: ts_model_config from llama.cpp's metadata
 * keys (with llama.cpp's defaults where a key is optional), tensors renamed, llama q/k rows
 * un-permuted, merged experts split into per-expert views. */
#include "format/gguf_model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "quant/dtype.h"

#define LLAMA_DEFAULT_ROPE_BASE 10000.0 /* llama.cpp's value when rope.freq_base is absent */

static ts_arch arch_from_gguf(const char *s, size_t n) {
    static const struct {
        const char *name;
        ts_arch arch;
    } k[] = {{"llama", TS_ARCH_LLAMA}, {"qwen2", TS_ARCH_QWEN2}, {"qwen3", TS_ARCH_QWEN3},
             {"qwen3moe", TS_ARCH_QWEN3_MOE}, {"gpt2", TS_ARCH_GPT2}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strlen(k[i].name) == n && !memcmp(k[i].name, s, n)) return k[i].arch;
    return TS_ARCH_UNKNOWN;
}

static const char *arch_key(char *buf, size_t cap, const char *arch, const char *suffix) {
    snprintf(buf, cap, "%s.%s", arch, suffix);
    return buf;
}

/* A per-model integer that llama.cpp also accepts as a per-layer array: arrays must be uniform. */
static int get_count(const ts_gguf *g, const char *key, int required, int64_t *out, ts_error *err) {
    const ts_gguf_kv *kv = ts_gguf_find(g, key);
    if (!kv) {
        if (required) return ts_fail(err, "%s: required metadata \"%s\" is missing", g->source, key);
        return 1;
    }
    if (kv->value.type == TS_GGUF_ARRAY) {
        if (kv->value.count == 0) return ts_fail(err, "%s: metadata \"%s\" is an empty array", g->source, key);
        int64_t first = 0, v = 0;
        for (uint64_t i = 0; i < kv->value.count; i++) {
            if (ts_gguf_array_int(g, &kv->value, i, &v, err) != 0) {
                ts_error_prefix(err, "metadata \"%s\": ", key);
                return -1;
            }
            if (i == 0) first = v;
            else if (v != first)
                return ts_fail(err, "%s: metadata \"%s\" varies per layer (%" PRId64 " and %" PRId64 "); tessera needs one value",
                               g->source, key, first, v);
        }
        *out = first;
    } else {
        int rc = ts_gguf_get_int(g, key, out, err);
        if (rc != 0) return rc;
    }
    if (*out < 0 || *out > INT32_MAX)
        return ts_fail(err, "%s: metadata \"%s\" is %" PRId64 ", out of range", g->source, key, *out);
    return 0;
}

static int get_positive(const ts_gguf *g, const char *key, int *out, ts_error *err) {
    int64_t v;
    if (get_count(g, key, 1, &v, err) != 0) return -1;
    if (v <= 0) return ts_fail(err, "%s: metadata \"%s\" is %" PRId64 ", expected a positive value", g->source, key, v);
    *out = (int)v;
    return 0;
}

static int get_token_id(const ts_gguf *g, const char *key, int *out, ts_error *err) {
    int64_t v;
    int rc = ts_gguf_get_int(g, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 0) {
        if (v < 0 || v > INT32_MAX) return ts_fail(err, "%s: metadata \"%s\" is %" PRId64 ", out of range", g->source, key, v);
        *out = (int)v;
    }
    return 0;
}

static ts_dtype dtype_from_file_type(int64_t ft, ts_dtype fallback) {
    switch (ft) {
    case 0: return TS_DTYPE_F32;
    case 1: return TS_DTYPE_F16;
    case 2: return TS_DTYPE_Q4_0;
    case 3: return TS_DTYPE_Q4_1;
    case 7: return TS_DTYPE_Q8_0;
    case 14:
    case 15: return TS_DTYPE_Q4_K;
    case 16:
    case 17: return TS_DTYPE_Q5_K;
    case 18: return TS_DTYPE_Q6_K;
    case 25: return TS_DTYPE_IQ4_NL;
    case 30: return TS_DTYPE_IQ4_XS;
    case 32: return TS_DTYPE_BF16;
    default: return fallback;
    }
}

/* Recovers llama3 rope parameters from the per-frequency factors llama.cpp stores: factors are 1 at
 * high frequencies, `factor` at low ones and 1/((1-s)/factor + s) between, with s linear in
 * 1/wavelength. With low_freq_factor fixed at 1 the other two parameters follow from that line,
 * and they reproduce the same frequencies exactly. */
static void fit_llama3_rope(ts_model_config *c, const float *f, int n) {
    double factor = 0;
    for (int i = 0; i < n; i++) factor = f[i] > factor ? f[i] : factor;
    c->rope_kind = TS_ROPE_LLAMA3;
    c->rope_factor = factor;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    c->rope_original_max_position = 8192;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int m = 0;
    for (int i = 0; i < n && factor > 1; i++) {
        double r = f[i];
        if (r <= 1.0 + 1e-6 || r >= factor * (1 - 1e-6)) continue;
        double s = (1.0 / r - 1.0 / factor) / (1.0 - 1.0 / factor);
        double freq = pow(c->rope_theta, -2.0 * i / (2.0 * n));
        double x = freq / (2 * M_PI);
        sx += x;
        sy += s;
        sxx += x * x;
        sxy += x * s;
        m++;
    }
    if (m >= 2) {
        double den = m * sxx - sx * sx;
        if (den > 0) {
            double a = (m * sxy - sx * sy) / den, b = (sy - a * sx) / m;
            if (a > 0 && b < 0) {
                c->rope_high_freq_factor = 1.0 - 1.0 / b;
                c->rope_original_max_position = (int)lround(a * (c->rope_high_freq_factor - 1.0));
            }
        }
    } else if (factor > 1) {
        ts_log_warn("rope_freqs: too few intermediate factors to recover the llama3 parameters; assuming 8192/1/4");
    }
}

int ts_gguf_model_config(const ts_gguf *g, ts_model_config *c, ts_error *err) {
    char key[160];
    memset(c, 0, sizeof *c);
    c->bos_token_id = -1;
    c->pad_token_id = -1;
    ts_gguf_str an;
    int rc = ts_gguf_get_string(g, "general.architecture", &an, err);
    if (rc < 0) return -1;
    if (rc == 1) return ts_fail(err, "%s: required metadata \"general.architecture\" is missing", g->source);
    c->arch = arch_from_gguf(an.ptr, (size_t)an.len);
    if (c->arch == TS_ARCH_UNKNOWN)
        return ts_fail(err, "%s: architecture \"%.*s\" is not supported (supported: llama, qwen2, qwen3, qwen3moe, gpt2)",
                       g->source, (int)(an.len > 64 ? 64 : an.len), an.ptr);
    const char *arch = ts_gguf_arch_name(c->arch);
    snprintf(c->model_type, sizeof c->model_type, "%s", ts_arch_name(c->arch));

    if (get_positive(g, arch_key(key, sizeof key, arch, "embedding_length"), &c->hidden_size, err) != 0 ||
        get_positive(g, arch_key(key, sizeof key, arch, "block_count"), &c->num_layers, err) != 0 ||
        get_positive(g, arch_key(key, sizeof key, arch, "context_length"), &c->max_position_embeddings, err) != 0 ||
        get_positive(g, arch_key(key, sizeof key, arch, "attention.head_count"), &c->num_heads, err) != 0)
        return -1;
    int64_t v;
    rc = get_count(g, arch_key(key, sizeof key, arch, "feed_forward_length"), c->arch != TS_ARCH_QWEN3_MOE, &v, err);
    if (rc < 0) return -1;
    c->intermediate_size = rc == 0 ? (int)v : 0;
    c->num_kv_heads = c->num_heads;
    rc = get_count(g, arch_key(key, sizeof key, arch, "attention.head_count_kv"), 0, &v, err);
    if (rc < 0) return -1;
    if (rc == 0) c->num_kv_heads = (int)v;
    c->head_dim = c->hidden_size / c->num_heads;
    rc = get_count(g, arch_key(key, sizeof key, arch, "attention.key_length"), 0, &v, err);
    if (rc < 0) return -1;
    if (rc == 0) c->head_dim = (int)v;
    rc = get_count(g, arch_key(key, sizeof key, arch, "attention.value_length"), 0, &v, err);
    if (rc < 0) return -1;
    if (rc == 0 && v != c->head_dim)
        return ts_fail(err, "%s: value_length %" PRId64 " differs from key_length %d; tessera needs them equal", g->source, v,
                       c->head_dim);
    rc = get_count(g, arch_key(key, sizeof key, arch, "rope.dimension_count"), 0, &v, err);
    if (rc < 0) return -1;
    if (rc == 0 && c->arch != TS_ARCH_GPT2 && v != c->head_dim)
        return ts_fail(err, "%s: rope.dimension_count %" PRId64 " differs from the head size %d (partial rotary embeddings are not supported)",
                       g->source, v, c->head_dim);

    if (c->arch == TS_ARCH_GPT2) {
        rc = ts_gguf_get_float(g, arch_key(key, sizeof key, arch, "attention.layer_norm_epsilon"), &c->norm_eps, err);
        c->activation = TS_ACT_GELU_TANH;
        c->attention_bias = 1;
    } else {
        rc = ts_gguf_get_float(g, arch_key(key, sizeof key, arch, "attention.layer_norm_rms_epsilon"), &c->norm_eps, err);
        c->activation = TS_ACT_SILU;
        c->attention_bias = c->arch == TS_ARCH_QWEN2 || ts_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
        c->qk_norm = ts_gguf_find_tensor(g, "blk.0.attn_q_norm.weight") != NULL;
    }
    if (rc < 0) return -1;
    if (rc == 1) return ts_fail(err, "%s: required metadata \"%s\" is missing", g->source, key);

    if (c->arch != TS_ARCH_GPT2) {
        c->rope_theta = LLAMA_DEFAULT_ROPE_BASE;
        rc = ts_gguf_get_float(g, arch_key(key, sizeof key, arch, "rope.freq_base"), &c->rope_theta, err);
        if (rc < 0) return -1;
        if (rc == 1)
            ts_log_warn("%s: no %s; using llama.cpp's default rope base %.0f (--rope-freq-base sets the right one)", g->source, key, LLAMA_DEFAULT_ROPE_BASE);
        ts_gguf_str st;
        rc = ts_gguf_get_string(g, arch_key(key, sizeof key, arch, "rope.scaling.type"), &st, err);
        if (rc < 0) return -1;
        if (rc == 0 && !(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
            if (!(st.len == 6 && !memcmp(st.ptr, "linear", 6)))
                return ts_fail(err, "%s: rope scaling \"%.*s\" is not supported (none, linear, llama3 factors)", g->source,
                               (int)(st.len > 32 ? 32 : st.len), st.ptr);
            c->rope_kind = TS_ROPE_LINEAR;
            c->rope_factor = 1.0;
            if (ts_gguf_get_float(g, arch_key(key, sizeof key, arch, "rope.scaling.factor"), &c->rope_factor, err) < 0)
                return -1;
        }
        const ts_gguf_tensor_info *rf = ts_gguf_find_tensor(g, "rope_freqs.weight");
        if (rf) {
            if (rf->ggml_type != 0 || rf->n_dims != 1 || rf->ne[0] != c->head_dim / 2)
                return ts_fail(err, "%s: rope_freqs.weight must be f32 [%d]", g->source, c->head_dim / 2);
            float *f = malloc((size_t)rf->ne[0] * sizeof *f);
            if (!f) return ts_fail(err, "out of memory");
            memcpy(f, g->data + g->data_offset + rf->offset, (size_t)rf->ne[0] * sizeof *f);
            fit_llama3_rope(c, f, (int)rf->ne[0]);
            free(f);
        }
    }

    /* vocabulary size: explicit, else the embedding's rows, else the token list */
    c->vocab_size = 0;
    rc = get_count(g, arch_key(key, sizeof key, arch, "vocab_size"), 0, &v, err);
    if (rc < 0) return -1;
    const ts_gguf_tensor_info *emb = ts_gguf_find_tensor(g, "token_embd.weight");
    if (rc == 0) c->vocab_size = (int)v;
    else if (emb && emb->n_dims == 2 && emb->ne[1] <= INT32_MAX) c->vocab_size = (int)emb->ne[1];
    if (c->vocab_size <= 0) return ts_fail(err, "%s: cannot tell the vocabulary size (no %s and no token_embd.weight)", g->source, key);
    c->tie_word_embeddings = ts_gguf_find_tensor(g, "output.weight") == NULL;

    if (c->arch == TS_ARCH_QWEN3_MOE) {
        if (get_positive(g, arch_key(key, sizeof key, arch, "expert_count"), &c->num_experts, err) != 0 ||
            get_positive(g, arch_key(key, sizeof key, arch, "expert_used_count"), &c->num_experts_per_tok, err) != 0)
            return -1;
        rc = get_count(g, arch_key(key, sizeof key, arch, "expert_feed_forward_length"), 0, &v, err);
        if (rc < 0) return -1;
        c->moe_intermediate_size = rc == 0 ? (int)v : c->intermediate_size / c->num_experts_per_tok;
        if (c->moe_intermediate_size <= 0) return ts_fail(err, "%s: %s is missing", g->source, key);
        if (c->intermediate_size == 0) c->intermediate_size = c->moe_intermediate_size;
        /* llama.cpp's qwen3moe always renormalises the chosen experts' weights. */
        c->norm_topk_prob = 1;
        if (ts_gguf_get_bool(g, arch_key(key, sizeof key, arch, "expert_weights_norm"), &c->norm_topk_prob, err) < 0)
            return -1;
        c->decoder_sparse_step = 1;
        for (int l = 0; l < c->num_layers && l < TS_MAX_LAYERS; l++) {
            char tn[64];
            snprintf(tn, sizeof tn, "blk.%d.ffn_gate_inp.weight", l);
            c->mlp_only_layer[l] = ts_gguf_find_tensor(g, tn) == NULL;
        }
    }

    if (get_token_id(g, "tokenizer.ggml.bos_token_id", &c->bos_token_id, err) != 0 ||
        get_token_id(g, "tokenizer.ggml.padding_token_id", &c->pad_token_id, err) != 0)
        return -1;
    int eos = -1;
    if (get_token_id(g, "tokenizer.ggml.eos_token_id", &eos, err) != 0) return -1;
    if (eos >= 0) c->eos_token_ids[c->num_eos++] = eos;
    int eot = -1;
    if (get_token_id(g, "tokenizer.ggml.eot_token_id", &eot, err) != 0) return -1;
    if (eot >= 0 && eot != eos) c->eos_token_ids[c->num_eos++] = eot;

    int64_t ft = -1;
    if (ts_gguf_get_int(g, "general.file_type", &ft, err) < 0) return -1;
    ts_dtype emb_type = TS_DTYPE_F32;
    if (emb) ts_dtype_from_ggml(emb->ggml_type, &emb_type);
    c->dtype = dtype_from_file_type(ft, emb_type);
    return ts_model_config_validate(c, g->source, err);
}

int ts_gguf_permute_qk_rows(const void *src, void *dst, int64_t rows, size_t row_bytes, int n_head, int inverse) {
    if (n_head <= 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0) return -1;
    int64_t hd = rows / n_head;
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t hf = h * hd + j * (hd / 2) + i, gg = h * hd + 2 * i + j;
                int64_t from = inverse ? hf : gg, to = inverse ? gg : hf;
                memcpy(d + (size_t)to * row_bytes, s + (size_t)from * row_bytes, row_bytes);
            }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Adds one tensor to the table, undoing llama's q/k permutation when needed. */
static int add_renamed(ts_tensor_table *table, const ts_model_config *cfg, const char *source, ts_tensor_desc *d,
                       ts_error *err) {
    int is_q = ends_with(d->name, "self_attn.q_proj.weight") || ends_with(d->name, "self_attn.q_proj.bias");
    int is_k = ends_with(d->name, "self_attn.k_proj.weight") || ends_with(d->name, "self_attn.k_proj.bias");
    if (cfg->arch == TS_ARCH_LLAMA && (is_q || is_k)) {
        int64_t rows = d->shape[0];
        const ts_dtype_info *ti = d->dtype < TS_DTYPE_COUNT ? ts_dtype_get(d->dtype) : NULL;
        if (!ti || (d->ndim == 1 && ti->block_size != 1) || d->ndim > 2 || rows <= 0)
            return ts_fail(err, "%s: tensor \"%s\" (%s) cannot be un-permuted", source, d->name, d->file_dtype);
        size_t row_bytes = d->nbytes / (size_t)rows;
        void *buf = malloc(d->nbytes ? d->nbytes : 1);
        if (!buf) return ts_fail(err, "%s: out of memory permuting \"%s\"", source, d->name);
        if (ts_gguf_permute_qk_rows(d->data, buf, rows, row_bytes, is_q ? cfg->num_heads : cfg->num_kv_heads, 0) != 0) {
            free(buf);
            return ts_fail(err, "%s: tensor \"%s\" has %" PRId64 " rows, not a whole number of even-sized heads (%d)", source,
                           d->name, rows, is_q ? cfg->num_heads : cfg->num_kv_heads);
        }
        if (ts_tensor_table_own(table, buf, err) != 0) return -1;
        d->data = buf;
    }
    if (ts_tensor_table_add(table, d, err) != 0) {
        ts_error_prefix(err, "%s: ", source);
        return -1;
    }
    return 0;
}

int ts_gguf_model_tensors(ts_gguf *g, const ts_model_config *cfg, ts_tensor_table *table, ts_error *err) {
    int file_index = -1;
    if (g->owns_mapping) {
        file_index = ts_tensor_table_add_file(table, &g->mapping, err);
        if (file_index < 0) return -1;
        g->owns_mapping = 0;
    }
    table->gguf_layout = 1;
    char hf[256];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const ts_gguf_tensor_info *t = &g->tensors[i];
        ts_tensor_desc d;
        memset(&d, 0, sizeof d);
        ts_dtype dt;
        d.dtype = ts_dtype_from_ggml(t->ggml_type, &dt) == 0 ? dt : TS_DTYPE_COUNT;
        snprintf(d.file_dtype, sizeof d.file_dtype, "%s", ts_gguf_ggml_type(t->ggml_type)->name);
        ts_gguf_tensor_shape(t, d.shape, &d.ndim);
        d.data = g->data + g->data_offset + t->offset;
        d.nbytes = t->nbytes;
        d.file_index = file_index;
        int layer;
        const char *proj = NULL;
        if (!strncmp(t->name, "blk.", 4)) {
            const char *p = t->name + 4;
            layer = atoi(p);
            while (*p >= '0' && *p <= '9') p++;
            if (*p == '.') proj = ts_gguf_expert_projection(p + 1);
        }
        if (proj) {
            if (t->n_dims != 3 || t->ne[2] <= 0)
                return ts_fail(err, "%s: expert tensor \"%s\" must have 3 dimensions", g->source, t->name);
            /* One table entry per expert: an empty tensor could otherwise claim billions of them. */
            if (t->nbytes == 0 || t->nbytes % (size_t)t->ne[2] != 0)
                return ts_fail(err, "%s: expert tensor \"%s\" holds %zu bytes, not %" PRId64 " equal non-empty experts",
                               g->source, t->name, t->nbytes, t->ne[2]);
            int64_t ne = t->ne[2];
            size_t per = t->nbytes / (size_t)ne;
            for (int64_t e = 0; e < ne; e++) {
                snprintf(hf, sizeof hf, "model.layers.%d.mlp.experts.%" PRId64 ".%s", layer, e, proj);
                ts_tensor_desc x = d;
                x.name = hf;
                x.ndim = 2;
                x.shape[0] = d.shape[1];
                x.shape[1] = d.shape[2];
                x.shape[2] = x.shape[3] = 1;
                x.data = (const uint8_t *)d.data + (size_t)e * per;
                x.nbytes = per;
                if (add_renamed(table, cfg, g->source, &x, err) != 0) return -1;
            }
            continue;
        }
        if (ts_gguf_name_to_hf(cfg->arch, t->name, hf, sizeof hf) == 0) {
            d.name = hf;
        } else {
            ts_log_debug("%s: tensor \"%s\" has no Hugging Face counterpart; kept under its GGUF name", g->source, t->name);
            d.name = t->name;
        }
        if (add_renamed(table, cfg, g->source, &d, err) != 0) return -1;
    }
    return 0;
}

int ts_gguf_load_model(const char *path, ts_model_config *cfg, ts_tensor_table *table, ts_vocab_spec *vocab,
                       ts_error *err) {
    ts_gguf g;
    if (ts_gguf_open(path, &g, err) != 0) return -1;
    int rc = ts_gguf_model_config(&g, cfg, err);
    if (rc == 0 && vocab) rc = ts_gguf_read_vocab(&g, vocab, err);
    if (rc == 0) rc = ts_gguf_model_tensors(&g, cfg, table, err);
    ts_gguf_free(&g);
    return rc;
}
