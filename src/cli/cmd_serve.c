/* tessera serve: the HTTP server (KServe v2 / Triton and OpenAI APIs, metrics) over one model, a Triton
 * model repository, or the embedded tiny-code model when neither is given. SIGTERM and SIGINT stop it
 * gracefully: new requests get 503, in-flight ones finish within --grace-seconds, the rest are
 * cancelled with an error, and the process exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/serve_models.h"
#include "server/server.h"

static const ts_opt_spec g_specs[] = {
    {"model", 1, "model directory (Hugging Face) or .gguf file (default: the embedded tiny-code model)"},
    {"model-repository", 1, "a Triton model repository: REPO/<model>/config.pbtxt and version folders"},
    {"model-name", 1, "name to serve --model under (default: its directory name)"},
    {"host", 1, "address to listen on (default 127.0.0.1: this machine only)"},
    {"port", 1, "HTTP port for the KServe v2 and OpenAI APIs (default 8000; 0 picks a free one)"},
    {"metrics-port", 1, "port of the Prometheus /metrics endpoint (default 8002; 0 picks a free one)"},
    {"api-key", 1, "require 'Authorization: Bearer KEY' on every endpoint but health (also $TESSERA_API_KEY)"},
    {"threads", 1, "CPU threads per model (default: the cores available)"},
    {"quant", 1, "quantize on load: int4, int8, fp16, bf16, none, or a GGUF type; :NAME=TYPE,... after it gives some tensors their own (int4:token_embd=q8_0)"},
    {"context", 1, "tokens per sequence, prompt and output (default: min(model positions, 4096))"},
    {"max-running", 1, "sequences decoded together (default 32)"},
    {"max-queue", 1, "requests waiting for a slot before new ones get 503 (default 256)"},
    {"device", 1, "for --model: cpu (default), cuda, or auto (CUDA when a GPU is usable, else the CPU)"},
    {"precision", 1, "GPU arithmetic for --device cuda/auto: fp32, bf16 or fp16 (default bf16)"},
    {"gpu-layers", 1, "on a GPU: only the last N layers and the output head there, the rest on the CPU"},
    {"kv-cache-mb", 1, "KV cache size per model in MiB (default: from the memory plan, at most 1 GiB)"},
    {"max-body-bytes", 1, "largest request body accepted (default 8388608)"},
    {"grace-seconds", 1, "on SIGTERM/SIGINT, how long in-flight requests may still run (default 10)"},
};

/* The embedded model: $TESSERA_DEFAULT_MODEL, else models/tiny-code in the source tree. */
static const char *default_model(char *buf, size_t cap) {
    const char *env = getenv("TESSERA_DEFAULT_MODEL");
    if (env && env[0]) return env;
    snprintf(buf, cap, "%s/models/tiny-code", TESSERA_SOURCE_DIR);
    return buf;
}

