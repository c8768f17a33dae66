/* Memory plan arithmetic: the tensor walk per architecture, KV cache, activations and scratch, and
 * the searches for what would fit. See planner.h for what each figure counts. */
#include "runtime/planner.h"

#include <stdio.h>
#include <string.h>

/* ---- the weight walk ---- */

typedef struct {
    const ts_model_config *c;
    const ts_quant_scheme *q;
    ts_device_kind device; /* whose layouts the bytes are of */
    ts_plan *plan;         /* NULL when only totals are wanted */
    uint64_t bytes;
    int64_t params;
} walk;

uint64_t ts_plan_row_bytes_on(ts_device_kind device, ts_dtype t, int64_t cols) {
    if (device == TS_DEVICE_CUDA && cols % 32 == 0) {
        const uint64_t groups = (uint64_t)(cols / 32);
        if (t == TS_DTYPE_Q4_K) return groups * 18 + groups / 8 * 4;
        if (t == TS_DTYPE_IQ4_XS) return groups * 17 + groups / 8 * 2;
    }
    return ts_dtype_row_bytes(t, cols);
}

/* Adds `count` tensors of rows x cols with one role to the walk. layer < 0: outside the layers. */
static void add(walk *w, const char *group, ts_weight_role role, int layer, int64_t count, int64_t rows, int64_t cols) {
    ts_dtype t = ts_quant_scheme_dtype(w->q, role, layer < 0 ? 0 : layer, w->c->num_layers, w->c->dtype, cols);
    uint64_t bytes = (uint64_t)count * (uint64_t)rows * ts_plan_row_bytes_on(w->device, t, cols);
    int64_t params = count * rows * cols;
    w->bytes += bytes;
    w->params += params;
    ts_plan *p = w->plan;
    if (!p) return;
    if (layer >= 0) p->layer_bytes[layer] += bytes;
    else if (role == TS_ROLE_EMBEDDING || role == TS_ROLE_POSITION) p->embedding_bytes += bytes;
    else p->output_bytes += bytes;
    for (int i = 0; i < p->num_rows; i++) {
        ts_plan_row *r = &p->rows[i];
        if (!strcmp(r->name, group) && r->dtype == t) {
            r->tensors += (int)count;
            r->params += params;
            r->bytes += bytes;
            return;
        }
    }
    if (p->num_rows == TS_PLAN_MAX_ROWS) return;
    ts_plan_row *r = &p->rows[p->num_rows++];
    snprintf(r->name, sizeof r->name, "%s", group);
    r->dtype = t;
    r->tensors = (int)count;
    r->params = params;
    r->bytes = bytes;
}

static void walk_gpt2(walk *w) {
    const ts_model_config *c = w->c;
    const int64_t h = c->hidden_size, ff = c->intermediate_size;
    add(w, "token embedding", TS_ROLE_EMBEDDING, -1, 1, c->vocab_size, h);
    add(w, "position embedding", TS_ROLE_POSITION, -1, 1, c->max_position_embeddings, h);
    for (int l = 0; l < c->num_layers; l++) {
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_Q, l, 1, h, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_K, l, 1, h, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_V, l, 1, h, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_OUT, l, 1, h, h);
        add(w, "biases", TS_ROLE_VECTOR, l, 1, 1, 3 * h + h); /* c_attn, attention c_proj */
        add(w, "mlp up/down", TS_ROLE_FFN_UP, l, 1, ff, h);
        add(w, "mlp up/down", TS_ROLE_FFN_DOWN, l, 1, h, ff);
        add(w, "biases", TS_ROLE_VECTOR, l, 1, 1, ff + h); /* c_fc, mlp c_proj */
        add(w, "norms", TS_ROLE_VECTOR, l, 2, 1, 2 * h);   /* ln_1, ln_2: weight and bias */
    }
    add(w, "norms", TS_ROLE_VECTOR, -1, 1, 1, 2 * h); /* ln_f */
}

