/* The memory planner: before any weight is read, how many bytes a model will need on a device, and
 * whether that fits what the device has. Weight bytes are computed tensor by tensor with the same
 * ts_quant_scheme_dtype the loader uses, so the plan is what the loader will allocate. When the model
 * does not fit, the plan says what would: another quantization, fewer sequences or a shorter context,
 * or (with a GPU) how many layers fit on the GPU with the rest on the CPU.
 *
 * What is counted:
 *   weights      every tensor the loader keeps: token embedding, output head when untied, per layer the
 *                attention projections, their biases, q/k norms, layer norms, the dense MLP or the
 *                router and all experts of a mixture-of-experts layer, the final norm (and GPT-2's
 *                position table). Norms and biases are float32. Bytes as the device keeps them: on a
 *                CUDA device the module's repacked layouts (ts_plan_row_bytes_on), elsewhere the file's.
 *   KV cache     2 (K and V) x layers x kv_heads x head_dim x element size per token, for
 *                context x sequences tokens.
 *   activations  float32 tensors alive during one forward step over T tokens (T = step_tokens: the
 *                prefill chunk, at least one token per sequence): residual, normed input and attention
 *                projection output (3 x T x hidden), q/k/v (T x (heads + 2 kv_heads) x head_dim),
 *                attention context (T x heads x head_dim), the MLP intermediate (2 x T x intermediate,
 *                or for MoE 2 x T x experts_per_token x moe_intermediate plus T x experts router
 *                logits), and one row of logits per sequence (sequences x vocab).
 *   scratch      one head's attention scores over the step (T x context float32) and the 8-bit copy of
 *                the widest activation that quantized matrix products read (q8_k blocks).
 *   reserve      a fixed allowance for everything else: 256 MiB on the CPU (runtime, tokenizer, server
 *                buffers), 1 GiB on a CUDA device (driver context, cuBLAS workspace, the panel of dequantized
 *                weight a prefill product reads). Weights dequantized ahead of their products (up to 320 MiB,
 *                cuda_stage.cu) are taken only where 1 GiB more stays free, so a plan never counts on them. */
#ifndef TS_RUNTIME_PLANNER_H
#define TS_RUNTIME_PLANNER_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "format/model_config.h"
#include "quant/scheme.h"
#include "runtime/devices_resolve.h"

#define TS_PLAN_DEFAULT_STEP_TOKENS 512
/* The paged KV cache (runtime/kv_cache.c) stores float32 K and V. */
#define TS_PLAN_DEFAULT_KV_ELEM_BYTES 4
#define TS_PLAN_CPU_RESERVE (256ull << 20)
#define TS_PLAN_CUDA_RESERVE (1ull << 30)
#define TS_PLAN_MAX_ROWS 24

typedef struct ts_plan_request {
    const ts_model_config *config;
    ts_quant_scheme quant;
    int64_t context_length; /* tokens per sequence; 0: the model's max_position_embeddings */
    int batch;              /* concurrent sequences; 0: 1 */
    int kv_elem_bytes;      /* 0: TS_PLAN_DEFAULT_KV_ELEM_BYTES */
    int step_tokens;        /* 0: min(512, context), at least batch */
    ts_device_kind device;
    uint64_t device_bytes; /* available on the device (the CPU's usable memory for TS_DEVICE_CPU) */
    uint64_t host_bytes;   /* CPU memory for a GPU + CPU split; 0: no split is considered */
    /* CUDA with --gpu-layers N (as llama.cpp's -ngl): only the last N layers, their KV cache and the
     * output head on the GPU, the embedding and the other layers on the CPU. 0 (or the layer count and
     * more): every layer on the device. */
    int gpu_layers;
    int64_t reserve_bytes; /* < 0: the default for the device */
} ts_plan_request;

typedef struct ts_plan_row {
    char name[40]; /* "token embedding", "attention q/k/v/o", "experts gate/up/down" ... */
    ts_dtype dtype;
    int tensors;
    int64_t params;
    uint64_t bytes;
} ts_plan_row;

typedef struct ts_plan_alternative {
    ts_quant_scheme quant;
    uint64_t weight_bytes;
    uint64_t total_bytes;
    int fits;
} ts_plan_alternative;

typedef struct ts_plan {
    ts_plan_request req; /* with defaults filled in */
    ts_plan_row rows[TS_PLAN_MAX_ROWS];
    int num_rows;

    int64_t weight_params;
    uint64_t weight_bytes;
    uint64_t layer_bytes[TS_MAX_LAYERS];
    uint64_t embedding_bytes; /* token (and position) embeddings */
    uint64_t output_bytes;    /* untied output head and final norm */

    uint64_t kv_bytes_per_token;
    uint64_t kv_bytes;
    uint64_t activation_bytes;
    uint64_t scratch_bytes;
    uint64_t reserve_bytes;
    uint64_t total_bytes;
    uint64_t available_bytes;
    int fits;

    /* What would fit (filled in whether or not the request fits). */
    ts_plan_alternative alternatives[3]; /* bf16, int8, int4 */
    int num_alternatives;
    int max_batch;        /* most sequences at this context; 0 when not even one fits */
    int64_t max_context;  /* longest context at this batch; 0 when not even one token fits */
    /* With req.gpu_layers: total_bytes and fits are the GPU's side of that split; the CPU's side: */
    uint64_t host_side_bytes;
    int host_side_fits; /* host_side_bytes <= req.host_bytes (1 when host_bytes is not given) */
    int split_gpu_layers; /* suggested: last N layers on the GPU, the rest on the CPU; -1: no such split */
    ts_quant_scheme split_quant;
    uint64_t split_gpu_bytes, split_cpu_bytes;
} ts_plan;

int ts_plan_compute(const ts_plan_request *req, ts_plan *out, ts_error *err);

/* Bytes of one row of `cols` weights of type t as `device` keeps it. The CUDA module repacks some layouts
 * (cuda_matmul.cu, repack_blocks) into 32-value groups of codes: Q4_K with its scale and minimum codes a group
 * and its fp16 d and dmin once per 8 groups (4.625 bits; the file 4.5), IQ4_XS with an int8 sub-scale a group
 * and its fp16 d once per 8 groups (4.31 bits; the file 4.25); it keeps the others as the file has them, and
 * so does the CPU. */
uint64_t ts_plan_row_bytes_on(ts_device_kind device, ts_dtype t, int64_t cols);

/* Weight bytes and parameter count alone (the loader's figure for one quantization, the file's bytes). */
int ts_plan_weight_bytes(const ts_model_config *c, const ts_quant_scheme *q, uint64_t *bytes, int64_t *params,
                         ts_error *err);

/* The table `tessera plan` prints (heap string, caller frees). */
char *ts_plan_format_text(const ts_plan *p);
json_t *ts_plan_to_json(const ts_plan *p);
/* One paragraph: why it does not fit, with the numbers and what would fit. Empty when it fits. */
const char *ts_plan_refusal(const ts_plan *p, char *buf, size_t cap);

#endif
