#include "format/model_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "format/json_util.h"

#define CONFIG_MAX_BYTES (4u << 20)

const char *ts_arch_name(ts_arch a) {
    switch (a) {
    case TS_ARCH_LLAMA: return "llama";
    case TS_ARCH_QWEN2: return "qwen2";
    case TS_ARCH_QWEN3: return "qwen3";
    case TS_ARCH_QWEN3_MOE: return "qwen3_moe";
    case TS_ARCH_GPT2: return "gpt2";
    default: return "unknown";
    }
}

static ts_arch arch_from_model_type(const char *t) {
    if (!strcmp(t, "llama") || !strcmp(t, "mistral")) return TS_ARCH_LLAMA;
    if (!strcmp(t, "qwen2")) return TS_ARCH_QWEN2;
    if (!strcmp(t, "qwen3")) return TS_ARCH_QWEN3;
    if (!strcmp(t, "qwen3_moe") || !strcmp(t, "qwen3moe")) return TS_ARCH_QWEN3_MOE;
    if (!strcmp(t, "gpt2")) return TS_ARCH_GPT2;
    return TS_ARCH_UNKNOWN;
}

static ts_arch arch_from_class(const char *c) {
    if (!strcmp(c, "LlamaForCausalLM") || !strcmp(c, "MistralForCausalLM")) return TS_ARCH_LLAMA;
    if (!strcmp(c, "Qwen2ForCausalLM")) return TS_ARCH_QWEN2;
    if (!strcmp(c, "Qwen3ForCausalLM")) return TS_ARCH_QWEN3;
    if (!strcmp(c, "Qwen3MoeForCausalLM")) return TS_ARCH_QWEN3_MOE;
    if (!strcmp(c, "GPT2LMHeadModel")) return TS_ARCH_GPT2;
    return TS_ARCH_UNKNOWN;
}

/* Reads an integer field that must be present and positive. */
static int need_int(const json_t *root, const char *key, const char *src, int *out, ts_error *err) {
    long long v = 0;
    int found = 0;
    if (ts_json_get_int(root, key, src, &v, &found, err) != 0) return -1;
    if (!found) return ts_fail(err, "%s: required key \"%s\" is missing", src, key);
    if (v <= 0 || v > (1ll << 31) - 1) return ts_fail(err, "%s: \"%s\" is %lld; expected a positive integer", src, key, v);
    *out = (int)v;
    return 0;
}

static int opt_int(const json_t *root, const char *key, const char *src, int *out, ts_error *err) {
    long long v = 0;
    int found = 0;
    if (ts_json_get_int(root, key, src, &v, &found, err) != 0) return -1;
    if (found) {
        if (v < -1 || v > (1ll << 31) - 1) return ts_fail(err, "%s: \"%s\" is %lld, out of range", src, key, v);
        *out = (int)v;
    }
    return 0;
}

static int opt_num(const json_t *root, const char *key, const char *src, double *out, ts_error *err) {
    int found = 0;
    double v = 0;
    if (ts_json_get_number(root, key, src, &v, &found, err) != 0) return -1;
    if (found) *out = v;
    return 0;
}

static int opt_bool(const json_t *root, const char *key, const char *src, int *out, ts_error *err) {
    int found = 0, v = 0;
    if (ts_json_get_bool(root, key, src, &v, &found, err) != 0) return -1;
    if (found) *out = v;
    return 0;
}

/* eos_token_id may be one integer or a list of them. */
static int read_token_list(const json_t *root, const char *key, const char *src, int *ids, int *count,
                           ts_error *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
            return ts_fail(err, "%s: \"%s\" is %lld, out of range", src, key, (long long)json_integer_value(v));
        ids[0] = (int)json_integer_value(v);
        *count = 1;
        return 0;
    }
    if (!json_is_array(v)) return ts_fail(err, "%s: \"%s\" must be an integer or a list of integers", src, key);
    size_t n = json_array_size(v);
    if (n > TS_MAX_EOS) return ts_fail(err, "%s: \"%s\" lists %zu tokens; at most %d are supported", src, key, n, TS_MAX_EOS);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < INT32_MIN || json_integer_value(e) > INT32_MAX)
            return ts_fail(err, "%s: \"%s\"[%zu] must be an integer token id", src, key, i);
        ids[i] = (int)json_integer_value(e);
    }
    *count = (int)n;
    return 0;
}

