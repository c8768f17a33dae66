#include "cli/cli_model.h"

#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_backend.h"

int ts_cli_model_open(const ts_args *a, int max_step_tokens, ts_cli_model *out) {
    memset(out, 0, sizeof *out);
    const char *path = ts_args_get(a, "model");
    if (!path) {
        fprintf(stderr, "tessera: --model PATH is required\n");
        return 2;
    }
    long long threads = 0;
    if (ts_args_int(a, "threads", 0, 0, 4096, &threads) != 0) return 2;
    ts_model_options mo;
    ts_model_options_init(&mo);
    if (max_step_tokens > 0) mo.max_step_tokens = max_step_tokens;
    ts_error err = {{0}};
    const char *quant = ts_args_get(a, "quant");
    if (quant && ts_quant_scheme_parse(quant, &mo.quant, &err) != 0) {
        fprintf(stderr, "tessera: --quant: %s\n", err.message);
        return 2;
    }
    ts_cpu_options co = {.threads = (int)threads};
    out->be = ts_cpu_backend_create(&co, &err);
    if (!out->be) {
        fprintf(stderr, "tessera: %s\n", err.message);
        return 1;
    }
    if (ts_model_load(path, out->be, &mo, &out->model, &err) != 0) {
        fprintf(stderr, "tessera: cannot load model: %s\n", err.message);
        out->be->ops->destroy(out->be);
        out->be = NULL;
        return 1;
    }
    return 0;
}

void ts_cli_model_close(ts_cli_model *cm) {
    ts_model_free(cm->model);
    if (cm->be) cm->be->ops->destroy(cm->be);
    memset(cm, 0, sizeof *cm);
}
