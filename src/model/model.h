/* A loaded model: its configuration, its weights bound to a backend, and the scratch activations of
 * one forward step. Architecture-specific code (llama.c, qwen3_moe.c, gpt2.c) fills the weights and
 * runs the layers; this header is what the runtime sees. */
#ifndef TS_MODEL_MODEL_H
#define TS_MODEL_MODEL_H

#include "backend/backend.h"
#include "format/model_config.h"
#include "format/tensor_table.h"
#include "quant/scheme.h"
#include "tokenizer/vocab_spec.h"

typedef struct ts_layer {
    /* pre-attention and pre-FFN norms (float32 vectors in backend memory); biases only for LayerNorm */
    float *attn_norm, *attn_norm_bias;
    float *ffn_norm, *ffn_norm_bias;
    float *q_norm, *k_norm; /* qwen3: per-head RMSNorm weights [head_dim] */

    ts_weight wq, wk, wv, wo; /* llama family: separate projections */
    float *bq, *bk, *bv, *bo;
    ts_weight wqkv; /* gpt2: fused [3 * hidden, hidden] */
    float *bqkv;

    ts_weight w_gate, w_up, w_down; /* dense MLP (gpt2: w_up = c_fc, w_down = c_proj, no gate) */
    float *b_up, *b_down;

    int is_moe;
    ts_weight router;
    ts_weight *expert_gate, *expert_up, *expert_down; /* [num_experts] each */
    ts_moe moe;
} ts_layer;

/* Called after each layer with the residual stream (backend memory, [n, hidden]); layer == num_layers
 * means the output after the final norm. Used by tests to compare hidden states with references. */
typedef void (*ts_layer_probe)(void *ctx, int layer, const float *x, int n, int dim);

typedef struct ts_model ts_model;

typedef struct ts_arch_impl {
    ts_arch arch;
    /* Finds, checks and prepares every weight of the architecture in m->table. */
    int (*bind)(ts_model *m, ts_error *err);
    /* Runs the layers over the step's tokens, leaving the residual stream in m->s->x. */
    void (*layers)(ts_model *m, ts_kv_store *kv, const ts_step *step, ts_layer_probe probe, void *probe_ctx);
    /* Final normalisation of `rows` rows of x into out. */
    void (*final_norm)(ts_model *m, const float *x, int rows, float *out);
} ts_arch_impl;

typedef struct ts_model_options {
    ts_quant_scheme quant; /* quantize on load; kind NONE keeps the file's types */
    int max_step_tokens;   /* largest number of tokens one forward step may carry (default 512) */
    int threads;           /* threads for quantizing on load (0: all cores) */
    double rope_theta;     /* > 0 overrides the checkpoint's RoPE base (GGUF files that lack it) */
    /* --gpu-layers (llama.cpp's -ngl): with host_be set, only the last gpu_layers layers (and the output
     * head) run on the model's backend, the embedding and the layers before them on host_be; 0 puts
     * everything on host_be; < 0 or >= num_layers keeps everything on the model's backend. Llama family. */
    int gpu_layers;
    ts_backend *host_be;
} ts_model_options;

/* The scratch activations of one device, sized for opt.max_step_tokens. */
typedef struct ts_scratch {
    float *x, *xn, *q, *k, *v, *attn, *proj, *ffn_a, *ffn_b, *qkv;
    float *logit_rows, *logit_out; /* [logit_chunk, hidden], [logit_chunk, vocab] */
} ts_scratch;

struct ts_model {
    ts_model_config cfg;
    char path[4096];
    ts_backend *be; /* the backend running (or being bound) now: host_be before the split, else dev_be */
    const ts_arch_impl *impl;
    ts_model_options opt;
    ts_tensor_table table;

    ts_weight tok_embed;
    ts_weight pos_embed; /* gpt2 */
    ts_weight output;    /* the LM head; a copy of tok_embed's descriptor when tied */
    float *final_norm, *final_norm_bias;
    ts_layer *layers;

    float *inv_freq; /* host, head_dim / 2 */
    ts_rope rope;