static void walk_decoder(walk *w) {
    const ts_model_config *c = w->c;
    const int64_t h = c->hidden_size, hd = c->head_dim;
    const int64_t q_out = (int64_t)c->num_heads * hd, kv_out = (int64_t)c->num_kv_heads * hd;
    add(w, "token embedding", TS_ROLE_EMBEDDING, -1, 1, c->vocab_size, h);
    for (int l = 0; l < c->num_layers; l++) {
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_Q, l, 1, q_out, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_K, l, 1, kv_out, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_V, l, 1, kv_out, h);
        add(w, "attention q/k/v/o", TS_ROLE_ATTN_OUT, l, 1, h, q_out);
        /* Qwen2 biases q/k/v only; Llama and Qwen3 with attention_bias also bias o_proj */
        if (c->attention_bias)
            add(w, "biases", TS_ROLE_VECTOR, l, 1, 1, q_out + 2 * kv_out + (c->arch == TS_ARCH_QWEN2 ? 0 : h));
        if (c->qk_norm) add(w, "norms", TS_ROLE_VECTOR, l, 2, 1, hd);
        add(w, "norms", TS_ROLE_VECTOR, l, 2, 1, h); /* input and post-attention RMSNorm */
        if (ts_model_config_layer_is_moe(c, l)) {
            const int64_t e = c->num_experts, mi = c->moe_intermediate_size;
            add(w, "router", TS_ROLE_ROUTER, l, 1, e, h);
            add(w, "experts gate/up/down", TS_ROLE_FFN_GATE, l, e, mi, h);
            add(w, "experts gate/up/down", TS_ROLE_FFN_UP, l, e, mi, h);
            add(w, "experts gate/up/down", TS_ROLE_FFN_DOWN, l, e, h, mi);
        } else {
            const int64_t ff = c->intermediate_size;
            add(w, "mlp gate/up/down", TS_ROLE_FFN_GATE, l, 1, ff, h);
            add(w, "mlp gate/up/down", TS_ROLE_FFN_UP, l, 1, ff, h);
            add(w, "mlp gate/up/down", TS_ROLE_FFN_DOWN, l, 1, h, ff);
        }
    }
    add(w, "norms", TS_ROLE_VECTOR, -1, 1, 1, h); /* final norm */
    if (!c->tie_word_embeddings) add(w, "output head", TS_ROLE_OUTPUT, -1, 1, c->vocab_size, h);
}

static int check_config(const ts_model_config *c, ts_error *err) {
    if (!c || c->num_layers <= 0 || c->num_layers > TS_MAX_LAYERS || c->hidden_size <= 0 || c->vocab_size <= 0 ||
        c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0)
        return ts_fail(err, "planner: the model configuration is incomplete (layers, hidden size, heads, vocabulary)");
    return 0;
}

static void run_walk(walk *w) {
    if (w->c->arch == TS_ARCH_GPT2) walk_gpt2(w);
    else walk_decoder(w);
}

static uint64_t weight_bytes_on(ts_device_kind device, const ts_model_config *c, const ts_quant_scheme *q,
                                int64_t *params) {
    walk w = {.c = c, .q = q, .device = device};
    run_walk(&w);
    if (params) *params = w.params;
    return w.bytes;
}

int ts_plan_weight_bytes(const ts_model_config *c, const ts_quant_scheme *q, uint64_t *bytes, int64_t *params,
                         ts_error *err) {
    if (check_config(c, err) != 0) return -1;
    *bytes = weight_bytes_on(TS_DEVICE_CPU, c, q, params);
    return 0;
}

/* ---- runtime memory ---- */

static uint64_t kv_per_token_per_layer(const ts_plan_request *r) {
    const ts_model_config *c = r->config;
    return 2ull * (uint64_t)c->num_kv_heads * (uint64_t)c->head_dim * (uint64_t)r->kv_elem_bytes;
}

