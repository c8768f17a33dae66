/* The model source of `tessera serve`: turns a model name into a running model (accelerator resolution,
 * backend, weights, tokenizer, chat template, KV cache sized from the memory plan, engine), either for
 * one model given by path or for every model of a Triton model repository. This is where the server
 * meets model loading; src/server only sees the ts_model_source interface. */
#ifndef TS_CLI_SERVE_MODELS_H
#define TS_CLI_SERVE_MODELS_H

#include "runtime/devices.h"
#include "server/registry.h"

typedef struct ts_serve_settings {
    int context;          /* tokens per sequence; 0: the configuration's, else min(max positions, 4096) */
    int max_running;      /* sequences decoded together; 0: the configuration's, else 32 */
    int max_queue;        /* waiting requests before 503; 0: 256 */
    int threads;          /* CPU threads; 0: the resolution's */
    long long kv_cache_mb; /* 0: from the memory plan */
    const char *quant;    /* NULL: the configuration's MODEL_QUANTIZATION, else the file's types */
    const char *device;   /* models given by path: "cpu" (default), "cuda" or "auto" (CUDA when present) */
    const char *precision; /* with device cuda/auto: fp32, bf16 or fp16; NULL: the resolution's default */
    int gpu_layers;       /* on a GPU: only the last N layers there, the rest on the CPU; < 0: all on the GPU */
} ts_serve_settings;

typedef struct ts_serve_models {
    ts_serve_settings settings;
    const char *model_path; /* one model by path ... */
    char model_name[128];
    const char *repo_root;  /* ... or a repository */
    ts_device_info *dev;
} ts_serve_models;

/* One of model_path or repo_root must be set. */
int ts_serve_models_init(ts_serve_models *sm, const ts_serve_settings *st, const char *model_path,
                         const char *model_name, const char *repo_root, ts_error *err);
void ts_serve_models_free(ts_serve_models *sm);
ts_model_source ts_serve_models_source(ts_serve_models *sm);
/* Names the source can load (for loading everything at start). */
int ts_serve_models_names(ts_serve_models *sm, char (**names)[128], int *n, ts_error *err);

#endif
