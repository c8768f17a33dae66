/* tessera run: generate from a prompt with the KV cache, printing tokens as they come. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_model.h"
#include "cli/commands.h"
#include "runtime/sampler.h"
#include "runtime/sequence.h"

static const ts_opt_spec g_specs[] = {
    TS_CLI_MODEL_OPTIONS,
    {"prompt-ids", 1, "prompt as token ids, comma or space separated"},
    {"max-tokens", 1, "tokens to generate (default 32)"},
    {"temperature", 1, "sampling temperature; 0 is greedy (default 0)"},
    {"top-k", 1, "keep the k most likely tokens (default off)"},
    {"top-p", 1, "nucleus sampling threshold (default 1)"},
    {"min-p", 1, "drop tokens below this fraction of the best one's probability (default 0)"},
    {"repetition-penalty", 1, "Hugging Face repetition penalty (default 1)"},
    {"seed", 1, "random seed for sampling"},
    {"output", 1, "ids or text (default ids)"},
    {"ignore-eos", 0, "keep generating past end-of-sequence tokens"},
};

static int is_eos(const ts_model *m, int token) {
    for (int i = 0; i < m->cfg.num_eos; i++)
        if (m->cfg.eos_token_ids[i] == token) return 1;
    return 0;
}

int ts_cmd_run(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera run --model PATH --prompt-ids \"1,2,3\" [--max-tokens N] [--temperature T] [--output ids]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    long long max_tokens = 32, top_k = 0, seed = 0;
    double temperature = 0, top_p = 1, min_p = 0, rep = 1;
    if (ts_args_int(&a, "max-tokens", 32, 0, 1 << 24, &max_tokens) || ts_args_int(&a, "top-k", 0, 0, 1 << 30, &top_k) ||
        ts_args_int(&a, "seed", 0, 0, 0x7fffffffffffffffll, &seed) ||
        ts_args_double(&a, "temperature", 0, 0, 100, &temperature) || ts_args_double(&a, "top-p", 1, 0, 1, &top_p) ||
        ts_args_double(&a, "min-p", 0, 0, 1, &min_p) || ts_args_double(&a, "repetition-penalty", 1, 0.01, 100, &rep))
        return 2;
    const char *output = ts_args_get(&a, "output");
    if (output && strcmp(output, "ids") != 0) {
        fprintf(stderr, "tessera: --output %s needs the tokenizer; only 'ids' is available\n", output);
        return 2;
    }
    const char *ids_s = ts_args_get(&a, "prompt-ids");
    if (!ids_s) {
        ts_args_usage(g_specs, nspecs, usage);
        return 2;
    }
    int *ids = NULL, n = 0;
    if (ts_parse_id_list(ids_s, &ids, &n) != 0 || n == 0) {
        fprintf(stderr, "tessera: --prompt-ids must be a non-empty list of non-negative integers\n");
        return 2;
    }
    ts_cli_model cm;
    int rc = ts_cli_model_open(&a, 0, &cm);
    if (rc != 0) {
        free(ids);
        return rc;
    }
    ts_sampling_params sp;
    ts_sampling_params_init(&sp);
    sp.temperature = (float)temperature;
    sp.top_k = (int)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repetition_penalty = (float)rep;
    sp.has_seed = ts_args_has(&a, "seed");
    sp.seed = (uint64_t)seed;
    ts_sampler *sampler = ts_sampler_create(&sp, ids, n);
    float *logits = malloc((size_t)cm.model->cfg.vocab_size * sizeof(float));
    ts_kv_cache cache;
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    ts_error err = {{0}};
    rc = 1;
    if (!sampler || !logits) {
        fprintf(stderr, "tessera: out of memory\n");
    } else if (ts_kv_cache_init_for(&cache, cm.model, n + (int)max_tokens, 1, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
    } else {
        rc = ts_seq_forward(cm.model, &cache, &seq, ids, n, 0, logits, &err) == 0 ? 0 : 1;
        int ignore_eos = ts_args_has(&a, "ignore-eos");
        for (long long i = 0; rc == 0 && i < max_tokens; i++) {
            int32_t tok = ts_sampler_sample(sampler, logits, cm.model->cfg.vocab_size, NULL);
            ts_sampler_accept(sampler, tok);
            printf(i ? " %d" : "%d", tok);
            fflush(stdout);
            if (!ignore_eos && is_eos(cm.model, tok)) break;
            if (i + 1 < max_tokens && ts_seq_forward(cm.model, &cache, &seq, &tok, 1, 0, logits, &err) != 0) rc = 1;
        }
        printf("\n");
        if (rc != 0) fprintf(stderr, "tessera: %s\n", err.message);
        ts_kv_seq_release(&cache, &seq);
        ts_kv_cache_destroy(&cache);
    }
    ts_sampler_free(sampler);
    free(logits);
    free(ids);
    ts_cli_model_close(&cm);
    return rc;
}