static int parse_dtype(const json_t *root, const char *src, ts_dtype *out, ts_error *err) {
    const char *s = NULL;
    int found = 0;
    if (ts_json_get_string(root, "dtype", src, &s, &found, err) != 0) return -1;
    if (!found && ts_json_get_string(root, "torch_dtype", src, &s, &found, err) != 0) return -1;
    *out = TS_DTYPE_F32;
    if (!found) return 0;
    if (!strcmp(s, "float32")) *out = TS_DTYPE_F32;
    else if (!strcmp(s, "float16")) *out = TS_DTYPE_F16;
    else if (!strcmp(s, "bfloat16")) *out = TS_DTYPE_BF16;
    else return ts_fail(err, "%s: dtype \"%s\" is not supported (expected float32, float16 or bfloat16)", src, s);
    return 0;
}

/* RoPE settings live either at top level (rope_theta, rope_scaling) or in rope_parameters. */
static int parse_rope(const json_t *root, const char *src, ts_model_config *c, ts_error *err) {
    c->rope_theta = 10000.0;
    c->rope_kind = TS_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (opt_num(root, "rope_theta", src, &c->rope_theta, err) != 0) return -1;
    const json_t *params = json_object_get(root, "rope_parameters");
    if (!params || json_is_null(params)) params = json_object_get(root, "rope_scaling");
    if (!params || json_is_null(params)) return 0;
    if (!json_is_object(params)) return ts_fail(err, "%s: \"rope_parameters\" must be an object", src);
    if (opt_num(params, "rope_theta", src, &c->rope_theta, err) != 0) return -1;
    const char *type = NULL;
    int found = 0;
    if (ts_json_get_string(params, "rope_type", src, &type, &found, err) != 0) return -1;
    if (!found && ts_json_get_string(params, "type", src, &type, &found, err) != 0) return -1;
    if (!found || !strcmp(type, "default")) return 0;
    if (!strcmp(type, "llama3")) {
        c->rope_kind = TS_ROPE_LLAMA3;
        c->rope_low_freq_factor = 1.0;
        c->rope_high_freq_factor = 4.0;
        c->rope_original_max_position = 8192;
        if (opt_num(params, "factor", src, &c->rope_factor, err) != 0 ||
            opt_num(params, "low_freq_factor", src, &c->rope_low_freq_factor, err) != 0 ||
            opt_num(params, "high_freq_factor", src, &c->rope_high_freq_factor, err) != 0 ||
            opt_int(params, "original_max_position_embeddings", src, &c->rope_original_max_position, err) != 0)
            return -1;
        return 0;
    }
    if (!strcmp(type, "linear")) {
        c->rope_kind = TS_ROPE_LINEAR;
        return opt_num(params, "factor", src, &c->rope_factor, err);
    }
    return ts_fail(err, "%s: rope type \"%s\" is not supported (supported: default, linear, llama3)", src, type);
}

static int parse_activation(const json_t *root, const char *key, const char *src, ts_activation *out,
                            ts_error *err) {
    const char *s = NULL;
    int found = 0;
    if (ts_json_get_string(root, key, src, &s, &found, err) != 0) return -1;
    if (!found) return 0;
    if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = TS_ACT_SILU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast"))
        *out = TS_ACT_GELU_TANH;
    else if (!strcmp(s, "gelu")) *out = TS_ACT_GELU_ERF;
    else return ts_fail(err, "%s: activation \"%s\" is not supported (silu, gelu, gelu_new)", src, s);
    return 0;
}