    ts_scratch *s; /* the scratch of m->be: &dev_scratch, or &host_scratch on the host side of a split */
    int logit_chunk;
    /* Set by the forward step for its layers: every token's logits are wanted, in order, in one chunk, so the
     * last layer may add its output to the residual and apply the final norm in one fused operation (into
     * s->xn, as between layers) instead of a plain add, a row gather and the norm apart; a layers function
     * that does so sets final_norm_done. */
    int final_norm_wanted, final_norm_done;

    /* A GPU/CPU split (--gpu-layers): the embedding and layers [0, split) run on host_be with their KV
     * entries in the step's host_kv; layers [split, num_layers), the final norm and the head on dev_be
     * (on host_be when split == num_layers). The residual stream crosses once per step. split == 0 when
     * the model is not split. */
    int split;
    ts_backend *dev_be, *host_be;
    ts_scratch dev_scratch, host_scratch;

    /* Heap buffers owned by the model (weights converted at load: transposed, quantized). */
    void **owned;
    int num_owned, cap_owned;
    /* Backend allocations owned by the model (vectors, scratch). */
    void **dev_owned;
    ts_backend **dev_owner;
    int num_dev_owned, cap_dev_owned;
    size_t weight_bytes; /* bytes of weights as stored for compute */
    ts_quant_budget budget; /* storage types of the weights, for bits-per-weight reports */
    struct ts_vocab_spec *vocab; /* the vocabulary a GGUF file carries (NULL for directories) */
};

void ts_model_options_init(ts_model_options *o);

/* path: a Hugging Face model directory (config.json + safetensors) or a .gguf file. */
int ts_model_load(const char *path, ts_backend *be, const ts_model_options *opt, ts_model **out, ts_error *err);
/* A model from a tensor table already in memory (synthetic weights, converted files); takes the table. */
int ts_model_load_table(const char *name, const ts_model_config *cfg, ts_tensor_table *table, ts_backend *be,
                        const ts_model_options *opt, ts_model **out, ts_error *err);
void ts_model_free(ts_model *m);

/* One forward step. Writes step->n_logits rows of vocab_size logits to logits_host (host memory).
 * The step's tokens must be valid ids and its sequences' blocks must cover their positions. */
int ts_model_forward(ts_model *m, ts_kv_store *kv, const ts_step *step, float *logits_host, ts_layer_probe probe,
                     void *probe_ctx, ts_error *err);

/* A forward step whose logit rows are all decoded greedily: tokens[i] receives the largest logit's index
 * of row i (lowest on ties). A backend with argmax_rows picks it where the logits are (on a GPU only the
 * token ids cross to the host); otherwise the logits pass through logits_host (n_logits rows of vocab). */
int ts_model_forward_greedy(ts_model *m, ts_kv_store *kv, const ts_step *step, float *logits_host, int32_t *tokens,
                            ts_error *err);

/* Whether ts_model_forward_draw can run: the backend holding the logits draws tokens itself. */
int ts_model_can_draw(const ts_model *m);
/* A forward step whose tokens are drawn where the logits are: tokens[i] receives draws[i]'s choice from
 * logit row i after its penalties (entries of penalties; only token ids cross to the host on a GPU).
 * Rows flagged in host_rows (may be NULL) also have their logits copied to row i of logits_host first,
 * for the host to choose from. */
int ts_model_forward_draw(ts_model *m, ts_kv_store *kv, const ts_step *step, const ts_draw *draws,
                          const ts_penalty *penalties, int n_penalties, const uint8_t *host_rows, float *logits_host,
                          int32_t *tokens, ts_error *err);

/* Checks the model's files on disk: 0 unchanged, 1 modified in place (the model must stop: its mapped
 * weights may change or fault), 2 replaced or removed (the loaded version stays valid). */
int ts_model_files_changed(const ts_model *m, char *why, size_t cap);

/* KV layout for this model with the given block geometry: the layers on the model's backend. A split
 * model's first layers need a store of ts_model_host_kv_layout on host_be (passed as ts_step.host_kv). */
ts_kv_layout ts_model_kv_layout(const ts_model *m, int block_tokens, int num_blocks);
ts_kv_layout ts_model_host_kv_layout(const ts_model *m, int block_tokens, int num_blocks);

/* Makes the device (host = 0) or the host side of a split model the active backend and scratch. */
void ts_model_activate(ts_model *m, int host);

#endif
