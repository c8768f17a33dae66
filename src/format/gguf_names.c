/* Tensor names: llama.cpp's GGUF names (token_embd, blk.N.attn_q, ...) against the Hugging Face
 * checkpoint names of the same tensors, per architecture family. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_model.h"

typedef struct name_pair {
    const char *gguf;
    const char *hf;
} name_pair;

static const name_pair k_llama_global[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

static const name_pair k_llama_layer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate_inp.weight", "mlp.gate.weight"},
};

/* Merged expert tensors and the per-expert projection each holds. */
static const name_pair k_expert[] = {
    {"ffn_gate_exps.weight", "gate_proj.weight"},
    {"ffn_up_exps.weight", "up_proj.weight"},
    {"ffn_down_exps.weight", "down_proj.weight"},
};

static const name_pair k_gpt2_global[] = {
    {"token_embd.weight", "transformer.wte.weight"},
    {"position_embd.weight", "transformer.wpe.weight"},
    {"output_norm.weight", "transformer.ln_f.weight"},
    {"output_norm.bias", "transformer.ln_f.bias"},
    {"output.weight", "lm_head.weight"},
};

static const name_pair k_gpt2_layer[] = {
    {"attn_norm.weight", "ln_1.weight"},       {"attn_norm.bias", "ln_1.bias"},
    {"ffn_norm.weight", "ln_2.weight"},        {"ffn_norm.bias", "ln_2.bias"},
    {"attn_qkv.weight", "attn.c_attn.weight"}, {"attn_qkv.bias", "attn.c_attn.bias"},
    {"attn_output.weight", "attn.c_proj.weight"}, {"attn_output.bias", "attn.c_proj.bias"},
    {"ffn_up.weight", "mlp.c_fc.weight"},      {"ffn_up.bias", "mlp.c_fc.bias"},
    {"ffn_down.weight", "mlp.c_proj.weight"},  {"ffn_down.bias", "mlp.c_proj.bias"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *ts_gguf_arch_name(ts_arch arch) {
    switch (arch) {
    case TS_ARCH_LLAMA: return "llama";
    case TS_ARCH_QWEN2: return "qwen2";
    case TS_ARCH_QWEN3: return "qwen3";
    case TS_ARCH_QWEN3_MOE: return "qwen3moe";
    case TS_ARCH_GPT2: return "gpt2";
    default: return NULL;
    }
}

/* "<prefix><digits>.<rest>" -> number and rest; 0 on match. */
static int split_indexed(const char *s, const char *prefix, int *index, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl) != 0) return -1;
    const char *p = s + pl;
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
        p++;
    }
    if (*p != '.') return -1;
    *index = (int)v;
    *rest = p + 1;
    return 0;
}

static int emit(char *out, size_t cap, const char *fmt, int a, const char *b) {
    int n = a >= 0 ? snprintf(out, cap, fmt, a, b) : snprintf(out, cap, fmt, b);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int ts_gguf_name_to_hf(ts_arch arch, const char *g, char *out, size_t cap) {
    int gpt2 = arch == TS_ARCH_GPT2;
    const name_pair *glob = gpt2 ? k_gpt2_global : k_llama_global;
    size_t nglob = gpt2 ? COUNT(k_gpt2_global) : COUNT(k_llama_global);
    const name_pair *lay = gpt2 ? k_gpt2_layer : k_llama_layer;
    size_t nlay = gpt2 ? COUNT(k_gpt2_layer) : COUNT(k_llama_layer);
    for (size_t i = 0; i < nglob; i++)
        if (!strcmp(g, glob[i].gguf)) return emit(out, cap, "%s", -1, glob[i].hf);
    int layer;
    const char *rest;
    if (split_indexed(g, "blk.", &layer, &rest) != 0) return -1;
    for (size_t i = 0; i < nlay; i++)
        if (!strcmp(rest, lay[i].gguf)) return emit(out, cap, gpt2 ? "transformer.h.%d.%s" : "model.layers.%d.%s", layer, lay[i].hf);
    return -1;
}

int ts_gguf_name_from_hf(ts_arch arch, const char *h, char *out, size_t cap, int *expert) {
    *expert = -1;
    int gpt2 = arch == TS_ARCH_GPT2;
    char buf[512];
    if (gpt2 && strncmp(h, "transformer.", 12) != 0 && strcmp(h, "lm_head.weight") != 0) {
        /* GPT-2 checkpoints appear with and without the "transformer." prefix. */
        if (snprintf(buf, sizeof buf, "transformer.%s", h) >= (int)sizeof buf) return -1;
        h = buf;
    }
    const name_pair *glob = gpt2 ? k_gpt2_global : k_llama_global;
    size_t nglob = gpt2 ? COUNT(k_gpt2_global) : COUNT(k_llama_global);
    const name_pair *lay = gpt2 ? k_gpt2_layer : k_llama_layer;
    size_t nlay = gpt2 ? COUNT(k_gpt2_layer) : COUNT(k_llama_layer);
    for (size_t i = 0; i < nglob; i++)
        if (!strcmp(h, glob[i].hf)) return emit(out, cap, "%s", -1, glob[i].gguf);
    int layer;
    const char *rest;
    if (split_indexed(h, gpt2 ? "transformer.h." : "model.layers.", &layer, &rest) != 0) return -1;
    for (size_t i = 0; i < nlay; i++)
        if (!strcmp(rest, lay[i].hf)) return emit(out, cap, "blk.%d.%s", layer, lay[i].gguf);
    int e;
    const char *proj;
    if (!gpt2 && split_indexed(rest, "mlp.experts.", &e, &proj) == 0) {
        for (size_t i = 0; i < COUNT(k_expert); i++) {
            if (!strcmp(proj, k_expert[i].hf)) {
                *expert = e;
                return emit(out, cap, "blk.%d.%s", layer, k_expert[i].gguf);
            }
        }
    }
    return -1;
}

const char *ts_gguf_expert_projection(const char *gguf_rest) {
    for (size_t i = 0; i < COUNT(k_expert); i++)
        if (!strcmp(gguf_rest, k_expert[i].gguf)) return k_expert[i].hf;
    return NULL;
}
