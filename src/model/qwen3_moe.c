/* Qwen3-MoE: the Qwen3 attention block with a mixture-of-experts MLP in the layers that
 * decoder_sparse_step selects (dense SwiGLU in mlp_only_layers).
 *   router logits = gate(xn)                      [n, experts]
 *   p = softmax(logits); top-k experts per token (renormalised when norm_topk_prob)
 *   x += sum_k p_k * down_k(silu(gate_k(xn)) * up_k(xn))   */
#include <stdio.h>
#include <stdlib.h>

#include "model/arch.h"
#include "model/blocks.h"
#include "model/weights.h"

static int bind_experts(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    int64_t d = c->hidden_size, inner = c->moe_intermediate_size;
    char name[512];
    snprintf(name, sizeof name, "%smlp.gate.weight", prefix);
    if (ts_bind_matrix(m, name, TS_ROLE_ROUTER, layer, c->num_experts, d, 0, &L->router, err) != 0) return -1;
    L->expert_gate = calloc((size_t)c->num_experts, sizeof(ts_weight));
    L->expert_up = calloc((size_t)c->num_experts, sizeof(ts_weight));
    L->expert_down = calloc((size_t)c->num_experts, sizeof(ts_weight));
    if (!L->expert_gate || !L->expert_up || !L->expert_down) return ts_fail(err, "out of memory");
    for (int e = 0; e < c->num_experts; e++) {
        snprintf(name, sizeof name, "%smlp.experts.%d.gate_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_GATE, layer, inner, d, 0, &L->expert_gate[e], err) != 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.up_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_UP, layer, inner, d, 0, &L->expert_up[e], err) != 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.down_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_DOWN, layer, d, inner, 0, &L->expert_down[e], err) != 0) return -1;
    }
    L->is_moe = 1;
    L->moe = (ts_moe){.router = &L->router,
                      .gate = L->expert_gate,
                      .up = L->expert_up,
                      .down = L->expert_down,
                      .num_experts = c->num_experts,
                      .top_k = c->num_experts_per_tok,
                      .norm_topk_prob = c->norm_topk_prob,
                      .hidden = c->hidden_size,
                      .inner = c->moe_intermediate_size};
    return 0;
}

static int moe_bind(ts_model *m, ts_error *err) {
    if (ts_bind_llama_common(m, err) != 0) return -1;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        char prefix[64], mlp[80];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
        snprintf(mlp, sizeof mlp, "%smlp.", prefix);
        ts_bind_on(m, l < m->split);
        if (ts_bind_rope_attention(m, &m->layers[l], l, prefix, err) != 0) return -1;
        int rc = ts_model_config_layer_is_moe(&m->cfg, l) ? bind_experts(m, &m->layers[l], l, prefix, err)
                                                           : ts_bind_swiglu(m, &m->layers[l], l, mlp, err);
        if (rc != 0) return -1;
    }
    return 0;
}

/* The layers run as the llama family's: only the binding differs. */
const ts_arch_impl ts_qwen3_moe_impl = {TS_ARCH_QWEN3_MOE, moe_bind, ts_llama_layers, ts_llama_final_norm};
