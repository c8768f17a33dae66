/* Loading a model (config + tensors + architecture binding + scratch) and running one forward step:
 * the architecture's layers, then the final norm and output head over the rows whose logits are wanted. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/argmax.h"
#include "base/files.h"
#include "base/log.h"
#include "model/checkpoint.h"
#include "model/arch.h"
#include "model/rope.h"
#include "model/weights.h"

#define DEFAULT_MAX_STEP_TOKENS 512
/* Rows of logits computed at a time: the GPU's batch kernels take up to 32 tokens per pass over a weight,
 * so a decode step of 32 sequences reads the output head once; with 16 it read it twice (H200: 8B batch 32
 * 4.3 % slower, 0.6B 7.9 %, docs/cuda-notes.md v14). */
#define LOGIT_CHUNK 32

const ts_arch_impl *ts_arch_impl_for(ts_arch arch) {
    switch (arch) {
    case TS_ARCH_LLAMA:
    case TS_ARCH_QWEN2:
    case TS_ARCH_QWEN3: return &ts_llama_impl;
    case TS_ARCH_QWEN3_MOE: return &ts_qwen3_moe_impl;
    case TS_ARCH_GPT2: return &ts_gpt2_impl;
    default: return NULL;
    }
}

void ts_model_options_init(ts_model_options *o) {
    memset(o, 0, sizeof *o);
    o->quant.kind = TS_QUANT_NONE;
    o->max_step_tokens = DEFAULT_MAX_STEP_TOKENS;
    o->gpu_layers = -1;
}

void ts_model_activate(ts_model *m, int host) {
    int h = host && m->host_be;
    m->be = h ? m->host_be : m->dev_be;
    m->s = h ? &m->host_scratch : &m->dev_scratch;
}

static int read_checkpoint(ts_model *m, const char *path, ts_error *err) {
    if (ts_checkpoint_is_gguf(path)) {
        m->vocab = calloc(1, sizeof *m->vocab);
        if (!m->vocab) return ts_fail(err, "out of memory");
        ts_vocab_spec_init(m->vocab);
    }
    return ts_checkpoint_read(path, &m->cfg, &m->table, m->vocab, err);
}

/* The scratch set `s` in the memory of m->be. */
static int alloc_scratch(ts_model *m, ts_scratch *s, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    size_t T = (size_t)m->opt.max_step_tokens;
    size_t d = (size_t)c->hidden_size, q = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t inner = (size_t)c->intermediate_size;
    if (c->arch == TS_ARCH_QWEN3_MOE && (size_t)c->moe_intermediate_size > inner) inner = (size_t)c->moe_intermediate_size;
    m->logit_chunk = LOGIT_CHUNK;
    /* q, k and v are three regions of one block; the same floats hold them side by side per token (qkv
     * [T, q + 2 kv]) where a backend multiplies the three weights as one (see ts_block_rope_attention) */
    if (!(s->x = ts_model_alloc_floats(m, T * d, err)) || !(s->xn = ts_model_alloc_floats(m, T * d, err)) ||
        !(s->qkv = ts_model_alloc_floats(m, T * (q + 2 * kv), err)) ||
        !(s->attn = ts_model_alloc_floats(m, T * (q > d ? q : d), err)) ||
        !(s->proj = ts_model_alloc_floats(m, T * d, err)) || !(s->ffn_a = ts_model_alloc_floats(m, T * inner, err)) ||
        !(s->ffn_b = ts_model_alloc_floats(m, T * inner, err)) ||
        !(s->logit_rows = ts_model_alloc_floats(m, (size_t)m->logit_chunk * d, err)) ||
        !(s->logit_out = ts_model_alloc_floats(m, (size_t)m->logit_chunk * (size_t)c->vocab_size, err)))
        return -1;
    s->q = s->qkv;
    s->k = s->q + T * q;
    s->v = s->k + T * kv;
    return 0;
}

/* One scratch set per side of a split, each in its backend's memory. */
static int alloc_all_scratch(ts_model *m, ts_error *err) {
    if (m->split > 0) {
        m->be = m->host_be;
        if (alloc_scratch(m, &m->host_scratch, err) != 0) return -1;
    }
    m->be = m->dev_be;
    if (alloc_scratch(m, &m->dev_scratch, err) != 0) return -1;
    ts_model_activate(m, 0);
    return 0;
}