static int parse_gpt2(const json_t *root, const char *src, ts_model_config *c, ts_error *err) {
    if (need_int(root, "n_embd", src, &c->hidden_size, err) != 0 ||
        need_int(root, "n_layer", src, &c->num_layers, err) != 0 ||
        need_int(root, "n_head", src, &c->num_heads, err) != 0 ||
        need_int(root, "n_positions", src, &c->max_position_embeddings, err) != 0)
        return -1;
    if (c->hidden_size > INT32_MAX / 4) /* the default n_inner is 4 * n_embd */
        return ts_fail(err, "%s: n_embd %d is out of range", src, c->hidden_size);
    c->intermediate_size = 4 * c->hidden_size;
    if (opt_int(root, "n_inner", src, &c->intermediate_size, err) != 0) return -1;
    c->num_kv_heads = c->num_heads;
    c->head_dim = c->hidden_size / c->num_heads;
    c->norm_eps = 1e-5;
    if (opt_num(root, "layer_norm_epsilon", src, &c->norm_eps, err) != 0) return -1;
    c->activation = TS_ACT_GELU_TANH;
    if (parse_activation(root, "activation_function", src, &c->activation, err) != 0) return -1;
    c->tie_word_embeddings = 1;
    c->attention_bias = 1;
    int flag = 0;
    if (opt_bool(root, "scale_attn_by_inverse_layer_idx", src, &flag, err) != 0) return -1;
    if (flag) return ts_fail(err, "%s: scale_attn_by_inverse_layer_idx is not supported", src);
    flag = 1;
    if (opt_bool(root, "scale_attn_weights", src, &flag, err) != 0) return -1;
    if (!flag) return ts_fail(err, "%s: scale_attn_weights=false is not supported", src);
    return 0;
}