static int64_t step_tokens(const ts_plan_request *r) {
    int64_t t = r->step_tokens > 0 ? r->step_tokens
                                   : (r->context_length < TS_PLAN_DEFAULT_STEP_TOKENS ? r->context_length
                                                                                      : TS_PLAN_DEFAULT_STEP_TOKENS);
    return t < r->batch ? r->batch : t;
}

static int64_t widest_activation(const ts_model_config *c) {
    int64_t w = c->hidden_size;
    int64_t q = (int64_t)c->num_heads * c->head_dim;
    if (q > w) w = q;
    if (c->arch == TS_ARCH_QWEN3_MOE && c->moe_intermediate_size > w) w = c->moe_intermediate_size;
    int any_dense = 0;
    for (int l = 0; l < c->num_layers; l++) any_dense |= !ts_model_config_layer_is_moe(c, l);
    if (any_dense && c->intermediate_size > w) w = c->intermediate_size;
    return w;
}

static uint64_t activation_bytes(const ts_plan_request *r) {
    const ts_model_config *c = r->config;
    const uint64_t t = (uint64_t)step_tokens(r), h = (uint64_t)c->hidden_size, hd = (uint64_t)c->head_dim;
    uint64_t mlp = 0;
    for (int l = 0; l < c->num_layers; l++) {
        uint64_t m =
            ts_model_config_layer_is_moe(c, l)
                ? 2 * (uint64_t)c->num_experts_per_tok * (uint64_t)c->moe_intermediate_size + (uint64_t)c->num_experts
                : 2 * (uint64_t)c->intermediate_size;
        if (m > mlp) mlp = m;
    }
    uint64_t floats = 3 * t * h + t * ((uint64_t)c->num_heads + 2 * (uint64_t)c->num_kv_heads) * hd +
                      t * (uint64_t)c->num_heads * hd + t * mlp + (uint64_t)r->batch * (uint64_t)c->vocab_size;
    return floats * 4;
}

static uint64_t scratch_bytes(const ts_plan_request *r) {
    const uint64_t t = (uint64_t)step_tokens(r);
    const uint64_t scores = t * (uint64_t)r->context_length * 4;
    const ts_dtype_info *q8k = ts_dtype_get(TS_DTYPE_Q8_K);
    const uint64_t blocks =
        ((uint64_t)widest_activation(r->config) + (uint64_t)q8k->block_size - 1) / (uint64_t)q8k->block_size;
    return scores + t * blocks * (uint64_t)q8k->block_bytes;
}

static uint64_t reserve_for(ts_device_kind d) {
    return d == TS_DEVICE_CPU ? TS_PLAN_CPU_RESERVE : TS_PLAN_CUDA_RESERVE;
}

/* Everything but the weights, for a given request. */
static uint64_t runtime_bytes(const ts_plan_request *r, uint64_t reserve) {
    uint64_t kv =
        kv_per_token_per_layer(r) * (uint64_t)r->config->num_layers * (uint64_t)r->context_length * (uint64_t)r->batch;
    return kv + activation_bytes(r) + scratch_bytes(r) + reserve;
}

static int normalise(const ts_plan_request *in, ts_plan_request *r, ts_error *err) {
    *r = *in;
    if (check_config(r->config, err) != 0) return -1;
    if (ts_quant_scheme_check_layers(&r->quant, r->config->num_layers, err) != 0) {
        ts_error_prefix(err, "planner: quantization rules: ");
        return -1;
    }
    if (r->context_length <= 0)
        r->context_length = r->config->max_position_embeddings > 0 ? r->config->max_position_embeddings : 2048;
    if (r->batch <= 0) r->batch = 1;
    if (r->kv_elem_bytes <= 0) r->kv_elem_bytes = TS_PLAN_DEFAULT_KV_ELEM_BYTES;
    if (r->context_length > (1ll << 26))
        return ts_fail(err, "planner: context length %lld is too large", (long long)r->context_length);
    if (r->batch > (1 << 20)) return ts_fail(err, "planner: %d sequences is too many", r->batch);
    if (r->reserve_bytes < 0) r->reserve_bytes = (int64_t)reserve_for(r->device);
    if (r->step_tokens > (1 << 20)) return ts_fail(err, "planner: %d tokens per step is too many", r->step_tokens);
    if (r->gpu_layers < 0) return ts_fail(err, "planner: --gpu-layers %d is negative", r->gpu_layers);
    if (r->device != TS_DEVICE_CUDA || r->gpu_layers >= r->config->num_layers) r->gpu_layers = 0;
    r->step_tokens = (int)step_tokens(r);
    return 0;
}

