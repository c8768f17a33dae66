/* Shared set-up of the commands that load a model: the backend from --threads (and, later, the
 * accelerator resolution), quantization from --quant, and the load itself with a readable error. */
#ifndef TS_CLI_CLI_MODEL_H
#define TS_CLI_CLI_MODEL_H

#include "cli/args.h"
#include "model/model.h"

#define TS_CLI_MODEL_OPTIONS                                                                          \
    {"model", 1, "model directory (Hugging Face) or .gguf file"},                                    \
        {"synth", 1, "instead of --model: random weights shaped by this config.json (benchmarks)"},   \
        {"synth-type", 1, "weight type of --synth models (default q4_0)"},                           \
        {"threads", 1, "CPU threads (default: all available cores)"},                                 \
        {"quant", 1, "quantize on load: int4, int8, fp16, bf16, none, or a GGUF type (default none); :NAME=TYPE,... after it gives some tensors their own (int4:token_embd=q8_0)"}, \
        {"device", 1, "cpu, cuda or auto (default cpu)"},                                            \
        {"precision", 1, "GPU arithmetic: fp32, bf16 or fp16 (default bf16)"},                       \
        {"unified-memory", 0, "keep GPU weights in mapped host memory (models larger than the GPU)"},   \
        {"gpu-dense-cache", 0, "also keep bf16 copies of quantized weights on the GPU (faster prefill)"}, \
        {"gpu-layers", 1, "with --device cuda: only the last N layers (and the head) on the GPU, the rest on the CPU"}, \
        {"rope-freq-base", 1, "override the RoPE base (GGUF files written without it)"}

typedef struct ts_cli_model {
    ts_backend *be;
    ts_backend *cpu; /* the GPU backend's fallback, when the model runs on a GPU */
    ts_model *model;
} ts_cli_model;

/* Prints the error and returns non-zero on failure. max_step_tokens 0 = default. */
int ts_cli_model_open(const ts_args *a, int max_step_tokens, ts_cli_model *out);
void ts_cli_model_close(ts_cli_model *cm);

#endif
