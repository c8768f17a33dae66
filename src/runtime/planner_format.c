/* Presentation of a ts_plan: the human table of `tessera plan`, its JSON form, and the refusal
 * paragraph the engine logs when a model does not fit. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/planner.h"

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *s, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        char *grown = realloc(s->buf, cap);
        if (!grown) return;
        s->buf = grown;
        s->cap = cap;
    }
}

static const char *with_commas(int64_t v, char *buf, size_t cap) {
    char digits[32];
    snprintf(digits, sizeof digits, "%" PRId64, v < 0 ? -v : v);
    size_t n = strlen(digits), o = 0;
    if (v < 0 && o < cap - 1) buf[o++] = '-';
    for (size_t i = 0; i < n && o < cap - 1; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o < cap - 1) buf[o++] = ',';
        if (o < cap - 1) buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *quant_name(const ts_quant_scheme *q, char *buf, int cap) {
    return ts_quant_scheme_name(q, buf, cap);
}

/* The requested quantization; "none" reads as the checkpoint's own type. */
static const char *request_quant(const ts_plan *p, char *buf, int cap) {
    if (p->req.quant.kind == TS_QUANT_NONE) {
        snprintf(buf, (size_t)cap, "%s (as stored)", ts_dtype_get(p->req.config->dtype)->name);
        return buf;
    }
    return ts_quant_scheme_name(&p->req.quant, buf, cap);
}

static const char *device_label(const ts_plan *p) { return p->req.device == TS_DEVICE_CPU ? "CPU" : "GPU"; }

