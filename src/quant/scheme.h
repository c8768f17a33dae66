/* Quantization schemes: what a user asks for (--quant int4|int8|fp16|bf16|none, or an exact GGUF type,
 * or the model repository's MODEL_QUANTIZATION) turned into a storage type for each weight, by the
 * weight's role. Keeping this policy in one place lets the loader, `tessera quantize` and the memory
 * planner agree on the bytes. */
#ifndef TS_QUANT_SCHEME_H
#define TS_QUANT_SCHEME_H

#include <stdint.h>

#include "base/error.h"
#include "quant/dtype.h"

typedef enum ts_quant_kind {
    TS_QUANT_NONE = 0, /* keep the stored type */
    TS_QUANT_BF16,
    TS_QUANT_FP16,
    TS_QUANT_INT8,
    TS_QUANT_INT4,
    TS_QUANT_EXACT, /* one named type for every quantizable weight (q4_0, q8_0, q4_k ...) */
} ts_quant_kind;

typedef enum ts_weight_role {
    TS_ROLE_EMBEDDING = 0,
    TS_ROLE_OUTPUT,     /* untied output head */
    TS_ROLE_ATTN_Q,
    TS_ROLE_ATTN_K,
    TS_ROLE_ATTN_V,
    TS_ROLE_ATTN_OUT,
    TS_ROLE_FFN_GATE,
    TS_ROLE_FFN_UP,
    TS_ROLE_FFN_DOWN,
    TS_ROLE_ROUTER,
    TS_ROLE_VECTOR,     /* norms, biases: always float32 in memory */
    TS_ROLE_POSITION,   /* learned position embeddings */
} ts_weight_role;

/* One rule of `tessera quantize --tensor-type`: the weights of `role` in layers layer_lo..layer_hi (every
 * layer, and the weights outside the layers, where layer_lo < 0) are stored as `dtype`. */
typedef struct ts_quant_override {
    ts_weight_role role;
    int layer_lo, layer_hi;
    ts_dtype dtype;
} ts_quant_override;

#define TS_QUANT_MAX_OVERRIDES 32

typedef struct ts_quant_scheme {
    ts_quant_kind kind;
    ts_dtype exact; /* for TS_QUANT_EXACT */
    int n_overrides;
    ts_quant_override overrides[TS_QUANT_MAX_OVERRIDES]; /* the last matching rule wins */
} ts_quant_scheme;

/* "int4", "int8", "fp16", "bf16", "none", "q4_0", "q8_0", "q4_k" ... (case-insensitive), optionally followed
 * by ':' and rules as for ts_quant_scheme_add_overrides: "int4:token_embd=q8_0,ffn_down=q6_k" (for --quant on
 * load and the repository's MODEL_QUANTIZATION, which have no option of their own for them). */
int ts_quant_scheme_parse(const char *name, ts_quant_scheme *out, ts_error *err);
const char *ts_quant_scheme_name(const ts_quant_scheme *s, char *buf, int cap);

/* Adds rules from a comma-separated list of [blk.N.|blk.A-B.]NAME=TYPE, NAME a GGUF tensor name without
 * its ".weight" (token_embd, output, attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down,
 * ffn_gate_inp) and TYPE a storage type (q8_0, q6_k, f16 ...): "token_embd=q8_0,blk.0-3.ffn_down=q6_k". */
int ts_quant_scheme_add_overrides(ts_quant_scheme *s, const char *spec, ts_error *err);
/* A rule that names a layer the model does not have is an error, not a silent no-op. */
int ts_quant_scheme_check_layers(const ts_quant_scheme *s, int num_layers, ts_error *err);

/* Storage type for one weight of `cols` inputs: the last override that matches, else the scheme's choice.
 * Falls back to a finer type when cols does not fill the preferred type's blocks. `source` is the type in the file (returned for TS_QUANT_NONE).
 * int4 keeps every matrix at 4.5 bits a weight (Q4_K where rows fill 256-wide blocks, else IQ4_NL), the
 * types the GPU's fastest kernels read; iq4_xs is the smaller choice (4.25 bits where rows fill 256). */
ts_dtype ts_quant_scheme_dtype(const ts_quant_scheme *s, ts_weight_role role, int layer, int num_layers,
                               ts_dtype source, int64_t cols);

/* Storage accounting: bits and weights per type over a model, for printing bits per weight. */
typedef struct ts_quant_budget {
    double bits;
    double weights;
    double weights_by_dtype[TS_DTYPE_COUNT];
} ts_quant_budget;

void ts_quant_budget_init(ts_quant_budget *b);
void ts_quant_budget_add(ts_quant_budget *b, ts_dtype t, int64_t numel);
double ts_quant_budget_bits_per_weight(const ts_quant_budget *b);
/* "4.50 bits/weight over 15.7M weights: q4_k 20.0%, q4_0 79.8%, f32 0.2%" */
const char *ts_quant_budget_str(const ts_quant_budget *b, char *buf, int cap);

/* One weight of a model, as the scheme sees it. */
typedef struct ts_weight_shape {
    ts_weight_role role;
    int layer; /* -1 for weights outside the layers */
    int64_t rows, cols;
    ts_dtype source;
} ts_weight_shape;

/* Average bits per weight of the scheme over the given weights (vectors count as float32); fills
 * `out` (nullable) with the breakdown. */
double ts_quant_scheme_bits_per_weight(const ts_quant_scheme *s, const ts_weight_shape *w, int n, int num_layers,
                                       ts_quant_budget *out);

#endif
