/* Loading served models: resolution of the configured accelerators, the CPU backend, weights, tokenizer
 * and chat template, the engine with a KV cache sized from the memory plan, and the model's
 * configuration in Triton's JSON form for /v2/models/{m}/config. */
#include "cli/serve_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda_loader.h"
#include "base/log.h"
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/model_repo.h"
#include "model/model.h"
#include "runtime/devices_resolve.h"
#include "runtime/engine.h"
#include "runtime/kv_cache.h"
#include "runtime/planner.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#define DEFAULT_MAX_RUNNING 32
#define DEFAULT_MAX_QUEUE 256
#define DEFAULT_MAX_CONTEXT 4096
#define KV_BLOCK_TOKENS 16
#define KV_DEFAULT_CAP (1ull << 30)

typedef struct served {
    ts_backend *be;
    ts_backend *cpu_fallback; /* beside a GPU backend: runs what the GPU cannot */
    ts_model *model;
    ts_engine *engine;
    ts_tokenizer *tok;
    ts_chat_template *chat;
} served;

static void served_destroy(void *p) {
    served *s = p;
    if (!s) return;
    ts_engine_destroy(s->engine);
    ts_model_free(s->model);
    if (s->be) s->be->ops->destroy(s->be);
    if (s->cpu_fallback) s->cpu_fallback->ops->destroy(s->cpu_fallback);
    ts_tokenizer_free(s->tok);
    ts_chat_template_free(s->chat);
    free(s);
}

/* The server's template variables mapped onto the chat module's options: messages, generation
 * prompt, thinking switch and tools by name, everything else as extra variables. */
static int render_chat(void *owner, const json_t *vars, char **text, size_t *len, ts_error *err) {
    served *s = owner;
    ts_chat_options opt;
    ts_chat_options_init(&opt);
    const json_t *agp = json_object_get(vars, "add_generation_prompt");
    opt.add_generation_prompt = agp ? json_is_true(agp) : 1;
    const json_t *thinking = json_object_get(vars, "enable_thinking");
    if (json_is_boolean(thinking)) opt.enable_thinking = json_is_true(thinking);
    opt.tools = json_object_get(vars, "tools");
    json_t *extra = json_deep_copy(vars);
    if (!extra) return ts_fail(err, "out of memory");
    static const char *const named[] = {"messages", "add_generation_prompt", "enable_thinking", "tools"};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) json_object_del(extra, named[i]);
    opt.extra = extra;
    int rc = ts_chat_render(s->chat, json_object_get(vars, "messages"), &opt, text, len, err);
    json_decref(extra);
    return rc;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int load_tokenizer(const char *path, ts_tokenizer **out, ts_error *err) {
    if (is_dir(path)) return ts_tokenizer_load_dir(path, out, err);
    ts_gguf g;
    if (ts_gguf_open(path, &g, err) != 0) return -1;
    ts_vocab_spec spec;
    ts_vocab_spec_init(&spec);
    int rc = ts_gguf_read_vocab(&g, &spec, err);
    if (rc == 0) rc = ts_tokenizer_from_spec(&spec, out, err);
    ts_vocab_spec_free(&spec);
    ts_gguf_free(&g);
    return rc;
}

/* Tokens that end an assistant turn in common chat templates, when the vocabulary has them. */
static void find_end_of_turn(const ts_tokenizer *tok, ts_model_instance *inst) {
    static const char *const names[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && inst->num_end_of_turn < TS_MODEL_MAX_END_TOKENS; i++) {
        int32_t id = ts_tokenizer_token_id(tok, names[i]);
        if (id >= 0 && ts_tokenizer_is_special(tok, id)) inst->end_of_turn[inst->num_end_of_turn++] = id;
    }
}

static json_t *tensor_config(const char *name, const char *type, int64_t dims, int optional) {
    json_t *t = json_object();
    json_object_set_new(t, "name", json_string(name));
    json_object_set_new(t, "data_type", json_string(type));
    json_t *d = json_array();
    json_array_append_new(d, json_integer(dims));
    json_object_set_new(t, "dims", d);
    if (optional) json_object_set_new(t, "optional", json_true());
    return t;
}