static int choose_split(ts_model *m, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    m->split = 0;
    if (!m->host_be || m->opt.gpu_layers < 0 || m->opt.gpu_layers >= c->num_layers) {
        m->host_be = NULL;
        return 0;
    }
    if (m->impl->layers != ts_llama_layers)
        return ts_fail(err, "%s: --gpu-layers splits models of the llama family (llama, qwen2, qwen3, qwen3_moe); "
                            "%s runs on one device", m->path, ts_arch_name(c->arch));
    m->split = c->num_layers - m->opt.gpu_layers;
    if (m->split == c->num_layers)
        ts_log_info("%s: --gpu-layers 0: every layer and the output head on %s", m->path, m->host_be->name);
    else
        ts_log_info("%s: the embedding and layers 0..%d on %s; layers %d..%d and the output head on %s", m->path,
                    m->split - 1, m->host_be->name, m->split, c->num_layers - 1, m->dev_be->name);
    return 0;
}

static ts_model *model_new(const char *path, ts_backend *be, const ts_model_options *opt) {
    ts_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->be = m->dev_be = be;
    if (opt) m->opt = *opt;
    else ts_model_options_init(&m->opt);
    m->host_be = m->opt.host_be;
    if (m->opt.max_step_tokens <= 0) m->opt.max_step_tokens = DEFAULT_MAX_STEP_TOKENS;
    ts_tensor_table_init(&m->table);
    return m;
}

/* Everything after the checkpoint is read: architecture, weights, scratch. */
static int model_bind(ts_model *m, ts_error *err) {
    const char *path = m->path;
    if (m->opt.rope_theta > 0) m->cfg.rope_theta = m->opt.rope_theta;
    if (ts_quant_scheme_check_layers(&m->opt.quant, m->cfg.num_layers, err) != 0) {
        ts_error_prefix(err, "%s: quantization rules: ", path);
        return -1;
    }
    ts_quant_budget_init(&m->budget);
    m->impl = ts_arch_impl_for(m->cfg.arch);
    if (!m->impl) return ts_fail(err, "%s: architecture %s has no forward pass", path, ts_arch_name(m->cfg.arch));
    m->layers = calloc((size_t)m->cfg.num_layers, sizeof(ts_layer));
    m->inv_freq = calloc((size_t)m->cfg.head_dim / 2 + 1, sizeof(float));
    if (!m->layers || !m->inv_freq) return ts_fail(err, "out of memory");
    ts_rope_inv_freq(&m->cfg, m->inv_freq);
    m->rope = (ts_rope){.head_dim = m->cfg.head_dim, .inv_freq = m->inv_freq, .attention_factor = 1.0f};
    if (choose_split(m, err) != 0) return -1;
    int bound = m->impl->bind(m, err);
    m->be = m->dev_be;
    if (bound != 0 || alloc_all_scratch(m, err) != 0) return -1;
    ts_log_debug("loaded %s: %s, %d layers, hidden %d, %.1f MiB of weights", path, ts_arch_name(m->cfg.arch),
                 m->cfg.num_layers, m->cfg.hidden_size, (double)m->weight_bytes / (1024.0 * 1024.0));
    return 0;
}

