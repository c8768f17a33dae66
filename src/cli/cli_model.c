#include "cli/cli_model.h"

#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda_loader.h"
#include "base/log.h"
#include "tools/synth.h"

static int parse_precision(const char *s, ts_precision *out) {
    if (!s || !strcmp(s, "bf16")) *out = TS_PRECISION_BF16;
    else if (!strcmp(s, "fp32")) *out = TS_PRECISION_FP32;
    else if (!strcmp(s, "fp16")) *out = TS_PRECISION_FP16;
    else return -1;
    return 0;
}

/* The backend named by --device; "auto" takes CUDA when it loads and says why when it does not. */
static int open_backend(const ts_args *a, int threads, ts_cli_model *out) {
    ts_error err = {{0}};
    const char *device = ts_args_get(a, "device");
    if (!device) device = "cpu";
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0 && strcmp(device, "auto") != 0) {
        fprintf(stderr, "tessera: --device must be cpu, cuda or auto\n");
        return 2;
    }
    ts_cpu_options co = {.threads = threads};
    out->cpu = ts_cpu_backend_create(&co, &err);
    if (!out->cpu) {
        fprintf(stderr, "tessera: %s\n", err.message);
        return 1;
    }
    if (!strcmp(device, "cpu")) {
        out->be = out->cpu;
        out->cpu = NULL;
        return 0;
    }
    ts_cuda_options o;
    memset(&o, 0, sizeof o);
    if (parse_precision(ts_args_get(a, "precision"), &o.precision) != 0) {
        fprintf(stderr, "tessera: --precision must be fp32, bf16 or fp16\n");
        return 2;
    }
    o.unified_memory = ts_args_has(a, "unified-memory");
    o.use_graphs = 1;
    o.dense_cache = ts_args_has(a, "gpu-dense-cache");
    o.cpu_fallback = out->cpu;
    out->be = ts_cuda_backend_create(&o, &err);
    if (out->be) return 0;
    if (!strcmp(device, "cuda")) {
        fprintf(stderr, "tessera: --device cuda: %s\n", err.message);
        return 1;
    }
    ts_log_info("cuda: %s; using the CPU", err.message);
    out->be = out->cpu;
    out->cpu = NULL;
    return 0;
}

int ts_cli_model_open(const ts_args *a, int max_step_tokens, ts_cli_model *out) {
    memset(out, 0, sizeof *out);
    const char *path = ts_args_get(a, "model"), *synth = ts_args_get(a, "synth");
    if (!path && !synth) {
        fprintf(stderr, "tessera: --model PATH is required\n");
        return 2;
    }
    long long threads = 0;
    if (ts_args_int(a, "threads", 0, 0, 4096, &threads) != 0) return 2;
    ts_model_options mo;
    ts_model_options_init(&mo);
    if (max_step_tokens > 0) mo.max_step_tokens = max_step_tokens;
    mo.threads = (int)threads;
    if (ts_args_double(a, "rope-freq-base", 0, 0, 1e12, &mo.rope_theta) != 0) return 2;
    ts_error err = {{0}};
    const char *quant = ts_args_get(a, "quant");
    if (quant && ts_quant_scheme_parse(quant, &mo.quant, &err) != 0) {
        fprintf(stderr, "tessera: --quant: %s\n", err.message);
        return 2;
    }
    ts_dtype synth_type = TS_DTYPE_Q4_0;
    const char *st = ts_args_get(a, "synth-type");
    if (st && (ts_dtype_from_name(st, &synth_type) != 0 || synth_type == TS_DTYPE_Q8_K)) {
        fprintf(stderr, "tessera: --synth-type: unknown type '%s'\n", st);
        return 2;
    }
    long long gpu_layers = -1;
    if (ts_args_int(a, "gpu-layers", -1, 0, 1 << 20, &gpu_layers) != 0) return 2;
    int rc = open_backend(a, (int)threads, out);
    if (rc != 0) {
        ts_cli_model_close(out);
        return rc;
    }
    if (gpu_layers >= 0 && !out->cpu)
        ts_log_info("--gpu-layers: the model runs on the CPU; every layer stays there");
    if (gpu_layers >= 0 && out->cpu) {
        mo.gpu_layers = (int)gpu_layers;
        mo.host_be = out->cpu;
    }
    if (synth) {
        ts_model_config cfg;
        ts_tensor_table table;
        ts_tensor_table_init(&table);
        rc = ts_model_config_load(synth, &cfg, &err) == 0 &&
                     ts_synth_table(&cfg, synth_type, 42, threads > 0 ? (int)threads : 8, &table, &err) == 0 &&
                     ts_model_load_table(synth, &cfg, &table, out->be, &mo, &out->model, &err) == 0
                 ? 0
                 : 1;
        ts_tensor_table_free(&table);
    } else {
        rc = ts_model_load(path, out->be, &mo, &out->model, &err) == 0 ? 0 : 1;
    }
    if (rc != 0) {
        fprintf(stderr, "tessera: cannot load model: %s\n", err.message);
        ts_cli_model_close(out);
        return 1;
    }
    return 0;
}

void ts_cli_model_close(ts_cli_model *cm) {
    ts_model_free(cm->model);
    if (cm->be) cm->be->ops->destroy(cm->be);
    if (cm->cpu) cm->cpu->ops->destroy(cm->cpu);
    memset(cm, 0, sizeof *cm);
}