/* ---- what would fit ---- */

static uint64_t total_for(const ts_plan_request *r, uint64_t weights) {
    return weights + runtime_bytes(r, (uint64_t)r->reserve_bytes);
}

static int max_batch_fitting(const ts_plan_request *base, uint64_t weights) {
    ts_plan_request r = *base;
    int lo = 0, hi = base->batch > 1 ? base->batch : 1;
    /* look above the request too, up to 4096 sequences */
    int limit = 4096 > hi ? 4096 : hi;
    r.batch = 1;
    if (total_for(&r, weights) > base->device_bytes) return 0;
    lo = 1;
    hi = limit;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        r.batch = mid;
        if (total_for(&r, weights) <= base->device_bytes) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int64_t max_context_fitting(const ts_plan_request *base, uint64_t weights) {
    ts_plan_request r = *base;
    int64_t lo = 1, hi = base->config->max_position_embeddings > base->context_length
                             ? base->config->max_position_embeddings
                             : base->context_length;
    r.context_length = 1;
    if (total_for(&r, weights) > base->device_bytes) return 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        r.context_length = mid;
        if (total_for(&r, weights) <= base->device_bytes) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* GPU holds the last n layers, their KV cache, the output head and final norm (and the embedding when
 * the head is tied to it); the CPU holds the embedding and the other layers with their KV cache. Both
 * sides need activations and scratch and their own reserve. Weights in each side's layouts: on_gpu's and
 * on_cpu's per-layer bytes. */
static void split_bytes(const ts_plan_request *r, const ts_plan *on_gpu, const ts_plan *on_cpu, int n, uint64_t *gpu,
                        uint64_t *cpu) {
    const int layers = r->config->num_layers;
    const uint64_t kv_layer = kv_per_token_per_layer(r) * (uint64_t)r->context_length * (uint64_t)r->batch;
    const uint64_t work = activation_bytes(r) + scratch_bytes(r);
    uint64_t g = on_gpu->output_bytes + work + TS_PLAN_CUDA_RESERVE, c = work + TS_PLAN_CPU_RESERVE;
    if (r->config->tie_word_embeddings) g += on_gpu->embedding_bytes;
    else c += on_cpu->embedding_bytes;
    for (int l = 0; l < layers; l++) {
        if (l >= layers - n) g += on_gpu->layer_bytes[l] + kv_layer;
        else c += on_cpu->layer_bytes[l] + kv_layer;
    }
    *gpu = g;
    *cpu = c;
}

/* The most layers that fit on the GPU with the rest fitting in host memory; -1 when none. */
static int best_split(const ts_plan_request *r, const ts_plan *on_gpu, const ts_plan *on_cpu, uint64_t *gpu_out,
                      uint64_t *cpu_out) {
    int best = -1;
    for (int n = r->config->num_layers; n >= 1; n--) {
        uint64_t g, c;
        split_bytes(r, on_gpu, on_cpu, n, &g, &c);
        if (g <= r->device_bytes && c <= r->host_bytes) {
            best = n;
            *gpu_out = g;
            *cpu_out = c;
            break;
        }
    }
    return best;
}

static void fill_layers(const ts_plan_request *r, const ts_quant_scheme *q, ts_device_kind device, ts_plan *scratch) {
    memset(scratch, 0, sizeof *scratch);
    walk w = {.c = r->config, .q = q, .device = device, .plan = scratch};
    run_walk(&w);
    scratch->weight_bytes = w.bytes;
}

int ts_plan_compute(const ts_plan_request *in, ts_plan *out, ts_error *err) {
    memset(out, 0, sizeof *out);
    ts_plan_request r;
    if (normalise(in, &r, err) != 0) return -1;
    out->req = r;
    walk w = {.c = r.config, .q = &r.quant, .device = r.device, .plan = out};
    run_walk(&w);
    out->weight_bytes = w.bytes;
    out->weight_params = w.params;
    out->kv_bytes_per_token = kv_per_token_per_layer(&r) * (uint64_t)r.config->num_layers;
    out->kv_bytes = out->kv_bytes_per_token * (uint64_t)r.context_length * (uint64_t)r.batch;
    out->activation_bytes = activation_bytes(&r);
    out->scratch_bytes = scratch_bytes(&r);
    out->reserve_bytes = (uint64_t)r.reserve_bytes;
    out->total_bytes =
        out->weight_bytes + out->kv_bytes + out->activation_bytes + out->scratch_bytes + out->reserve_bytes;
    out->available_bytes = r.device_bytes;
    out->fits = out->total_bytes <= r.device_bytes;
    out->host_side_fits = 1;
    /* a split's CPU side in the file's layouts (the plan's own figures are the device's) */
    ts_plan on_cpu;
    if (r.gpu_layers > 0) {
        /* the requested split: the GPU side is what must fit the device, the CPU side the host */
        uint64_t g = 0, c = 0;
        fill_layers(&r, &r.quant, TS_DEVICE_CPU, &on_cpu);
        split_bytes(&r, out, &on_cpu, r.gpu_layers, &g, &c);
        out->total_bytes = g;
        out->host_side_bytes = c;
        out->host_side_fits = r.host_bytes == 0 || c <= r.host_bytes;
        out->fits = g <= r.device_bytes && out->host_side_fits;
    }

    static const ts_quant_kind kinds[] = {TS_QUANT_BF16, TS_QUANT_INT8, TS_QUANT_INT4};
    for (int i = 0; i < 3; i++) {
        ts_plan_alternative *a = &out->alternatives[out->num_alternatives++];
        a->quant.kind = kinds[i];
        a->weight_bytes = weight_bytes_on(r.device, r.config, &a->quant, NULL);
        a->total_bytes = total_for(&r, a->weight_bytes);
        a->fits = a->total_bytes <= r.device_bytes;
    }
    out->max_batch = max_batch_fitting(&r, out->weight_bytes);
    out->max_context = max_context_fitting(&r, out->weight_bytes);

    out->split_gpu_layers = -1;
    if (r.device == TS_DEVICE_CUDA && r.host_bytes > 0 && !out->fits) {
        /* the requested quantization first, then the coarser ones */
        ts_quant_scheme order[4];
        int n = 0;
        order[n++] = r.quant;
        for (int i = 0; i < 3; i++) {
            if (kinds[i] == TS_QUANT_BF16 && (r.quant.kind == TS_QUANT_INT8 || r.quant.kind == TS_QUANT_INT4)) continue;
            if (kinds[i] == TS_QUANT_INT8 && r.quant.kind == TS_QUANT_INT4) continue;
            if (kinds[i] != r.quant.kind) order[n++] = (ts_quant_scheme){.kind = kinds[i]};
        }
        ts_plan on_gpu;
        for (int i = 0; i < n && out->split_gpu_layers < 0; i++) {
            fill_layers(&r, &order[i], TS_DEVICE_CUDA, &on_gpu);
            fill_layers(&r, &order[i], TS_DEVICE_CPU, &on_cpu);
            uint64_t g = 0, c = 0;
            int best = best_split(&r, &on_gpu, &on_cpu, &g, &c);
            if (best >= 1 && best < r.config->num_layers) {
                out->split_gpu_layers = best;
                out->split_quant = order[i];
                out->split_gpu_bytes = g;
                out->split_cpu_bytes = c;
            }
        }
    }
    return 0;
}
