/* tessera perplexity: perplexity of a model on a text file, non-overlapping windows of --ctx tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "cli/cli_model.h"
#include "cli/commands.h"
#include "tokenizer/model_tokenizer.h"
#include "tools/perplexity.h"

static const ts_opt_spec g_specs[] = {
    TS_CLI_MODEL_OPTIONS,
    {"file", 1, "text to score"},
    {"ctx", 1, "window length in tokens (default 512)"},
    {"json", 0, "print one JSON object"},
    {"llama-cpp", 0, "score like llama.cpp's perplexity tool: whole windows only, second half of each"},
};

int ts_cmd_perplexity(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera perplexity --model PATH --file TEXT [--ctx 512] [--quant Q]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    long long ctx;
    if (ts_args_int(&a, "ctx", 512, 2, 1 << 20, &ctx)) return 2;
    const char *file = ts_args_get(&a, "file");
    if (!file) {
        ts_args_usage(g_specs, nspecs, usage);
        return 2;
    }
    ts_error err = {{0}};
    char *text = NULL;
    size_t len = 0;
    if (ts_read_file(file, 1u << 30, &text, &len, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        return 1;
    }
    ts_cli_model cm;
    int rc = ts_cli_model_open(&a, (int)ctx, &cm);
    if (rc != 0) {
        free(text);
        return rc;
    }
    ts_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    ts_perplexity_result r;
    rc = 1;
    if (ts_tokenizer_for_model(cm.model->path, cm.model->vocab, &tok, &err) != 0) {
        fprintf(stderr, "tessera: perplexity needs the model's tokenizer: %s\n", err.message);
    } else if (ts_tokenizer_encode(tok, text, len, 0, &ids, &n, &err) != 0) {
        fprintf(stderr, "tessera: %s: %s\n", file, err.message);
    } else if (ts_perplexity(cm.model, ids, (int64_t)n, (int)ctx, ts_args_has(&a, "llama-cpp") ? (int)ctx / 2 : 0, &r, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
    } else {
        double bits = (double)cm.model->weight_bytes * 8.0;
        if (ts_args_has(&a, "json"))
            printf("{\"perplexity\": %.6f, \"tokens_scored\": %lld, \"tokens\": %zu, \"windows\": %d, \"ctx\": %lld, "
                   "\"weight_bytes\": %zu, \"seconds\": %.3f}\n",
                   r.perplexity, (long long)r.tokens_scored, n, r.windows, ctx, cm.model->weight_bytes, r.seconds);
        else
            printf("perplexity %.4f over %lld scored tokens (%zu tokens, %d windows of %lld), %.2f GiB of weights "
                   "(%.0f bits), %.1f s\n",
                   r.perplexity, (long long)r.tokens_scored, n, r.windows, ctx,
                   (double)cm.model->weight_bytes / (1024.0 * 1024 * 1024), bits, r.seconds);
        rc = 0;
    }
    free(ids);
    ts_tokenizer_free(tok);
    free(text);
    ts_cli_model_close(&cm);
    return rc;
}
