/* The architecture-independent description of a model: what config.json (or GGUF metadata) says,
 * normalised to one spelling. Both Hugging Face spellings are accepted by the parser
 * (rope_theta/torch_dtype and rope_parameters/dtype; num_experts and num_local_experts). */
#ifndef TS_FORMAT_MODEL_CONFIG_H
#define TS_FORMAT_MODEL_CONFIG_H

#include <stdint.h>

#include "base/error.h"
#include "quant/dtype.h"

typedef enum ts_arch {
    TS_ARCH_UNKNOWN = 0,
    TS_ARCH_LLAMA,
    TS_ARCH_QWEN2,
    TS_ARCH_QWEN3,
    TS_ARCH_QWEN3_MOE,
    TS_ARCH_GPT2,
} ts_arch;

typedef enum ts_activation {
    TS_ACT_SILU = 0,
    TS_ACT_GELU_TANH, /* gelu_new / gelu_pytorch_tanh */
    TS_ACT_GELU_ERF,  /* gelu */
} ts_activation;

typedef enum ts_rope_kind {
    TS_ROPE_DEFAULT = 0,
    TS_ROPE_LLAMA3, /* frequency-dependent scaling of Llama 3.1+ */
    TS_ROPE_LINEAR,
} ts_rope_kind;

#define TS_MAX_EOS 8
#define TS_MAX_LAYERS 512

typedef struct ts_model_config {
    ts_arch arch;
    char model_type[64];
    ts_dtype dtype; /* the checkpoint's declared dtype */

    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int max_position_embeddings;

    double norm_eps;
    int tie_word_embeddings;
    int attention_bias; /* q/k/v (and for gpt2 all) projections carry biases */
    int qk_norm;        /* qwen3: RMSNorm on each head of q and k before RoPE */
    ts_activation activation;

    ts_rope_kind rope_kind;
    double rope_theta;
    double rope_factor;
    double rope_low_freq_factor;
    double rope_high_freq_factor;
    int rope_original_max_position;

    /* qwen3_moe */
    int num_experts;
    int num_experts_per_tok;
    int moe_intermediate_size;
    int norm_topk_prob;
    int decoder_sparse_step;
    uint8_t mlp_only_layer[TS_MAX_LAYERS]; /* 1 where a layer keeps a dense MLP */

    int bos_token_id; /* -1 when absent */
    int pad_token_id;
    int eos_token_ids[TS_MAX_EOS];
    int num_eos;
} ts_model_config;

/* Parses config.json text; `source` names the file in error messages. */
int ts_model_config_parse(const char *json_text, const char *source, ts_model_config *out, ts_error *err);
int ts_model_config_load(const char *path, ts_model_config *out, ts_error *err);
/* Checks cross-field consistency (heads divide, head_dim positive...) after parsing or GGUF loading. */
int ts_model_config_validate(const ts_model_config *c, const char *source, ts_error *err);

/* True when layer `layer` uses the mixture-of-experts block. */
int ts_model_config_layer_is_moe(const ts_model_config *c, int layer);

const char *ts_arch_name(ts_arch a);

/* Generation defaults from generation_config.json; fields absent there stay at "unset" values. */
typedef struct ts_generation_config {
    int eos_token_ids[TS_MAX_EOS];
    int num_eos;
    int bos_token_id;
    double temperature; /* < 0: unset */
    double top_p;       /* < 0: unset */
    int top_k;          /* < 0: unset */
    double repetition_penalty; /* < 0: unset */
} ts_generation_config;

void ts_generation_config_init(ts_generation_config *g);
int ts_generation_config_load(const char *path, ts_generation_config *out, ts_error *err);

#endif
