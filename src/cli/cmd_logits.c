/* tessera logits: the logits of a token sequence, as little-endian float32 (last position, or every
 * position, position-major, with --all-positions). */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_model.h"
#include "cli/commands.h"
#include "runtime/sequence.h"

static const ts_opt_spec g_specs[] = {
    TS_CLI_MODEL_OPTIONS,
    {"ids", 1, "token ids, comma or space separated"},
    {"out", 1, "output file for the raw float32 logits"},
    {"all-positions", 0, "write the logits of every position, not only the last"},
};

int ts_cmd_logits(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera logits --model PATH --ids \"1,2,3\" --out FILE [--all-positions]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    const char *ids_s = ts_args_get(&a, "ids"), *out_path = ts_args_get(&a, "out");
    if (!ids_s || !out_path) {
        ts_args_usage(g_specs, nspecs, usage);
        return 2;
    }
    int *ids = NULL, n = 0;
    if (ts_parse_id_list(ids_s, &ids, &n) != 0 || n == 0) {
        fprintf(stderr, "tessera: --ids must be a non-empty list of non-negative integers\n");
        return 2;
    }
    ts_cli_model cm;
    int rc = ts_cli_model_open(&a, 0, &cm);
    if (rc != 0) {
        free(ids);
        return rc;
    }
    int all = ts_args_has(&a, "all-positions");
    size_t vocab = (size_t)cm.model->cfg.vocab_size;
    size_t rows = all ? (size_t)n : 1;
    float *logits = malloc(rows * vocab * sizeof(float));
    ts_kv_cache cache;
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    ts_error err = {{0}};
    rc = 1;
    if (!logits) {
        fprintf(stderr, "tessera: out of memory for %zu logits\n", rows * vocab);
    } else if (ts_kv_cache_init_for(&cache, cm.model, n, 1, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
    } else {
        if (ts_seq_forward(cm.model, &cache, &seq, ids, n, all, logits, &err) != 0) {
            fprintf(stderr, "tessera: %s\n", err.message);
        } else {
            FILE *f = fopen(out_path, "wb");
            if (!f || fwrite(logits, sizeof(float), rows * vocab, f) != rows * vocab) {
                fprintf(stderr, "tessera: cannot write %s\n", out_path);
            } else {
                rc = 0;
            }
            if (f && fclose(f) != 0) rc = 1;
        }
        ts_kv_seq_release(&cache, &seq);
        ts_kv_cache_destroy(&cache);
    }
    free(logits);
    free(ids);
    ts_cli_model_close(&cm);
    return rc;
}