static int parse_decoder(const json_t *root, const char *src, ts_model_config *c, ts_error *err) {
    if (need_int(root, "hidden_size", src, &c->hidden_size, err) != 0 ||
        need_int(root, "num_hidden_layers", src, &c->num_layers, err) != 0 ||
        need_int(root, "num_attention_heads", src, &c->num_heads, err) != 0 ||
        need_int(root, "intermediate_size", src, &c->intermediate_size, err) != 0)
        return -1;
    c->num_kv_heads = c->num_heads;
    if (opt_int(root, "num_key_value_heads", src, &c->num_kv_heads, err) != 0) return -1;
    c->head_dim = c->hidden_size / c->num_heads;
    if (opt_int(root, "head_dim", src, &c->head_dim, err) != 0) return -1;
    c->max_position_embeddings = 2048;
    if (opt_int(root, "max_position_embeddings", src, &c->max_position_embeddings, err) != 0) return -1;
    c->norm_eps = 1e-6;
    if (opt_num(root, "rms_norm_eps", src, &c->norm_eps, err) != 0) return -1;
    c->activation = TS_ACT_SILU;
    if (parse_activation(root, "hidden_act", src, &c->activation, err) != 0) return -1;
    if (parse_rope(root, src, c, err) != 0) return -1;
    c->tie_word_embeddings = 0;
    if (opt_bool(root, "tie_word_embeddings", src, &c->tie_word_embeddings, err) != 0) return -1;
    c->attention_bias = c->arch == TS_ARCH_QWEN2; /* Qwen2 always has q/k/v biases */
    if (c->arch != TS_ARCH_QWEN2 && opt_bool(root, "attention_bias", src, &c->attention_bias, err) != 0) return -1;
    int mlp_bias = 0;
    if (opt_bool(root, "mlp_bias", src, &mlp_bias, err) != 0) return -1;
    if (mlp_bias) return ts_fail(err, "%s: mlp_bias=true is not supported", src);
    c->qk_norm = c->arch == TS_ARCH_QWEN3 || c->arch == TS_ARCH_QWEN3_MOE;
    int sliding = 0;
    if (opt_bool(root, "use_sliding_window", src, &sliding, err) != 0) return -1;
    if (sliding) return ts_fail(err, "%s: use_sliding_window=true is not supported", src);
    if (c->arch != TS_ARCH_QWEN3_MOE) return 0;

    c->num_experts = 0;
    if (opt_int(root, "num_experts", src, &c->num_experts, err) != 0) return -1;
    if (opt_int(root, "num_local_experts", src, &c->num_experts, err) != 0) return -1;
    if (c->num_experts <= 0) return ts_fail(err, "%s: qwen3_moe needs num_experts (or num_local_experts)", src);
    if (need_int(root, "num_experts_per_tok", src, &c->num_experts_per_tok, err) != 0 ||
        need_int(root, "moe_intermediate_size", src, &c->moe_intermediate_size, err) != 0)
        return -1;
    c->norm_topk_prob = 0;
    c->decoder_sparse_step = 1;
    if (opt_bool(root, "norm_topk_prob", src, &c->norm_topk_prob, err) != 0 ||
        opt_int(root, "decoder_sparse_step", src, &c->decoder_sparse_step, err) != 0)
        return -1;
    if (c->decoder_sparse_step <= 0) return ts_fail(err, "%s: decoder_sparse_step must be positive", src);
    const json_t *only = json_object_get(root, "mlp_only_layers");
    if (only && !json_is_null(only)) {
        if (!json_is_array(only)) return ts_fail(err, "%s: \"mlp_only_layers\" must be a list", src);
        if (c->num_layers > TS_MAX_LAYERS) /* mlp_only_layer[] has room for this many */
            return ts_fail(err, "%s: %d layers; at most %d are supported", src, c->num_layers, TS_MAX_LAYERS);
        for (size_t i = 0; i < json_array_size(only); i++) {
            const json_t *e = json_array_get(only, i);
            if (!json_is_integer(e)) return ts_fail(err, "%s: \"mlp_only_layers\"[%zu] must be an integer", src, i);
            long long l = json_integer_value(e);
            if (l < 0 || l >= c->num_layers)
                return ts_fail(err, "%s: mlp_only_layers names layer %lld; the model has %d", src, l, c->num_layers);
            c->mlp_only_layer[l] = 1;
        }
    }
    return 0;
}

int ts_model_config_parse(const char *json_text, const char *src, ts_model_config *c, ts_error *err) {
    memset(c, 0, sizeof *c);
    c->bos_token_id = -1;
    c->pad_token_id = -1;
    json_t *root = ts_json_parse(json_text, strlen(json_text), src, err);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        ts_fail(err, "%s: expected a JSON object at the top level", src);
        goto done;
    }
    const char *type = NULL;
    int found = 0;
    if (ts_json_get_string(root, "model_type", src, &type, &found, err) != 0) goto done;
    if (found) {
        c->arch = arch_from_model_type(type);
        snprintf(c->model_type, sizeof c->model_type, "%s", type);
    } else {
        const json_t *archs = json_object_get(root, "architectures");
        if (json_is_array(archs) && json_is_string(json_array_get(archs, 0))) {
            type = json_string_value(json_array_get(archs, 0));
            c->arch = arch_from_class(type);
            snprintf(c->model_type, sizeof c->model_type, "%s", type);
        }
    }
    if (c->arch == TS_ARCH_UNKNOWN) {
        ts_fail(err, "%s: unknown architecture \"%s\" (supported: llama, qwen2, qwen3, qwen3_moe, gpt2)", src,
                type ? type : "(no model_type)");
        goto done;
    }
    if (parse_dtype(root, src, &c->dtype, err) != 0) goto done;
    if (need_int(root, "vocab_size", src, &c->vocab_size, err) != 0) goto done;
    if (c->arch == TS_ARCH_GPT2 ? parse_gpt2(root, src, c, err) : parse_decoder(root, src, c, err)) goto done;
    if (opt_int(root, "bos_token_id", src, &c->bos_token_id, err) != 0) goto done;
    if (opt_int(root, "pad_token_id", src, &c->pad_token_id, err) != 0) goto done;
    if (read_token_list(root, "eos_token_id", src, c->eos_token_ids, &c->num_eos, err) != 0) goto done;
    rc = ts_model_config_validate(c, src, err);