static const char *config_type_name(int data_type) {
    static const char *const names[] = {"TYPE_INVALID", "TYPE_BOOL",   "TYPE_UINT8",  "TYPE_UINT16", "TYPE_UINT32",
                                        "TYPE_UINT64",  "TYPE_INT8",   "TYPE_INT16",  "TYPE_INT32",  "TYPE_INT64",
                                        "TYPE_FP16",    "TYPE_FP32",   "TYPE_FP64",   "TYPE_STRING", "TYPE_BF16"};
    return data_type >= 0 && data_type < (int)(sizeof names / sizeof names[0]) ? names[data_type] : "TYPE_INVALID";
}

static json_t *tensor_list(const ts_triton_tensor *t, int n) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t[i].name));
        json_object_set_new(o, "data_type", json_string(config_type_name(t[i].data_type)));
        json_t *d = json_array();
        for (int k = 0; k < t[i].num_dims; k++) json_array_append_new(d, json_integer(t[i].dims[k]));
        json_object_set_new(o, "dims", d);
        if (t[i].optional) json_object_set_new(o, "optional", json_true());
        json_array_append_new(arr, o);
    }
    return arr;
}

static void set_param(json_t *params, const char *key, const char *value) {
    json_t *v = json_object();
    json_object_set_new(v, "string_value", json_string(value));
    json_object_set_new(params, key, v);
}

/* The configuration as Triton reports it, with what tessera resolved added as parameters. */
static json_t *config_json(const char *name, const ts_triton_config *tc, const ts_engine_config *ec,
                           const char *device, const char *quant) {
    json_t *c = json_object();
    json_object_set_new(c, "name", json_string(name));
    json_object_set_new(c, "platform", json_string(tc && tc->platform[0] ? tc->platform : "tessera"));
    json_object_set_new(c, "backend", json_string(tc && tc->backend[0] ? tc->backend : "tessera"));
    json_object_set_new(c, "max_batch_size", json_integer(tc ? tc->max_batch_size : 0));
    if (tc && tc->num_inputs > 0) {
        json_object_set_new(c, "input", tensor_list(tc->inputs, tc->num_inputs));
    } else {
        json_t *in = json_array();
        json_array_append_new(in, tensor_config("text_input", "TYPE_STRING", -1, 0));
        json_array_append_new(in, tensor_config("max_tokens", "TYPE_INT32", 1, 1));
        json_array_append_new(in, tensor_config("temperature", "TYPE_FP32", 1, 1));
        json_array_append_new(in, tensor_config("top_k", "TYPE_INT32", 1, 1));
        json_array_append_new(in, tensor_config("top_p", "TYPE_FP32", 1, 1));
        json_array_append_new(in, tensor_config("random_seed", "TYPE_UINT64", 1, 1));
        json_array_append_new(in, tensor_config("stop_words", "TYPE_STRING", -1, 1));
        json_array_append_new(in, tensor_config("stream", "TYPE_BOOL", 1, 1));
        json_array_append_new(in, tensor_config("exclude_input_in_output", "TYPE_BOOL", 1, 1));
        json_object_set_new(c, "input", in);
    }
    if (tc && tc->num_outputs > 0) {
        json_object_set_new(c, "output", tensor_list(tc->outputs, tc->num_outputs));
    } else {
        json_t *out = json_array();
        json_array_append_new(out, tensor_config("text_output", "TYPE_STRING", -1, 0));
        json_object_set_new(c, "output", out);
    }
    json_t *groups = json_array();
    int ng = tc ? tc->num_groups : 0;
    for (int i = 0; i < (ng ? ng : 1); i++) {
        json_t *g = json_object();
        json_object_set_new(g, "name", json_string(ng && tc->groups[i].name[0] ? tc->groups[i].name : name));
        json_object_set_new(g, "kind", json_string(ng ? (tc->groups[i].kind == TS_TRITON_KIND_GPU ? "KIND_GPU"
                                                          : tc->groups[i].kind == TS_TRITON_KIND_MODEL ? "KIND_MODEL"
                                                                                                       : "KIND_CPU")
                                                      : "KIND_CPU"));
        json_object_set_new(g, "count", json_integer(ng && tc->groups[i].count ? tc->groups[i].count : 1));
        json_array_append_new(groups, g);
    }
    json_object_set_new(c, "instance_group", groups);
    json_t *policy = json_object();
    json_object_set_new(policy, "decoupled", json_boolean(tc ? tc->decoupled : 1));
    json_object_set_new(c, "model_transaction_policy", policy);
    if (tc && tc->has_dynamic_batching) json_object_set_new(c, "dynamic_batching", json_object());
    json_t *params = json_object();
    for (int i = 0; tc && i < tc->num_parameters; i++) set_param(params, tc->parameters[i].key, tc->parameters[i].value);
    char buf[64];
    snprintf(buf, sizeof buf, "%d", ec->context_length);
    set_param(params, "TESSERA_CONTEXT_LENGTH", buf);
    snprintf(buf, sizeof buf, "%d", ec->max_running);
    set_param(params, "TESSERA_MAX_SEQUENCES", buf);
    snprintf(buf, sizeof buf, "%d", ec->kv_blocks);
    set_param(params, "TESSERA_KV_CACHE_BLOCKS", buf);
    set_param(params, "TESSERA_DEVICE", device);
    set_param(params, "TESSERA_QUANTIZATION", quant);
    json_object_set_new(c, "parameters", params);
    return c;
}