int ts_cmd_serve(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera serve [--model PATH | --model-repository REPO] [--host H] [--port N] [--api-key KEY]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    long long port, mport, threads, context, running, queue, kv_mb, max_body, gpu_layers;
    double grace;
    if (ts_args_int(&a, "port", 8000, 0, 65535, &port) || ts_args_int(&a, "metrics-port", 8002, 0, 65535, &mport) ||
        ts_args_int(&a, "threads", 0, 0, 4096, &threads) || ts_args_int(&a, "context", 0, 0, 1 << 24, &context) ||
        ts_args_int(&a, "max-running", 0, 0, 4096, &running) || ts_args_int(&a, "max-queue", 0, 0, 1 << 20, &queue) ||
        ts_args_int(&a, "kv-cache-mb", 0, 0, 1 << 24, &kv_mb) || ts_args_int(&a, "gpu-layers", -1, 0, 1 << 20, &gpu_layers) ||
        ts_args_int(&a, "max-body-bytes", 8 << 20, 1024, 1ll << 32, &max_body) ||
        ts_args_double(&a, "grace-seconds", 10, 0, 86400, &grace))
        return 2;
    if (context == 1) {
        fprintf(stderr, "tessera: --context must be at least 2\n");
        return 2;
    }
    const char *model = ts_args_get(&a, "model"), *repo = ts_args_get(&a, "model-repository");
    if (model && repo) {
        fprintf(stderr, "tessera: give --model or --model-repository, not both\n");
        return 2;
    }
    if (repo && ts_args_has(&a, "model-name")) {
        fprintf(stderr, "tessera: --model-name names a --model; repository models are named by their folders\n");
        return 2;
    }
    char defbuf[4096];
    if (!model && !repo) model = default_model(defbuf, sizeof defbuf);
    const char *api_key = ts_args_get(&a, "api-key");
    if (!api_key) api_key = getenv("TESSERA_API_KEY");
    if (api_key && !api_key[0]) api_key = NULL;

    /* SIGTERM and SIGINT are taken by sigwait below; every thread created from here on inherits the mask */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    ts_serve_settings st = {.context = (int)context, .max_running = (int)running, .max_queue = (int)queue,
                            .threads = (int)threads, .kv_cache_mb = kv_mb, .quant = ts_args_get(&a, "quant"),
                            .device = ts_args_get(&a, "device"), .precision = ts_args_get(&a, "precision"),
                            .gpu_layers = (int)gpu_layers};
    if (st.device && strcmp(st.device, "cpu") && strcmp(st.device, "cuda") && strcmp(st.device, "auto")) {
        fprintf(stderr, "tessera: --device must be cpu, cuda or auto\n");
        return 2;
    }
    ts_serve_models sm;
    ts_error err = {{0}};
    if (ts_serve_models_init(&sm, &st, model, ts_args_get(&a, "model-name"), repo, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        ts_serve_models_free(&sm);
        return 1;
    }
    ts_model_source src = ts_serve_models_source(&sm);
    ts_registry *reg = ts_registry_create(&src);
    if (!reg) {
        fprintf(stderr, "tessera: out of memory\n");
        ts_serve_models_free(&sm);
        return 1;
    }
    char (*names)[128] = NULL;
    int n_names = 0, loaded = 0;
    if (ts_serve_models_names(&sm, &names, &n_names, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        ts_registry_destroy(reg);
        ts_serve_models_free(&sm);
        return 1;
    }
    for (int i = 0; i < n_names; i++) {
        ts_error le = {{0}};
        if (ts_registry_load(reg, names[i], &le) == 0) loaded++;
        else ts_log_error("model %s failed to load: %s", names[i], le.message);
    }
    free(names);
    if (model && loaded == 0) {
        fprintf(stderr, "tessera: cannot serve %s\n", model);
        ts_registry_destroy(reg);
        ts_serve_models_free(&sm);
        return 1;
    }
    if (repo && loaded == 0) ts_log_warn("no model of %s loaded; load one with POST /v2/repository/models/NAME/load", repo);

    ts_server_options so;
    ts_server_options_init(&so);
    if (ts_args_get(&a, "host")) so.host = ts_args_get(&a, "host");
    so.port = (int)port;
    so.metrics_port = (int)mport;
    so.api_key = api_key;
    so.max_body_bytes = (size_t)max_body;
    ts_server *srv = NULL;
    if (ts_server_start(&so, reg, &srv, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        ts_registry_destroy(reg);
        ts_serve_models_free(&sm);
        return 1;
    }
    char host[300];
    if (strchr(so.host, ':')) snprintf(host, sizeof host, "[%s]", so.host);
    else snprintf(host, sizeof host, "%s", so.host);
    ts_log_info("serving on http://%s:%d (KServe v2 at /v2, OpenAI at /v1), metrics on http://%s:%d/metrics%s", host,
                ts_server_port(srv), host, ts_server_metrics_port(srv), api_key ? "; API key required" : "");

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    ts_log_info("%s received: stopping (grace period %.0f s)", sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
    int cancelled = ts_server_shutdown(srv, grace);
    ts_server_free(srv);
    ts_registry_destroy(reg);
    ts_serve_models_free(&sm);
    ts_log_info("stopped%s", cancelled ? " (requests still running at the end of the grace period were cancelled)" : "");
    return 0;
}