done:
    json_decref(root);
    return rc;
}

int ts_model_config_load(const char *path, ts_model_config *out, ts_error *err) {
    char *text = NULL;
    if (ts_read_file(path, CONFIG_MAX_BYTES, &text, NULL, err) != 0) return -1;
    int rc = ts_model_config_parse(text, path, out, err);
    free(text);
    return rc;
}

int ts_model_config_validate(const ts_model_config *c, const char *src, ts_error *err) {
    if (c->num_layers > TS_MAX_LAYERS)
        return ts_fail(err, "%s: %d layers; at most %d are supported", src, c->num_layers, TS_MAX_LAYERS);
    if (c->num_kv_heads <= 0 || c->num_heads % c->num_kv_heads != 0)
        return ts_fail(err, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", src,
                       c->num_heads, c->num_kv_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024)
        return ts_fail(err, "%s: head_dim %d must be even and between 2 and 1024", src, c->head_dim);
    if (c->arch == TS_ARCH_GPT2 && c->head_dim * c->num_heads != c->hidden_size)
        return ts_fail(err, "%s: n_embd %d is not divisible by n_head %d", src, c->hidden_size, c->num_heads);
    if (c->arch == TS_ARCH_QWEN3_MOE &&
        (c->num_experts_per_tok <= 0 || c->num_experts_per_tok > c->num_experts))
        return ts_fail(err, "%s: num_experts_per_tok %d must be between 1 and num_experts %d", src,
                       c->num_experts_per_tok, c->num_experts);
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) return ts_fail(err, "%s: normalisation epsilon %g is out of range", src, c->norm_eps);
    if (c->arch != TS_ARCH_GPT2 && !(c->rope_theta > 0)) return ts_fail(err, "%s: rope_theta must be positive", src);
    for (int i = 0; i < c->num_eos; i++)
        if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size)
            return ts_fail(err, "%s: eos token %d is outside the vocabulary (%d)", src, c->eos_token_ids[i], c->vocab_size);
    return 0;
}

int ts_model_config_layer_is_moe(const ts_model_config *c, int layer) {
    if (c->arch != TS_ARCH_QWEN3_MOE || c->num_experts <= 0) return 0;
    if (layer >= 0 && layer < TS_MAX_LAYERS && c->mlp_only_layer[layer]) return 0;
    return (layer + 1) % c->decoder_sparse_step == 0;
}

void ts_generation_config_init(ts_generation_config *g) {
    memset(g, 0, sizeof *g);
    g->bos_token_id = -1;
    g->temperature = -1;
    g->top_p = -1;
    g->top_k = -1;
    g->repetition_penalty = -1;
}

int ts_generation_config_load(const char *path, ts_generation_config *g, ts_error *err) {
    ts_generation_config_init(g);
    json_t *root = ts_json_load_file(path, CONFIG_MAX_BYTES, err);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        ts_fail(err, "%s: expected a JSON object", path);
        goto done;
    }
    if (read_token_list(root, "eos_token_id", path, g->eos_token_ids, &g->num_eos, err) != 0) goto done;
    if (opt_int(root, "bos_token_id", path, &g->bos_token_id, err) != 0) goto done;
    if (opt_num(root, "temperature", path, &g->temperature, err) != 0) goto done;
    if (opt_num(root, "top_p", path, &g->top_p, err) != 0) goto done;
    if (opt_int(root, "top_k", path, &g->top_k, err) != 0) goto done;
    if (opt_num(root, "repetition_penalty", path, &g->repetition_penalty, err) != 0) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}
