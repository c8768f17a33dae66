/* Shared set-up of the commands that load a model: the backend from --threads (and, later, the
 * accelerator resolution), quantization from --quant, and the load itself with a readable error. */
#ifndef TS_CLI_CLI_MODEL_H
#define TS_CLI_CLI_MODEL_H

#include "cli/args.h"
#include "model/model.h"

#define TS_CLI_MODEL_OPTIONS                                                                      \
    {"model", 1, "model directory (Hugging Face) or .gguf file"},                                \
        {"threads", 1, "CPU threads (default: all available cores)"},                             \
        {"quant", 1, "quantize on load: int4, int8, fp16, bf16, none, or a GGUF type (default none)"}

typedef struct ts_cli_model {
    ts_backend *be;
    ts_model *model;
} ts_cli_model;

/* Prints the error and returns non-zero on failure. max_step_tokens 0 = default. */
int ts_cli_model_open(const ts_args *a, int max_step_tokens, ts_cli_model *out);
void ts_cli_model_close(ts_cli_model *cm);

#endif