/* KV cache bytes when none are configured: what the plan says max_running full-context sequences
 * need, but no more than a quarter of the memory still usable after loading and KV_DEFAULT_CAP. */
static uint64_t default_kv_bytes(const ts_model *m, const ts_engine_config *ec, const ts_quant_scheme *q,
                                 const ts_gpu_info *gpu, int kv_elem_bytes) {
    ts_plan_request pr = {0};
    pr.config = &m->cfg;
    pr.quant = *q;
    pr.context_length = ec->context_length;
    pr.batch = ec->max_running;
    pr.kv_elem_bytes = kv_elem_bytes; /* float32 on the CPU and in exact GPU mode, half otherwise */
    pr.device = gpu ? TS_DEVICE_CUDA : TS_DEVICE_CPU;
    ts_memory_info mem;
    ts_devices_detect_memory(NULL, &mem);
    if (gpu) mem.usable_bytes = gpu->free_bytes;
    pr.device_bytes = mem.usable_bytes;
    pr.reserve_bytes = -1;
    ts_plan plan;
    ts_error err = {{0}};
    uint64_t want = (uint64_t)ec->context_length * (uint64_t)ec->max_running * 8192u;
    if (ts_plan_compute(&pr, &plan, &err) == 0) want = plan.kv_bytes;
    uint64_t cap = mem.usable_bytes / 4;
    if (cap > KV_DEFAULT_CAP) cap = KV_DEFAULT_CAP;
    return want < cap ? want : cap;
}

