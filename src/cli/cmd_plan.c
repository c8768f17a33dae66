/* tessera plan: the memory plan of a model (weights after quantization, KV cache, activations) against
 * what the chosen device has, without reading any weight. Exit status 0 when the plan was computed
 * (3 with --check when it does not fit), 1 on errors, 2 on usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/files.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/model_config.h"
#include "format/model_repo.h"
#include "runtime/devices.h"
#include "runtime/planner.h"

static const ts_opt_spec g_specs[] = {
    {"model", 1, "a Hugging Face directory, a .gguf file, or a Triton model folder (with config.pbtxt)"},
    {"config", 1, "a config.json to plan from"},
    {"quant", 1, "int4, int8, fp16, bf16, none or an exact type (q4_0, q8_0, q4_k ...); default: none"},
    {"ctx", 1, "tokens per sequence (default: the model's max_position_embeddings)"},
    {"batch", 1, "concurrent sequences (default 1)"},
    {"kv-dtype", 1, "KV cache element type: f32 (default, what the paged KV cache stores), f16 or bf16"},
    {"step-tokens", 1, "tokens per forward step used to size activations (default min(512, ctx))"},
    {"device", 1, "auto, cpu or cuda (default auto: the first GPU if there is one)"},
    {"available", 1, "bytes available on the device instead of the detected figure (e.g. 24GiB)"},
    {"host-available", 1, "CPU memory for a GPU + CPU split instead of the detected figure"},
    {"gpu-layers", 1, "with --device cuda: plan only the last N layers and the output head on the GPU, the rest on the CPU"},
    {"json", 0, "print the plan as JSON"},
    {"check", 0, "exit with status 3 when the model does not fit"},
};
#define NUM_SPECS ((int)(sizeof g_specs / sizeof g_specs[0]))
static const char g_usage[] = "tessera plan --model PATH | --config CONFIG.json [--quant Q] [--ctx N] [--batch N] "
                              "[--device auto|cpu|cuda] [--json]";

/* A GGUF file's weights are already typed; without --quant the plan uses the type holding most bytes. */
static int gguf_default_quant(const ts_gguf *g, ts_quant_scheme *q) {
    uint64_t bytes_by_type[64] = {0};
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2 && g->tensors[i].ggml_type >= 0 && g->tensors[i].ggml_type < 64)
            bytes_by_type[g->tensors[i].ggml_type] += g->tensors[i].nbytes;
    int best = -1;
    for (int t = 0; t < 64; t++)
        if (bytes_by_type[t] && (best < 0 || bytes_by_type[t] > bytes_by_type[best])) best = t;
    ts_dtype d;
    if (best < 0 || ts_dtype_from_ggml(best, &d) != 0) return -1;
    memset(q, 0, sizeof *q);
    if (d == TS_DTYPE_BF16) q->kind = TS_QUANT_BF16;
    else if (d == TS_DTYPE_F16) q->kind = TS_QUANT_FP16;
    else q->kind = TS_QUANT_EXACT, q->exact = d;
    return 0;
}

typedef struct {
    ts_model_config config;
    int has_quant;
    ts_quant_scheme quant;
    int64_t ctx;
    int batch;
    char described[TS_REPO_PATH_MAX + 64];
} plan_source;

static int load_gguf(const char *path, plan_source *src, ts_error *err) {
    ts_gguf g;
    if (ts_gguf_open(path, &g, err) != 0) return -1;
    int rc = ts_gguf_model_config(&g, &src->config, err);
    if (rc == 0 && gguf_default_quant(&g, &src->quant) == 0) src->has_quant = 1;
    ts_gguf_free(&g);
    return rc;
}

