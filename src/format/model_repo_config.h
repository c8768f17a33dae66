/* A Triton config.pbtxt reduced to what tessera honours. The whole file is first checked against
 * Triton's ModelConfig schema (model_repo_schema.h), so any valid Triton configuration loads, and
 * then the honoured fields are copied into ts_triton_config with positions kept for later errors
 * (for example an unknown accelerator name is reported by runtime/devices at its line and column).
 *
 * Model-level `parameters` that tessera reads (values are ModelParameter { string_value }):
 *   MODEL_QUANTIZATION      int4 | int8 | fp16 | bf16 | none | an exact type (q4_0, q8_0, q4_k ...)
 *   TESSERA_CPU_FALLBACK    1/0, true/false, yes/no, on/off: run operations the GPU backend lacks on the
 *                           CPU instead of refusing the model. PYTORCH_ENABLE_MPS_FALLBACK (the seed's
 *                           spelling) means the same; when both are given they must agree.
 *   TESSERA_CONTEXT_LENGTH  tokens per sequence (default: the model's max_position_embeddings)
 *   TESSERA_KV_CACHE_BYTES  KV cache budget, a byte count with an optional unit: 8GiB, 512MiB, 2G
 *   TESSERA_THREADS         CPU threads (default: the cores this process may run on)
 *   TESSERA_MAX_SEQUENCES   sequences decoded concurrently (default: max_batch_size, at least 1)
 * Other keys are kept verbatim in `parameters`; an unknown key that starts with TESSERA_ is an error,
 * since it can only be a misspelling of one of ours. */
#ifndef TS_FORMAT_MODEL_REPO_CONFIG_H
#define TS_FORMAT_MODEL_REPO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "quant/scheme.h"

#define TS_TRITON_MAX_TENSORS 16
#define TS_TRITON_MAX_DIMS 8
#define TS_TRITON_MAX_GROUPS 8
#define TS_TRITON_MAX_GPUS 16
#define TS_TRITON_MAX_ACCELERATORS 8
#define TS_TRITON_MAX_ACCEL_PARAMS 8
#define TS_TRITON_MAX_PARAMETERS 32
#define TS_TRITON_MAX_VERSIONS 64
#define TS_TRITON_MAX_PREFERRED 16

/* Numbers as in inference.ModelInstanceGroup.Kind. */
typedef enum ts_triton_kind {
    TS_TRITON_KIND_AUTO = 0,
    TS_TRITON_KIND_GPU = 1,
    TS_TRITON_KIND_CPU = 2,
    TS_TRITON_KIND_MODEL = 3,
} ts_triton_kind;

/* Numbers as in inference.DataType (TYPE_STRING is what Triton's HTTP API calls BYTES). */
#define TS_TRITON_TYPE_STRING 13

typedef enum ts_version_policy_kind {
    TS_VERSION_POLICY_LATEST = 0,
    TS_VERSION_POLICY_ALL,
    TS_VERSION_POLICY_SPECIFIC,
} ts_version_policy_kind;

typedef struct ts_triton_tensor {
    char name[64];
    int data_type; /* inference.DataType number */
    int64_t dims[TS_TRITON_MAX_DIMS];
    int num_dims;
    int optional;
    int line, col;
} ts_triton_tensor;

typedef struct ts_triton_instance_group {
    char name[64];
    ts_triton_kind kind;
    int count; /* as written; 0 when absent (Triton's default is 1) */
    int gpus[TS_TRITON_MAX_GPUS];
    int num_gpus;
    int line, col;
} ts_triton_instance_group;

typedef struct ts_triton_param {
    char key[64];
    char value[256];
    int line, col; /* of the value */
} ts_triton_param;

typedef struct ts_triton_accel_param {
    char key[48];
    char value[128];
    int line, col; /* of the value */
} ts_triton_accel_param;

typedef struct ts_triton_accelerator {
    char name[32];
    ts_triton_accel_param params[TS_TRITON_MAX_ACCEL_PARAMS];
    int num_params;
    int line, col; /* of the name's value */
} ts_triton_accelerator;

typedef struct ts_triton_config {
    char source[512];

    char name[128];
    int has_name;
    int name_line, name_col;
    char platform[64];
    char backend[64];
    char default_model_filename[256];
    int max_batch_size;

    ts_triton_tensor inputs[TS_TRITON_MAX_TENSORS];
    int num_inputs;
    ts_triton_tensor outputs[TS_TRITON_MAX_TENSORS];
    int num_outputs;

    ts_triton_instance_group groups[TS_TRITON_MAX_GROUPS];
    int num_groups;

    int has_dynamic_batching;
    int preferred_batch_sizes[TS_TRITON_MAX_PREFERRED];
    int num_preferred_batch_sizes;
    uint64_t max_queue_delay_us;

    int decoupled;

    ts_version_policy_kind version_policy;
    int latest_num_versions;                  /* TS_VERSION_POLICY_LATEST; 1 when no policy is given */
    int64_t versions[TS_TRITON_MAX_VERSIONS]; /* TS_VERSION_POLICY_SPECIFIC */
    int num_versions;

    ts_triton_accelerator cpu_accelerators[TS_TRITON_MAX_ACCELERATORS];
    int num_cpu_accelerators;
    ts_triton_accelerator gpu_accelerators[TS_TRITON_MAX_ACCELERATORS];
    int num_gpu_accelerators;

    ts_triton_param parameters[TS_TRITON_MAX_PARAMETERS]; /* every model-level parameter, last value per key */
    int num_parameters;

    /* The parameters tessera honours (see the top of this file); "unset" values as noted. */
    int has_quantization;
    ts_quant_scheme quantization;
    int cpu_fallback;        /* -1 unset */
    int64_t context_length;  /* 0 unset */
    uint64_t kv_cache_bytes; /* 0 unset */
    int threads;             /* 0 unset */
    int max_sequences;       /* 0 unset */
} ts_triton_config;

/* Parses and checks config.pbtxt text. `source` names the file in errors ("REPO/m/config.pbtxt"). */
int ts_triton_config_parse(const char *text, size_t len, const char *source, ts_triton_config *out, ts_error *err);
int ts_triton_config_load(const char *path, ts_triton_config *out, ts_error *err);
/* The defaults of a model folder without config.pbtxt: latest version, no accelerators. */
void ts_triton_config_defaults(ts_triton_config *out, const char *source);

/* The instance kind tessera runs the model with: KIND_GPU if any group asks for the GPU, KIND_CPU if
 * every group asks for the CPU, otherwise KIND_AUTO (also when no group is given). */
ts_triton_kind ts_triton_config_kind(const ts_triton_config *c);
const char *ts_triton_kind_name(ts_triton_kind k);
/* The value of a model-level parameter, or NULL. */
const ts_triton_param *ts_triton_config_param(const ts_triton_config *c, const char *key);

/* "8GiB", "512 MiB", "2G", "1.5GB", "1073741824" -> bytes. K/M/G/T and KiB/MiB/GiB/TiB are powers of
 * 1024; KB/MB/GB/TB are powers of 1000. */
int ts_parse_byte_size(const char *s, uint64_t *out);
/* "true"/"false", "1"/"0", "yes"/"no", "on"/"off" (any case) -> 1/0; -1 when none of these. */
int ts_parse_switch(const char *s);

#endif