char *ts_plan_format_text(const ts_plan *p) {
    strbuf s = {0};
    const ts_model_config *c = p->req.config;
    char a[32], b[32], q[32], n1[32];
    sb_printf(&s, "model         %s, %d layers, hidden %d, %d heads (%d KV) x %d, vocab %d", c->model_type,
              c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads, c->head_dim, c->vocab_size);
    if (c->arch == TS_ARCH_QWEN3_MOE)
        sb_printf(&s, ", %d experts (%d per token, %d wide)", c->num_experts, c->num_experts_per_tok,
                  c->moe_intermediate_size);
    sb_printf(&s, "\nquantization  %s\n", request_quant(p, q, sizeof q));
    sb_printf(&s, "request       %" PRId64 " tokens x %d sequence%s, KV cache %d bytes per element, %d-token steps\n",
              p->req.context_length, p->req.batch, p->req.batch == 1 ? "" : "s", p->req.kv_elem_bytes,
              p->req.step_tokens);
    sb_printf(&s, "device        %s, %s available\n\n", ts_device_kind_name(p->req.device),
              ts_format_bytes(p->available_bytes, a, sizeof a));

    sb_printf(&s, "%-26s %-6s %8s %20s %12s\n", "weights", "dtype", "tensors", "parameters", "bytes");
    for (int i = 0; i < p->num_rows; i++) {
        const ts_plan_row *r = &p->rows[i];
        sb_printf(&s, "  %-24s %-6s %8d %20s %12s\n", r->name, ts_dtype_get(r->dtype)->name, r->tensors,
                  with_commas(r->params, n1, sizeof n1), ts_format_bytes(r->bytes, a, sizeof a));
    }
    sb_printf(&s, "  %-24s %-6s %8s %20s %12s\n", "all weights", "", "", with_commas(p->weight_params, n1, sizeof n1),
              ts_format_bytes(p->weight_bytes, a, sizeof a));
    int repacked = 0;
    for (int i = 0; i < p->num_rows; i++)
        repacked |= p->rows[i].dtype == TS_DTYPE_Q4_K || p->rows[i].dtype == TS_DTYPE_IQ4_XS;
    if (p->req.device == TS_DEVICE_CUDA && repacked)
        sb_printf(&s, "  (bytes as the GPU holds them: q4_k at 4.625 bits a weight, iq4_xs at 4.31)\n");
    sb_printf(&s, "\n");

    sb_printf(&s, "%-14s%12s  %s per token (2 x %d layers x %d KV heads x %d x %d bytes) x %" PRId64 " x %d\n",
              "KV cache", ts_format_bytes(p->kv_bytes, a, sizeof a),
              ts_format_bytes(p->kv_bytes_per_token, b, sizeof b), c->num_layers, c->num_kv_heads, c->head_dim,
              p->req.kv_elem_bytes, p->req.context_length, p->req.batch);
    sb_printf(&s, "%-14s%12s  float32 tensors of one forward step\n", "activations",
              ts_format_bytes(p->activation_bytes, a, sizeof a));
    sb_printf(&s, "%-14s%12s  attention scores and 8-bit activation copies\n", "scratch",
              ts_format_bytes(p->scratch_bytes, a, sizeof a));
    sb_printf(&s, "%-14s%12s  runtime allowance on the %s\n", "reserve", ts_format_bytes(p->reserve_bytes, a, sizeof a),
              device_label(p));
    if (p->req.gpu_layers > 0) {
        /* the rows above are the whole model; the split puts part of it on each side */
        sb_printf(&s, "%-14s%12s  the last %d of %d layers, their KV cache and the output head on the GPU, of %s "
                      "available: %s\n", "GPU side", ts_format_bytes(p->total_bytes, a, sizeof a), p->req.gpu_layers,
                  c->num_layers, ts_format_bytes(p->available_bytes, b, sizeof b),
                  p->total_bytes <= p->available_bytes ? "fits" : "DOES NOT FIT");
        char h[32];
        sb_printf(&s, "%-14s%12s  the embedding and layers 0..%d on the CPU, %s%s: %s\n", "CPU side",
                  ts_format_bytes(p->host_side_bytes, a, sizeof a), c->num_layers - p->req.gpu_layers - 1,
                  p->req.host_bytes ? "of " : "host memory not given",
                  p->req.host_bytes ? ts_format_bytes(p->req.host_bytes, h, sizeof h) : "",
                  p->host_side_fits ? "fits" : "DOES NOT FIT");
    } else {
        sb_printf(&s, "%-14s%12s  of %s available: %s\n", "total", ts_format_bytes(p->total_bytes, a, sizeof a),
                  ts_format_bytes(p->available_bytes, b, sizeof b), p->fits ? "fits" : "DOES NOT FIT");
    }

    const char *whole = p->req.gpu_layers > 0 ? "every layer on the GPU, " : "";
    sb_printf(&s, "\n%sother quantizations (same context and sequences):\n", whole);
    for (int i = 0; i < p->num_alternatives; i++) {
        const ts_plan_alternative *alt = &p->alternatives[i];
        sb_printf(&s, "  %-6s weights %10s, total %10s: %s\n", quant_name(&alt->quant, q, sizeof q),
                  ts_format_bytes(alt->weight_bytes, a, sizeof a), ts_format_bytes(alt->total_bytes, b, sizeof b),
                  alt->fits ? "fits" : "does not fit");
    }
    request_quant(p, q, sizeof q);
    if (p->max_batch > 0)
        sb_printf(&s,
                  "%sat %s: up to %d sequence%s of %" PRId64 " tokens, or %d sequence%s of up to %" PRId64 " tokens\n",
                  whole, q, p->max_batch, p->max_batch == 1 ? "" : "s", p->req.context_length, p->req.batch,
                  p->req.batch == 1 ? "" : "s", p->max_context);
    else if (p->max_context > 0)
        sb_printf(&s, "%sat %s: %d sequence%s fit with up to %" PRId64 " tokens\n", whole, q, p->req.batch,
                  p->req.batch == 1 ? "" : "s", p->max_context);
    else sb_printf(&s, "%sat %s: not even one sequence of one token fits\n", whole, q);
    if (p->split_gpu_layers > 0) {
        char sq[32];
        sb_printf(&s,
                  "split: %s with the last %d of %d layers on the GPU (%s) and the rest on the CPU (%s) would fit\n",
                  quant_name(&p->split_quant, sq, sizeof sq), p->split_gpu_layers, c->num_layers,
                  ts_format_bytes(p->split_gpu_bytes, a, sizeof a), ts_format_bytes(p->split_cpu_bytes, b, sizeof b));
    }
    return s.buf;
}

static json_t *uint_json(uint64_t v) { return json_integer((json_int_t)v); }