/* Loads one model version. tc may be NULL (a model given by path). */
static int load_one(ts_serve_models *sm, const char *name, const char *version, const char *path,
                    const ts_triton_config *tc, ts_model_instance *inst, ts_error *err) {
    const ts_serve_settings *st = &sm->settings;
    memset(inst, 0, sizeof *inst);
    ts_resolve_request rq = {0};
    ts_triton_accelerator cuda_request;
    if (tc) {
        ts_resolve_request_from_config(tc, &rq);
    } else if (st->device && strcmp(st->device, "cpu") != 0) {
        /* a model given by path asks for CUDA the way a configuration would, so the fallback is logged alike */
        memset(&cuda_request, 0, sizeof cuda_request);
        snprintf(cuda_request.name, sizeof cuda_request.name, "cuda");
        if (st->precision) {
            snprintf(cuda_request.params[0].key, sizeof cuda_request.params[0].key, "precision");
            snprintf(cuda_request.params[0].value, sizeof cuda_request.params[0].value, "%s", st->precision);
            cuda_request.num_params = 1;
        }
        rq.gpu = &cuda_request;
        rq.num_gpu = 1;
        rq.kind = !strcmp(st->device, "cuda") ? TS_TRITON_KIND_GPU : TS_TRITON_KIND_AUTO;
    }
    rq.default_threads = st->threads;
    ts_resolution res;
    if (ts_devices_resolve(sm->dev, &rq, &res, err) != 0) return -1;
    ts_resolution_log(&res);
    if (res.device != TS_DEVICE_CPU && res.device != TS_DEVICE_CUDA) {
        ts_log_warn("%s: no %s backend in this build; running on the CPU", name, ts_device_kind_name(res.device));
        res.device = TS_DEVICE_CPU;
    }
    ts_model_options mo;
    ts_model_options_init(&mo);
    if (st->quant) {
        if (ts_quant_scheme_parse(st->quant, &mo.quant, err) != 0) return -1;
    } else if (tc && tc->has_quantization) {
        mo.quant = tc->quantization;
    } else if (res.has_quantization) {
        mo.quant = res.quantization;
    }
    served *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(err, "out of memory");
    ts_cpu_options co = {.threads = st->threads > 0 ? st->threads : res.threads};
    ts_backend *cpu = ts_cpu_backend_create(&co, err);
    if (!cpu) goto fail;
    const ts_gpu_info *gpu = NULL;
    int kv_elem = 4;
    if (res.device == TS_DEVICE_CUDA) {
        ts_cuda_options o;
        memset(&o, 0, sizeof o);
        o.device = res.gpu_index;
        o.precision = res.precision;
        o.unified_memory = res.unified_memory;
        o.use_graphs = 1;
        /* the per-operation CPU fallback is on unless the configuration switches it off
         * (TESSERA_CPU_FALLBACK, or the seed's PYTORCH_ENABLE_MPS_FALLBACK) */
        o.cpu_fallback = tc && tc->cpu_fallback == 0 ? NULL : cpu;
        ts_error cerr = {{0}};
        s->be = ts_cuda_backend_create(&o, &cerr);
        if (s->be) {
            s->cpu_fallback = cpu;
            for (int i = 0; i < sm->dev->num_gpus; i++)
                if (sm->dev->gpus[i].index == res.gpu_index) gpu = &sm->dev->gpus[i];
            kv_elem = res.precision == TS_PRECISION_FP32 ? 4 : 2;
        } else {
            ts_log_warn("%s: cuda: %s; falling back to the CPU", name, cerr.message);
        }
    }
    if (!s->be) s->be = cpu;
    if (st->gpu_layers >= 0 && s->be != cpu) {
        mo.gpu_layers = st->gpu_layers;
        mo.host_be = cpu;
    }
    if (ts_model_load(path, s->be, &mo, &s->model, err) != 0) goto fail;
    ts_error terr = {{0}};
    if (load_tokenizer(path, &s->tok, &terr) != 0) {
        ts_log_warn("%s: no tokenizer (%s); only token-id prompts will work", name, terr.message);
        s->tok = NULL;
    }
    if (s->tok) {
        if (ts_chat_template_from_tokenizer(s->tok, &s->chat, &terr) != 0) {
            ts_log_warn("%s: the chat template cannot be used: %s", name, terr.message);
            s->chat = NULL;
        }
        find_end_of_turn(s->tok, inst);
    }
    ts_engine_config ec;
    ts_engine_config_default(&ec, s->model);
    int max_pos = s->model->cfg.max_position_embeddings;
    ec.context_length = st->context > 0 ? st->context
                        : tc && tc->context_length > 0 ? (int)tc->context_length
                        : max_pos < DEFAULT_MAX_CONTEXT ? max_pos : DEFAULT_MAX_CONTEXT;
    if (ec.context_length > max_pos) {
        ts_log_warn("%s: context %d is longer than the model's %d positions; using %d", name, ec.context_length, max_pos,
                    max_pos);
        ec.context_length = max_pos;
    }
    ec.max_running = st->max_running > 0 ? st->max_running
                     : tc && tc->max_sequences > 0 ? tc->max_sequences : DEFAULT_MAX_RUNNING;
    ec.max_waiting = st->max_queue > 0 ? st->max_queue : DEFAULT_MAX_QUEUE;
    if (ec.step_tokens < ec.max_running) ec.step_tokens = ec.max_running;
    if (ec.step_tokens > s->model->opt.max_step_tokens) {
        ts_fail(err, "%d concurrent sequences need a step of at least as many tokens; this model allows %d",
                ec.max_running, s->model->opt.max_step_tokens);
        goto fail;
    }
    ec.block_tokens = KV_BLOCK_TOKENS;
    ts_kv_layout one = ts_model_kv_layout(s->model, ec.block_tokens, 1);
    size_t per_block = ts_kv_cache_bytes_per_block(&one);
    uint64_t kv_bytes = st->kv_cache_mb > 0 ? (uint64_t)st->kv_cache_mb << 20
                        : tc && tc->kv_cache_bytes ? tc->kv_cache_bytes
                                                   : default_kv_bytes(s->model, &ec, &mo.quant, gpu, kv_elem);
    uint64_t blocks = per_block ? kv_bytes / per_block : 0;
    if (blocks < 1) blocks = 1;
    if (blocks > 1u << 24) blocks = 1u << 24;
    ec.kv_blocks = (int)blocks;
    if (ts_engine_create(s->model, &ec, &s->engine, err) != 0) goto fail;
    snprintf(inst->version, sizeof inst->version, "%s", version);
    inst->engine = s->engine;
    inst->tokenizer = s->tok;
    snprintf(inst->platform, sizeof inst->platform, "tessera");
    char device[160], quant[32];
    ts_resolution_summary(&res, sm->dev, device, sizeof device);
    if (mo.quant.kind == TS_QUANT_NONE) snprintf(quant, sizeof quant, "none");
    else ts_quant_scheme_name(&mo.quant, quant, sizeof quant);
    snprintf(inst->description, sizeof inst->description, "%s on %s; context %d, %d sequences, KV cache %d blocks (%.0f MiB)",
             path, device, ec.context_length, ec.max_running, ec.kv_blocks, (double)blocks * (double)per_block / 1048576.0);
    inst->config = config_json(name, tc, &ec, device, quant);
    inst->render_chat = s->chat ? render_chat : NULL;
    inst->owner = s;
    inst->destroy = served_destroy;
    return 0;
fail:
    served_destroy(s);
    return -1;
}