static int load_source(const char *model, const char *config, plan_source *src, ts_error *err) {
    memset(src, 0, sizeof *src);
    if (config) {
        snprintf(src->described, sizeof src->described, "%s", config);
        return ts_model_config_load(config, &src->config, err);
    }
    char path[TS_REPO_PATH_MAX];
    snprintf(src->described, sizeof src->described, "%s", model);
    if (!ts_is_directory(model)) {
        size_t n = strlen(model);
        if (n > 5 && !strcasecmp(model + n - 5, ".gguf")) return load_gguf(model, src, err);
        return ts_fail(err, "%s: expected a directory or a .gguf file", model);
    }
    if (ts_path_join(path, sizeof path, model, "config.pbtxt") == 0 && ts_file_exists(path)) {
        /* A Triton model folder: its latest version, with the parameters it sets. */
        char dir[TS_REPO_PATH_MAX];
        snprintf(dir, sizeof dir, "%s", model);
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/') dir[--n] = '\0';
        const char *slash = strrchr(dir, '/');
        ts_repo_model *m = calloc(1, sizeof *m);
        if (!m) return ts_fail(err, "out of memory");
        int rc = -1;
        if (ts_repo_load_model(dir, slash ? slash + 1 : dir, m) != 0) {
            ts_fail(err, "%s", m->error);
        } else {
            const ts_repo_version *v = ts_repo_latest(m);
            snprintf(src->described, sizeof src->described, "%s (version %lld)", v->model_path, (long long)v->version);
            if (v->format == TS_REPO_FORMAT_GGUF) {
                rc = load_gguf(v->model_path, src, err);
            } else {
                char cfg[TS_REPO_PATH_MAX];
                rc = ts_path_join(cfg, sizeof cfg, v->model_path, "config.json") == 0
                         ? ts_model_config_load(cfg, &src->config, err)
                         : ts_fail(err, "%s: path too long", v->model_path);
            }
            if (m->config->has_quantization) src->quant = m->config->quantization, src->has_quant = 1;
            src->ctx = m->config->context_length;
            src->batch = m->config->max_sequences ? m->config->max_sequences : m->config->max_batch_size;
        }
        ts_repo_model_free(m);
        free(m);
        return rc;
    }
    if (ts_path_join(path, sizeof path, model, "config.json") != 0) return ts_fail(err, "%s: path too long", model);
    if (!ts_file_exists(path))
        return ts_fail(
            err, "%s holds neither config.json (a Hugging Face directory) nor config.pbtxt (a Triton model folder)",
            model);
    return ts_model_config_load(path, &src->config, err);
}

static int parse_size_option(const ts_args *a, const char *name, uint64_t *out) {
    const char *v = ts_args_get(a, name);
    if (!v) return 0;
    if (ts_parse_byte_size(v, out) != 0 || *out == 0) {
        fprintf(stderr, "tessera plan: --%s expects a size such as 24GiB, 512MiB or a byte count, got '%s'\n", name, v);
        return -1;
    }
    return 1;
}