json_t *ts_plan_to_json(const ts_plan *p) {
    const ts_model_config *c = p->req.config;
    char q[32];
    json_t *root = json_object();
    json_t *model = json_object();
    json_object_set_new(model, "model_type", json_string(c->model_type));
    json_object_set_new(model, "layers", json_integer(c->num_layers));
    json_object_set_new(model, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(model, "heads", json_integer(c->num_heads));
    json_object_set_new(model, "kv_heads", json_integer(c->num_kv_heads));
    json_object_set_new(model, "head_dim", json_integer(c->head_dim));
    json_object_set_new(model, "vocab_size", json_integer(c->vocab_size));
    if (c->arch == TS_ARCH_QWEN3_MOE) {
        json_object_set_new(model, "experts", json_integer(c->num_experts));
        json_object_set_new(model, "experts_per_token", json_integer(c->num_experts_per_tok));
    }
    json_object_set_new(root, "model", model);
    json_object_set_new(root, "quantization", json_string(quant_name(&p->req.quant, q, sizeof q)));
    json_object_set_new(root, "context_length", json_integer(p->req.context_length));
    json_object_set_new(root, "sequences", json_integer(p->req.batch));
    json_object_set_new(root, "kv_element_bytes", json_integer(p->req.kv_elem_bytes));
    json_object_set_new(root, "device", json_string(ts_device_kind_name(p->req.device)));

    json_t *rows = json_array();
    for (int i = 0; i < p->num_rows; i++) {
        const ts_plan_row *r = &p->rows[i];
        json_t *row = json_object();
        json_object_set_new(row, "name", json_string(r->name));
        json_object_set_new(row, "dtype", json_string(ts_dtype_get(r->dtype)->name));
        json_object_set_new(row, "tensors", json_integer(r->tensors));
        json_object_set_new(row, "parameters", json_integer(r->params));
        json_object_set_new(row, "bytes", uint_json(r->bytes));
        json_array_append_new(rows, row);
    }
    json_t *bytes = json_object();
    json_object_set_new(bytes, "weights", uint_json(p->weight_bytes));
    json_object_set_new(bytes, "kv_cache", uint_json(p->kv_bytes));
    json_object_set_new(bytes, "kv_cache_per_token", uint_json(p->kv_bytes_per_token));
    json_object_set_new(bytes, "activations", uint_json(p->activation_bytes));
    json_object_set_new(bytes, "scratch", uint_json(p->scratch_bytes));
    json_object_set_new(bytes, "reserve", uint_json(p->reserve_bytes));
    json_object_set_new(bytes, "total", uint_json(p->total_bytes));
    json_object_set_new(bytes, "available", uint_json(p->available_bytes));
    json_object_set_new(root, "weights", rows);
    json_object_set_new(root, "parameters", json_integer(p->weight_params));
    json_object_set_new(root, "bytes", bytes);
    json_object_set_new(root, "fits", json_boolean(p->fits));
    if (p->req.gpu_layers > 0) {
        json_t *split = json_object();
        json_object_set_new(split, "gpu_layers", json_integer(p->req.gpu_layers));
        json_object_set_new(split, "gpu_bytes", uint_json(p->total_bytes));
        json_object_set_new(split, "cpu_bytes", uint_json(p->host_side_bytes));
        json_object_set_new(split, "cpu_available", uint_json(p->req.host_bytes));
        json_object_set_new(split, "cpu_fits", json_boolean(p->host_side_fits));
        json_object_set_new(root, "split", split);
    }

    json_t *alts = json_array();
    for (int i = 0; i < p->num_alternatives; i++) {
        json_t *a = json_object();
        json_object_set_new(a, "quantization", json_string(quant_name(&p->alternatives[i].quant, q, sizeof q)));
        json_object_set_new(a, "weights", uint_json(p->alternatives[i].weight_bytes));
        json_object_set_new(a, "total", uint_json(p->alternatives[i].total_bytes));
        json_object_set_new(a, "fits", json_boolean(p->alternatives[i].fits));
        json_array_append_new(alts, a);
    }
    json_t *fit = json_object();
    json_object_set_new(fit, "quantizations", alts);
    json_object_set_new(fit, "max_sequences", json_integer(p->max_batch));
    json_object_set_new(fit, "max_context", json_integer(p->max_context));
    if (p->split_gpu_layers > 0) {
        json_t *split = json_object();
        json_object_set_new(split, "quantization", json_string(quant_name(&p->split_quant, q, sizeof q)));
        json_object_set_new(split, "gpu_layers", json_integer(p->split_gpu_layers));
        json_object_set_new(split, "gpu_bytes", uint_json(p->split_gpu_bytes));
        json_object_set_new(split, "cpu_bytes", uint_json(p->split_cpu_bytes));
        json_object_set_new(fit, "split", split);
    }
    json_object_set_new(root, "would_fit", fit);
    return root;
}

const char *ts_plan_refusal(const ts_plan *p, char *buf, size_t cap) {
    buf[0] = '\0';
    if (p->fits) return buf;
    char q[32], a[32], b[32], c[32], d[32], e[32];
    char f[32];
    size_t o;
    if (p->req.gpu_layers > 0) {
        o = (size_t)snprintf(buf, cap,
                             "with the last %d of %d layers on the GPU, the GPU side needs %s (%s available) and the "
                             "CPU side %s (%s available)",
                             p->req.gpu_layers, p->req.config->num_layers, ts_format_bytes(p->total_bytes, a, sizeof a),
                             ts_format_bytes(p->available_bytes, b, sizeof b),
                             ts_format_bytes(p->host_side_bytes, c, sizeof c), ts_format_bytes(p->req.host_bytes, d, sizeof d));
    } else o = (size_t)snprintf(
        buf, cap,
        "the model needs %s (weights %s at %s, KV cache %s for %" PRId64 " tokens x %d sequence%s, activations and "
        "scratch %s, reserve %s) but %s is available on the %s",
        ts_format_bytes(p->total_bytes, a, sizeof a), ts_format_bytes(p->weight_bytes, b, sizeof b),
        request_quant(p, q, sizeof q), ts_format_bytes(p->kv_bytes, c, sizeof c), p->req.context_length, p->req.batch,
        p->req.batch == 1 ? "" : "s", ts_format_bytes(p->activation_bytes + p->scratch_bytes, d, sizeof d),
        ts_format_bytes(p->reserve_bytes, e, sizeof e), ts_format_bytes(p->available_bytes, f, sizeof f),
        device_label(p));
    int any = 0;
    for (int i = 0; i < p->num_alternatives && o < cap; i++) {
        const ts_plan_alternative *alt = &p->alternatives[i];
        if (!alt->fits || alt->quant.kind == p->req.quant.kind) continue;
        o += (size_t)snprintf(buf + o, cap - o, "%s %s would fit (%s)",
                              any ? ";" : "; what would fit:", quant_name(&alt->quant, q, sizeof q),
                              ts_format_bytes(alt->total_bytes, a, sizeof a));
        any = 1;
    }
    if (o < cap && p->max_batch > 0 && p->max_batch < p->req.batch) {
        o += (size_t)snprintf(buf + o, cap - o, "%s %d sequence%s of %" PRId64 " tokens",
                              any ? ";" : "; what would fit:", p->max_batch, p->max_batch == 1 ? "" : "s",
                              p->req.context_length);
        any = 1;
    }
    if (o < cap && p->max_context > 0 && p->max_context < p->req.context_length) {
        o += (size_t)snprintf(buf + o, cap - o, "%s %d sequence%s of up to %" PRId64 " tokens",
                              any ? ";" : "; what would fit:", p->req.batch, p->req.batch == 1 ? "" : "s",
                              p->max_context);
        any = 1;
    }
    if (o < cap && p->split_gpu_layers > 0) {
        o += (size_t)snprintf(buf + o, cap - o, "%s %s with %d of %d layers on the GPU and the rest on the CPU",
                              any ? ";" : "; what would fit:", quant_name(&p->split_quant, q, sizeof q),
                              p->split_gpu_layers, p->req.config->num_layers);
        any = 1;
    }
    if (o < cap && !any) {
        const ts_plan_alternative *smallest = &p->alternatives[p->num_alternatives - 1];
        snprintf(buf + o, cap - o, "; nothing tried fits: even %s needs %s", quant_name(&smallest->quant, q, sizeof q),
                 ts_format_bytes(smallest->total_bytes, a, sizeof a));
    }
    return buf;
}