/* ---- the source: one model by path ---- */

static int single_list(void *ctx, ts_model_listing **out, int *n, ts_error *err) {
    ts_serve_models *sm = ctx;
    *out = calloc(1, sizeof **out);
    if (!*out) return ts_fail(err, "out of memory");
    snprintf((*out)->name, sizeof (*out)->name, "%s", sm->model_name);
    snprintf((*out)->versions[0], sizeof (*out)->versions[0], "1");
    (*out)->num_versions = 1;
    *n = 1;
    return 0;
}

static int single_load(void *ctx, const char *name, ts_model_instance *out, int cap, int *n, ts_error *err) {
    ts_serve_models *sm = ctx;
    *n = 0;
    if (strcmp(name, sm->model_name) != 0) return ts_fail(err, "no model named '%s' (serving '%s')", name, sm->model_name);
    if (cap < 1) return ts_fail(err, "no room for the model");
    if (load_one(sm, name, "1", sm->model_path, NULL, &out[0], err) != 0) return -1;
    *n = 1;
    return 0;
}

/* ---- the source: a Triton model repository (rescanned on every call, as Triton does) ---- */

static int repo_list(void *ctx, ts_model_listing **out, int *n, ts_error *err) {
    ts_serve_models *sm = ctx;
    ts_repo repo;
    *out = NULL;
    *n = 0;
    if (ts_repo_scan(sm->repo_root, &repo, err) != 0) return -1;
    *out = calloc((size_t)(repo.num_models ? repo.num_models : 1), sizeof **out);
    if (!*out) {
        ts_repo_free(&repo);
        return ts_fail(err, "out of memory");
    }
    for (int i = 0; i < repo.num_models; i++) {
        const ts_repo_model *m = &repo.models[i];
        ts_model_listing *l = &(*out)[i];
        snprintf(l->name, sizeof l->name, "%s", m->name);
        if (!m->ok) snprintf(l->error, sizeof l->error, "%s", m->error);
        for (int v = 0; v < m->num_versions && l->num_versions < 8; v++)
            snprintf(l->versions[l->num_versions++], sizeof l->versions[0], "%lld", (long long)m->versions[v].version);
    }
    *n = repo.num_models;
    ts_repo_free(&repo);
    return 0;
}

