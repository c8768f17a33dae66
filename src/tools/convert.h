/* Writing checkpoints: a tensor table (Hugging Face names) converted tensor by tensor to the storage
 * types a quantization scheme chooses, into a llama.cpp-compatible GGUF file; and float tables into a
 * Hugging Face directory (safetensors). Used by `tessera quantize` and `tessera synth`. */
#ifndef TS_TOOLS_CONVERT_H
#define TS_TOOLS_CONVERT_H

#include "format/model_config.h"
#include "format/tensor_table.h"
#include "quant/gptq.h"
#include "quant/scheme.h"
#include "tools/calibrate.h"
#include "tools/tune.h"
#include "tokenizer/vocab_spec.h"

/* The role a tensor plays (for the scheme) and its layer (-1 outside the layers), from its name. */
ts_weight_role ts_tensor_role(const char *hf_name, int *layer);

/* Calibrated conversion: matrices with a Hessian in `hessians` whose target type GPTQ can write are
 * quantized by GPTQ (quant/gptq.h); the others as without calibration. */
typedef struct ts_convert_calibration {
    const ts_hessian_set *hessians;
    ts_gptq_options gptq;
    /* A tied embedding is also the output head, but GPTQ against the head's Hessian moves error into
     * the rows that the lookups read unweighted: on tiny-code that lost about 0.1 point of perplexity
     * against leaving it to the ordinary quantizer (0, the default). */
    int calibrate_tied_embedding;
    int calibrated; /* out: how many matrices GPTQ quantized */
    /* End-to-end tuning after every matrix is quantized (tools/tune.h): tune.steps > 0 and tune_n tokens
     * of calibration text. The float model is the table being converted. */
    ts_tune_options tune;
    const int32_t *tune_ids;
    int64_t tune_n;
    ts_tune_report tune_report; /* out */
} ts_convert_calibration;

/* cal: NULL quantizes every matrix on its own (no calibration). */
int ts_convert_to_gguf(const char *out_path, const ts_model_config *cfg, const ts_tensor_table *table,
                       const ts_vocab_spec *vocab, const ts_quant_scheme *scheme, int threads, const char *name,
                       ts_convert_calibration *cal, ts_quant_budget *budget, ts_error *err);

/* Float tensors only (F32/F16/BF16); writes out_dir/model.safetensors atomically. */
int ts_write_safetensors(const char *path, const ts_tensor_table *table, ts_error *err);

#endif