int ts_model_load(const char *path, ts_backend *be, const ts_model_options *opt, ts_model **out, ts_error *err) {
    *out = NULL;
    ts_model *m = model_new(path, be, opt);
    if (!m) return ts_fail(err, "out of memory");
    if (read_checkpoint(m, path, err) != 0 || model_bind(m, err) != 0) {
        ts_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int ts_model_load_table(const char *name, const ts_model_config *cfg, ts_tensor_table *table, ts_backend *be,
                        const ts_model_options *opt, ts_model **out, ts_error *err) {
    *out = NULL;
    ts_model *m = model_new(name, be, opt);
    if (!m) {
        ts_tensor_table_free(table);
        return ts_fail(err, "out of memory");
    }
    m->cfg = *cfg;
    m->table = *table;
    memset(table, 0, sizeof *table);
    if (ts_model_config_validate(&m->cfg, name, err) != 0 || model_bind(m, err) != 0) {
        ts_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

/* By the backend that prepared it: a split model holds weights on two. */
static void release_weight(ts_weight *w) {
    if (!w->prepared_by) return;
    ts_backend *be = (ts_backend *)w->prepared_by;
    be->ops->release_weight(be, w);
}

static void release_layer_weights(ts_model *m, ts_layer *L) {
    ts_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down, &L->router};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) release_weight(ws[i]);
    for (int e = 0; L->is_moe && e < m->cfg.num_experts; e++) {
        release_weight(&L->expert_gate[e]);
        release_weight(&L->expert_up[e]);
        release_weight(&L->expert_down[e]);
    }
    free(L->expert_gate);
    free(L->expert_up);
    free(L->expert_down);
}

void ts_model_free(ts_model *m) {
    if (!m) return;
    for (int l = 0; m->layers && l < m->cfg.num_layers; l++) release_layer_weights(m, &m->layers[l]);
    /* a tied head shares the embedding's prepared copy unless a split put them on different sides */
    if (m->output.prepared && m->output.prepared != m->tok_embed.prepared) release_weight(&m->output);
    release_weight(&m->tok_embed);
    release_weight(&m->pos_embed);
    for (int i = 0; i < m->num_dev_owned; i++) m->dev_owner[i]->ops->free(m->dev_owner[i], m->dev_owned[i]);
    for (int i = 0; i < m->num_owned; i++) free(m->owned[i]);
    free(m->dev_owned);
    free(m->dev_owner);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    if (m->vocab) ts_vocab_spec_free(m->vocab);
    free(m->vocab);
    ts_tensor_table_free(&m->table);
    free(m);
}

int ts_model_files_changed(const ts_model *m, char *why, size_t cap) {
    int worst = 0;
    for (int i = 0; i < m->table.num_files; i++) {
        char w[4400];
        int r = ts_mapped_file_changed(&m->table.files[i], w, sizeof w);
        if (r == 1 || (r == 2 && worst == 0)) {
            snprintf(why, cap, "%s", w);
            worst = r;
        }
        if (worst == 1) break;
    }
    return worst;
}

ts_kv_layout ts_model_host_kv_layout(const ts_model *m, int block_tokens, int num_blocks) {
    ts_kv_layout l = ts_model_kv_layout(m, block_tokens, num_blocks);
    l.num_layers = m->split;
    return l;
}

ts_kv_layout ts_model_kv_layout(const ts_model *m, int block_tokens, int num_blocks) {
    ts_kv_layout l = {.num_layers = m->cfg.num_layers - m->split,
                      .num_kv_heads = m->cfg.num_kv_heads,
                      .head_dim = m->cfg.head_dim,
                      .block_tokens = block_tokens,
                      .num_blocks = num_blocks};
    return l;
}

static int check_step(const ts_model *m, const ts_step *step, ts_error *err) {
    if (step->n_tokens <= 0 || step->n_tokens > m->opt.max_step_tokens)
        return ts_fail(err, "a step carries %d tokens; this model was loaded for 1 to %d", step->n_tokens,
                       m->opt.max_step_tokens);
    for (int i = 0; i < step->n_tokens; i++) {
        if (step->tokens[i] < 0 || step->tokens[i] >= m->cfg.vocab_size)
            return ts_fail(err, "token id %d is outside the vocabulary (0..%d)", step->tokens[i], m->cfg.vocab_size - 1);
        if (m->cfg.arch == TS_ARCH_GPT2 && step->positions[i] >= m->cfg.max_position_embeddings)
            return ts_fail(err, "position %d is beyond this model's %d learned positions", step->positions[i],
                           m->cfg.max_position_embeddings);
    }
    for (int i = 0; i < step->n_logits; i++)
        if (step->logit_rows[i] < 0 || step->logit_rows[i] >= step->n_tokens)
            return ts_fail(err, "logit row %d is outside the step's %d tokens", step->logit_rows[i], step->n_tokens);
    return 0;
}

static int forward(ts_model *m, ts_kv_store *kv, const ts_step *step, float *logits_host, int32_t *tokens,
                   const ts_draw *draws, const ts_penalty *penalties, int n_penalties, const uint8_t *host_rows,
                   ts_layer_probe probe, void *probe_ctx, ts_error *err) {
    if (check_step(m, step, err) != 0) return -1;
    if (draws && !m->be->ops->sample_rows)
        return ts_fail(err, "the %s backend cannot draw tokens where the logits are; sample on the host", m->be->name);
    const ts_model_config *c = &m->cfg;
    if (m->split > 0 && !step->host_kv)
        return ts_fail(err, "this model runs layers 0..%d on %s: the step needs their KV store (host_kv)", m->split - 1,
                       m->host_be->name);
    /* a split model starts on the host; the device's step begins where the stream crosses (layers) */
    ts_model_activate(m, m->split > 0);
    if (m->be->ops->begin_step) m->be->ops->begin_step(m->be, step);
    /* decode steps want every token's logits in order: the final norm can then follow the last product
     * in one fused operation, as the norms between layers do (no gather, no add and norm apart) */
    int all_rows = !probe && step->n_logits == step->n_tokens && step->n_logits <= m->logit_chunk;
    for (int i = 0; all_rows && i < step->n_logits; i++) all_rows = step->logit_rows[i] == i;
    m->final_norm_wanted = all_rows;
    m->final_norm_done = 0;
    m->impl->layers(m, kv, step, probe, probe_ctx);
    ts_backend *be = m->be; /* the head runs where the last layer ran */
    if (probe) {
        /* The reference's last hidden state is taken after the final norm, for every token. */
        m->impl->final_norm(m, m->s->x, step->n_tokens, m->s->xn);
        probe(probe_ctx, c->num_layers, m->s->xn, step->n_tokens, c->hidden_size);
    }
    size_t vocab = (size_t)c->vocab_size;
    for (int r0 = 0; r0 < step->n_logits; r0 += m->logit_chunk) {
        int rows = step->n_logits - r0 < m->logit_chunk ? step->n_logits - r0 : m->logit_chunk;
        const float *head_in = m->s->xn; /* the last layer's fused final norm: every row, in order */
        if (!m->final_norm_done) {
            be->ops->gather_rows(be, m->s->x, step->logit_rows + r0, rows, c->hidden_size, m->s->xn);
            m->impl->final_norm(m, m->s->xn, rows, m->s->logit_rows);
            head_in = m->s->logit_rows;
        }
        if (tokens && !draws && be->ops->matmul_argmax) {
            be->ops->matmul_argmax(be, &m->output, head_in, rows, m->s->logit_out, tokens + r0);
            continue;
        }
        be->ops->matmul(be, &m->output, head_in, rows, m->s->logit_out, NULL);
        if (tokens && draws) {
            for (int i = 0; host_rows && i < rows; i++)
                if (host_rows[r0 + i])
                    be->ops->to_host(be, logits_host + (size_t)(r0 + i) * vocab, m->s->logit_out + (size_t)i * vocab,
                                     vocab * sizeof(float));
            be->ops->sample_rows(be, m->s->logit_out, rows, (int)vocab, draws + r0, penalties, n_penalties, tokens + r0);
            continue;
        }
        if (tokens && be->ops->argmax_rows) {
            be->ops->argmax_rows(be, m->s->logit_out, rows, (int)vocab, tokens + r0);
            continue;
        }
        float *lg = logits_host + (size_t)r0 * vocab;
        be->ops->to_host(be, lg, m->s->logit_out, (size_t)rows * vocab * sizeof(float));
        for (int i = 0; tokens && i < rows; i++) tokens[r0 + i] = ts_argmax(lg + (size_t)i * vocab, (int)vocab);
    }
    be->ops->sync(be);
    if (m->host_be) {
        ts_backend *other = be == m->dev_be ? m->host_be : m->dev_be;
        other->ops->sync(other);
    }
    ts_model_activate(m, 0);
    return 0;
}

int ts_model_forward(ts_model *m, ts_kv_store *kv, const ts_step *step, float *logits_host, ts_layer_probe probe,
                     void *probe_ctx, ts_error *err) {
    return forward(m, kv, step, logits_host, NULL, NULL, NULL, 0, NULL, probe, probe_ctx, err);
}

int ts_model_forward_greedy(ts_model *m, ts_kv_store *kv, const ts_step *step, float *logits_host, int32_t *tokens,
                            ts_error *err) {
    return forward(m, kv, step, logits_host, tokens, NULL, NULL, 0, NULL, NULL, NULL, err);
}

int ts_model_can_draw(const ts_model *m) { return m->be->ops->sample_rows != NULL; }

int ts_model_forward_draw(ts_model *m, ts_kv_store *kv, const ts_step *step, const ts_draw *draws,
                          const ts_penalty *penalties, int n_penalties, const uint8_t *host_rows, float *logits_host,
                          int32_t *tokens, ts_error *err) {
    return forward(m, kv, step, logits_host, tokens, draws, penalties, n_penalties, host_rows, NULL, NULL, err);
}