static int repo_load(void *ctx, const char *name, ts_model_instance *out, int cap, int *n, ts_error *err) {
    ts_serve_models *sm = ctx;
    *n = 0;
    ts_repo repo;
    if (ts_repo_scan(sm->repo_root, &repo, err) != 0) return -1;
    const ts_repo_model *m = ts_repo_find(&repo, name);
    int rc = 0;
    if (!m) {
        rc = ts_fail(err, "no model named '%s' in %s", name, sm->repo_root);
    } else if (!m->ok) {
        rc = ts_fail(err, "%s", m->error);
    } else if (m->num_versions == 0) {
        rc = ts_fail(err, "model '%s' has no version folder that its version policy selects", name);
    } else {
        for (int v = 0; v < m->num_versions && *n < cap; v++) {
            char version[32];
            snprintf(version, sizeof version, "%lld", (long long)m->versions[v].version);
            if (load_one(sm, name, version, m->versions[v].model_path, m->config, &out[*n], err) != 0) {
                ts_error_prefix(err, "%s version %s: ", name, version);
                for (int k = 0; k < *n; k++) {
                    out[k].destroy(out[k].owner);
                    json_decref(out[k].config);
                }
                *n = 0;
                rc = -1;
                break;
            }
            (*n)++;
        }
    }
    ts_repo_free(&repo);
    return rc;
}

int ts_serve_models_init(ts_serve_models *sm, const ts_serve_settings *st, const char *model_path,
                         const char *model_name, const char *repo_root, ts_error *err) {
    memset(sm, 0, sizeof *sm);
    sm->settings = *st;
    sm->model_path = model_path;
    sm->repo_root = repo_root;
    if (model_path) {
        if (model_name && model_name[0]) {
            snprintf(sm->model_name, sizeof sm->model_name, "%s", model_name);
        } else {
            /* the directory (or file) name, without a trailing slash or a .gguf suffix */
            char buf[4096];
            snprintf(buf, sizeof buf, "%s", model_path);
            size_t len = strlen(buf);
            while (len > 1 && buf[len - 1] == '/') buf[--len] = 0;
            const char *base = strrchr(buf, '/');
            base = base ? base + 1 : buf;
            snprintf(sm->model_name, sizeof sm->model_name, "%.127s", base);
            size_t bl = strlen(sm->model_name);
            if (bl > 5 && !strcmp(sm->model_name + bl - 5, ".gguf")) sm->model_name[bl - 5] = 0;
        }
    }
    sm->dev = calloc(1, sizeof *sm->dev);
    if (!sm->dev) return ts_fail(err, "out of memory");
    return ts_devices_detect(sm->dev, err);
}

void ts_serve_models_free(ts_serve_models *sm) {
    free(sm->dev);
    sm->dev = NULL;
}

ts_model_source ts_serve_models_source(ts_serve_models *sm) {
    ts_model_source src = {.ctx = sm};
    if (sm->repo_root) {
        src.list = repo_list;
        src.load = repo_load;
    } else {
        src.list = single_list;
        src.load = single_load;
    }
    return src;
}

int ts_serve_models_names(ts_serve_models *sm, char (**names)[128], int *n, ts_error *err) {
    ts_model_source src = ts_serve_models_source(sm);
    ts_model_listing *list = NULL;
    *names = NULL;
    *n = 0;
    if (src.list(src.ctx, &list, n, err) != 0) return -1;
    *names = calloc((size_t)(*n ? *n : 1), sizeof **names);
    if (!*names) {
        free(list);
        return ts_fail(err, "out of memory");
    }
    for (int i = 0; i < *n; i++) snprintf((*names)[i], 128, "%s", list[i].name);
    free(list);
    return 0;
}