int ts_cmd_plan(int argc, char **argv) {
    ts_args a;
    if (ts_args_parse(&a, g_specs, NUM_SPECS, argc, argv, g_usage) != 0) return 2;
    const char *model = ts_args_get(&a, "model"), *config = ts_args_get(&a, "config");
    if ((model != NULL) == (config != NULL) || a.num_positional) {
        fprintf(stderr, "tessera plan: give exactly one of --model or --config\n");
        ts_args_usage(g_specs, NUM_SPECS, g_usage);
        return 2;
    }
    ts_error err = {{0}};
    plan_source *src = calloc(1, sizeof *src);
    ts_plan *plan = calloc(1, sizeof *plan);
    int status = 1;
    if (!src || !plan) {
        fprintf(stderr, "tessera plan: out of memory\n");
        goto done;
    }
    if (load_source(model, config, src, &err) != 0) {
        fprintf(stderr, "tessera plan: %s\n", err.message);
        goto done;
    }

    ts_plan_request req = {.config = &src->config, .reserve_bytes = -1};
    const char *quant = ts_args_get(&a, "quant");
    if (quant) {
        if (ts_quant_scheme_parse(quant, &req.quant, &err) != 0) {
            fprintf(stderr, "tessera plan: --quant: %s\n", err.message);
            status = 2;
            goto done;
        }
    } else if (src->has_quant) {
        req.quant = src->quant;
    }
    long long ctx, batch, step, gpu_layers;
    if (ts_args_int(&a, "ctx", src->ctx, 0, 1ll << 26, &ctx) != 0 ||
        ts_args_int(&a, "batch", src->batch, 0, 1 << 20, &batch) != 0 ||
        ts_args_int(&a, "step-tokens", 0, 0, 1 << 20, &step) != 0 ||
        ts_args_int(&a, "gpu-layers", -1, 0, 1 << 20, &gpu_layers) != 0) {
        status = 2;
        goto done;
    }
    req.context_length = ctx;
    req.batch = (int)batch;
    req.step_tokens = (int)step;
    req.gpu_layers = gpu_layers > 0 ? (int)gpu_layers : 0;
    const char *kv = ts_args_get(&a, "kv-dtype");
    if (!kv) {
        req.kv_elem_bytes = 0; /* the planner's default: what the KV cache stores */
    } else if (!strcasecmp(kv, "f16") || !strcasecmp(kv, "fp16") || !strcasecmp(kv, "bf16")) {
        req.kv_elem_bytes = 2;
    } else if (!strcasecmp(kv, "f32") || !strcasecmp(kv, "fp32")) {
        req.kv_elem_bytes = 4;
    } else {
        fprintf(stderr, "tessera plan: --kv-dtype expects f16, bf16 or f32, got '%s'\n", kv);
        status = 2;
        goto done;
    }

    ts_device_info *dev = calloc(1, sizeof *dev);
    if (!dev) goto done;
    ts_devices_detect(dev, &err);
    const char *device = ts_args_get(&a, "device");
    if (!device || !strcmp(device, "auto")) {
        req.device = dev->num_gpus > 0 ? TS_DEVICE_CUDA : TS_DEVICE_CPU;
    } else if (!strcmp(device, "cpu")) {
        req.device = TS_DEVICE_CPU;
    } else if (!strcmp(device, "cuda")) {
        req.device = TS_DEVICE_CUDA;
    } else {
        fprintf(stderr, "tessera plan: --device expects auto, cpu or cuda, got '%s'\n", device);
        free(dev);
        status = 2;
        goto done;
    }
    if (req.device == TS_DEVICE_CUDA) {
        req.device_bytes = dev->num_gpus > 0 ? dev->gpus[0].free_bytes : 0;
        req.host_bytes = dev->memory.usable_bytes;
    } else {
        req.device_bytes = dev->memory.usable_bytes;
    }
    int got = parse_size_option(&a, "available", &req.device_bytes);
    int got_host = parse_size_option(&a, "host-available", &req.host_bytes);
    if (got < 0 || got_host < 0) {
        free(dev);
        status = 2;
        goto done;
    }
    if (req.device == TS_DEVICE_CUDA && dev->num_gpus == 0 && got == 0) {
        fprintf(stderr, "tessera plan: --device cuda: %s; give --available to plan for a GPU elsewhere\n",
                dev->gpu_status);
        free(dev);
        goto done;
    }
    free(dev);
    if (gpu_layers == 0 && req.device == TS_DEVICE_CUDA) {
        /* as the model does: --gpu-layers 0 keeps every layer and the head on the CPU */
        fprintf(stderr, "tessera plan: --gpu-layers 0: every layer on the CPU; planning for the CPU\n");
        req.device = TS_DEVICE_CPU;
        req.device_bytes = req.host_bytes;
    } else if (gpu_layers > 0 && req.device != TS_DEVICE_CUDA) {
        fprintf(stderr, "tessera plan: --gpu-layers applies to --device cuda; ignored\n");
    }

    if (ts_plan_compute(&req, plan, &err) != 0) {
        fprintf(stderr, "tessera plan: %s\n", err.message);
        goto done;
    }
    if (ts_args_has(&a, "json")) {
        json_t *j = ts_plan_to_json(plan);
        json_object_set_new(j, "source", json_string(src->described));
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) printf("%s\n", text);
        free(text);
        json_decref(j);
    } else {
        char *text = ts_plan_format_text(plan);
        printf("source        %s\n%s", src->described, text ? text : "");
        free(text);
        if (!plan->fits) {
            char refusal[2048];
            printf("\n%s\n", ts_plan_refusal(plan, refusal, sizeof refusal));
        }
    }
    status = ts_args_has(&a, "check") && !plan->fits ? 3 : 0;
done:
    free(src);
    free(plan);
    return status;
}
