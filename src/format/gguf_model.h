/* A model in GGUF seen as the Hugging Face checkpoint it was converted from, and back: the model
 * configuration from llama.cpp's metadata keys, tensors renamed to Hugging Face names, the
 * vocabulary from tokenizer.ggml.*; and the inverse, writing a file llama.cpp loads.
 *
 * Layout conventions of the tensors this loader puts in the table (table->gguf_layout is set):
 *  - llama: llama.cpp's converter permutes the rows of q_proj/k_proj (weights and biases) so that
 *    rotary pairs are adjacent; the loader undoes it, so q/k match Hugging Face's layout (the table
 *    owns those permuted copies; rows are whole quant blocks, so this works for every type).
 *  - gpt2: Conv1D weights (c_attn, c_proj, c_fc) stay as llama.cpp stores them, [out, in], where a
 *    Hugging Face safetensors file has [in, out]; table->gguf_layout tells the model loader.
 *  - qwen3_moe: the merged expert tensors blk.N.ffn_{gate,up,down}_exps are split into per-expert
 *    views model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight (no copies).
 *  - Names with no Hugging Face counterpart keep their GGUF name (e.g. rope_freqs.weight, the
 *    llama3 rope factors). */
#ifndef TS_FORMAT_GGUF_MODEL_H
#define TS_FORMAT_GGUF_MODEL_H

#include "base/error.h"
#include "format/gguf.h"
#include "format/model_config.h"
#include "format/tensor_table.h"
#include "tokenizer/vocab_spec.h"

/* Loads path: cfg from metadata, table filled with Hugging Face names (mapping owned by the table),
 * vocab (when not NULL) from tokenizer.ggml.*. */
int ts_gguf_load_model(const char *path, ts_model_config *cfg, ts_tensor_table *table, ts_vocab_spec *vocab,
                       ts_error *err);

/* The same from a parsed file (the table takes g's mapping if g owns one). */
int ts_gguf_model_config(const ts_gguf *g, ts_model_config *cfg, ts_error *err);
int ts_gguf_model_tensors(ts_gguf *g, const ts_model_config *cfg, ts_tensor_table *table, ts_error *err);
int ts_gguf_read_vocab(const ts_gguf *g, ts_vocab_spec *vocab, ts_error *err);

/* GGUF name <-> Hugging Face name for one architecture. Return 0 on success, -1 when the name has no
 * counterpart. Expert tensors map per expert: to_hf of "blk.3.ffn_up_exps.weight" is not defined
 * (the loader splits it); from_hf of "model.layers.3.mlp.experts.7.up_proj.weight" gives
 * "blk.3.ffn_up_exps.weight" and *expert = 7 (else *expert = -1). */
int ts_gguf_name_to_hf(ts_arch arch, const char *gguf_name, char *out, size_t cap);
int ts_gguf_name_from_hf(ts_arch arch, const char *hf_name, char *out, size_t cap, int *expert);
const char *ts_gguf_arch_name(ts_arch arch); /* "llama", "qwen2", "qwen3", "qwen3moe", "gpt2" */
/* For a layer tensor suffix such as "ffn_up_exps.weight", the per-expert Hugging Face projection it
 * merges ("up_proj.weight"); NULL for other suffixes. */
const char *ts_gguf_expert_projection(const char *gguf_layer_suffix);
/* Reorders the rows of a llama q/k projection between llama.cpp's interleaved rotary pairs and
 * Hugging Face's halves: HF row h*hd + j*hd/2 + i is GGUF row h*hd + 2i + j. inverse = 0 goes GGUF
 * -> HF, 1 goes HF -> GGUF. Returns -1 when rows is not n_head heads of an even size. */
int ts_gguf_permute_qk_rows(const void *src, void *dst, int64_t rows, size_t row_bytes, int n_head, int inverse);

/* One tensor to write, named and shaped as in a Hugging Face checkpoint. */
typedef struct ts_gguf_model_tensor {
    const char *name;
    ts_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
    /* gpt2 Conv1D weights: 1 when data is already [out, in] (as this loader returns them); 0 when it
     * is the Hugging Face [in, out] layout (then it is transposed on write, float types only). */
    int out_in_layout;
} ts_gguf_model_tensor;

/* Writes a llama.cpp-compatible GGUF: llama.cpp's metadata keys for cfg, tensors renamed (experts
 * merged, llama q/k rows permuted back, gpt2 Conv1D as [out, in]), the vocabulary when given, and
 * general.name when name is not NULL. */
int ts_gguf_write_model(const char *path, const ts_model_config *cfg, const ts_gguf_model_tensor *tensors, int n,
                        const ts_vocab_spec *vocab, const char *name, ts_error *err);

/* Adds tokenizer.ggml.* (and tokenizer.chat_template) for vocab to a writer. */
struct ts_gguf_writer;
int ts_gguf_write_vocab(struct ts_gguf_writer *w, const ts_vocab_spec *vocab, ts_error *err);

#endif
