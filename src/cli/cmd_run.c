/* tessera run: generate from a prompt (token ids or text) with the KV cache, streaming tokens as they
 * come; --chat turns it into an interactive conversation rendered with the model's chat template. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "base/log.h"
#include "cli/cli_model.h"
#include "cli/commands.h"
#include "runtime/sampler.h"
#include "runtime/sequence.h"
#include "tokenizer/chat.h"
#include "tokenizer/model_tokenizer.h"

static const ts_opt_spec g_specs[] = {
    TS_CLI_MODEL_OPTIONS,
    {"prompt", 1, "prompt text (special tokens such as <|im_start|> are recognised)"},
    {"prompt-file", 1, "read the prompt text from a file"},
    {"prompt-ids", 1, "prompt as token ids, comma or space separated"},
    {"chat", 0, "interactive chat through the model's chat template (reads turns from standard input)"},
    {"system", 1, "system message for --chat"},
    {"no-think", 0, "with --chat on Qwen3 templates: answer without a thinking section"},
    {"max-tokens", 1, "tokens to generate (default 128)"},
    {"temperature", 1, "sampling temperature; 0 is greedy (default 0)"},
    {"top-k", 1, "keep the k most likely tokens (default off)"},
    {"top-p", 1, "nucleus sampling threshold (default 1)"},
    {"min-p", 1, "drop tokens below this fraction of the best one's probability (default 0)"},
    {"repetition-penalty", 1, "Hugging Face repetition penalty (default 1)"},
    {"seed", 1, "random seed for sampling"},
    {"output", 1, "ids or text (default: text when the model has a tokenizer, ids otherwise)"},
    {"ignore-eos", 0, "keep generating past end-of-sequence tokens"},
};

typedef struct run_ctx {
    ts_cli_model cm;
    ts_tokenizer *tok;
    ts_kv_cache cache;
    ts_sampling_params sp;
    int max_tokens, ignore_eos, text_output;
    int context;
} run_ctx;

static int is_eos(const ts_model *m, const ts_tokenizer *tok, int token) {
    for (int i = 0; i < m->cfg.num_eos; i++)
        if (m->cfg.eos_token_ids[i] == token) return 1;
    return tok && ts_tokenizer_eos_id(tok) == token;
}

/* Prefills ids, then samples up to max_tokens, printing each token (as text or ids). The generated ids
 * are returned in *out (heap) when out is not NULL. */
static int generate(run_ctx *r, const int32_t *ids, int n, int32_t **out, int *n_out) {
    ts_model *m = r->cm.model;
    ts_error err = {{0}};
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    ts_sampler *sampler = ts_sampler_create(&r->sp, ids, n);
    int32_t *gen = malloc((size_t)(r->max_tokens > 0 ? r->max_tokens : 1) * sizeof(int32_t));
    ts_detok_stream ds;
    ts_detok_stream_init(&ds, 1);
    int rc = 1, produced = 0;
    if (!logits || !sampler || !gen) {
        fprintf(stderr, "tessera: out of memory\n");
        goto done;
    }
    if (n + r->max_tokens > r->context) {
        fprintf(stderr, "tessera: the prompt (%d tokens) plus %d new tokens exceed the context of %d tokens\n", n,
                r->max_tokens, r->context);
        goto done;
    }
    if (ts_seq_forward(m, &r->cache, &seq, ids, n, 0, logits, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        goto done;
    }
    rc = 0;
    for (int i = 0; i < r->max_tokens; i++) {
        int32_t tok = ts_sampler_sample(sampler, logits, m->cfg.vocab_size, NULL);
        ts_sampler_accept(sampler, tok);
        int end = !r->ignore_eos && is_eos(m, r->tok, tok);
        if (!end) gen[produced++] = tok;
        if (r->text_output) {
            const char *text = NULL;
            size_t len = 0;
            if (!end && ts_detok_stream_push(&ds, r->tok, tok, &text, &len, &err) == 0 && len) fwrite(text, 1, len, stdout);
        } else {
            printf(i ? " %d" : "%d", tok);
        }
        fflush(stdout);
        if (end) break;
        if (i + 1 < r->max_tokens && ts_seq_forward(m, &r->cache, &seq, &tok, 1, 0, logits, &err) != 0) {
            fprintf(stderr, "\ntessera: %s\n", err.message);
            rc = 1;
            break;
        }
    }
    if (r->text_output) {
        const char *text = NULL;
        size_t len = 0;
        if (ts_detok_stream_finish(&ds, &text, &len, &err) == 0 && len) fwrite(text, 1, len, stdout);
    }
    printf("\n");
    fflush(stdout);
done:
    ts_detok_stream_free(&ds);
    ts_kv_seq_release(&r->cache, &seq);
    ts_sampler_free(sampler);
    free(logits);
    if (out) {
        *out = gen;
        *n_out = produced;
    } else {
        free(gen);
    }
    return rc;
}

static int encode_text(run_ctx *r, const char *text, int32_t **ids, int *n) {
    ts_error err = {{0}};
    int32_t *enc = NULL;
    size_t count = 0;
    if (ts_tokenizer_encode(r->tok, text, strlen(text), 1, &enc, &count, &err) != 0) {
        fprintf(stderr, "tessera: cannot tokenize the prompt: %s\n", err.message);
        return -1;
    }
    int bos = ts_tokenizer_add_bos(r->tok) ? ts_tokenizer_bos_id(r->tok) : -1;
    *ids = malloc((count + 2) * sizeof(int32_t));
    *n = 0;
    if (bos >= 0) (*ids)[(*n)++] = bos;
    memcpy(*ids + *n, enc, count * sizeof(int32_t));
    *n += (int)count;
    free(enc);
    return 0;
}

/* Reads user turns from standard input; each turn renders the whole conversation and generates. */
static int chat_loop(run_ctx *r, const ts_args *a) {
    ts_error err = {{0}};
    ts_chat_template *tpl = NULL;
    if (ts_chat_template_from_tokenizer(r->tok, &tpl, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        return 1;
    }
    json_t *messages = json_array();
    const char *system = ts_args_get(a, "system");
    if (system) json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "system", "content", system));
    char line[8192];
    int rc = 0;
    fprintf(stderr, "chat with %s; end with an empty line or end of input\n", r->cm.model->path);
    for (;;) {
        fprintf(stderr, "> ");
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) break;
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", line));
        ts_chat_options opt;
        ts_chat_options_init(&opt);
        opt.add_generation_prompt = 1;
        if (ts_args_has(a, "no-think")) opt.enable_thinking = 0;
        char *prompt = NULL;
        size_t plen = 0;
        if (ts_chat_render(tpl, messages, &opt, &prompt, &plen, &err) != 0) {
            fprintf(stderr, "tessera: chat template: %s\n", err.message);
            rc = 1;
            break;
        }
        ts_log_debug("chat prompt: %s", prompt);
        int32_t *ids = NULL, *gen = NULL;
        int n = 0, n_gen = 0;
        if (encode_text(r, prompt, &ids, &n) != 0 || generate(r, ids, n, &gen, &n_gen) != 0) rc = 1;
        free(prompt);
        free(ids);
        char *reply = NULL;
        size_t rlen = 0;
        if (rc == 0 && ts_tokenizer_decode(r->tok, gen, (size_t)n_gen, 1, &reply, &rlen, &err) == 0)
            json_array_append_new(messages, json_pack("{s:s, s:s%}", "role", "assistant", "content", reply, rlen));
        free(reply);
        free(gen);
        if (rc) break;
    }
    json_decref(messages);
    ts_chat_template_free(tpl);
    return rc;
}

int ts_cmd_run(int argc, char **argv) {
    ts_args a;
    int nspecs = (int)(sizeof g_specs / sizeof g_specs[0]);
    const char *usage = "tessera run --model PATH (--prompt TEXT | --prompt-ids \"1,2,3\" | --chat) [--max-tokens N] [--temperature T] [--output ids|text]";
    if (ts_args_parse(&a, g_specs, nspecs, argc, argv, usage) != 0) return 2;
    long long max_tokens, top_k, seed;
    double temperature, top_p, min_p, rep;
    if (ts_args_int(&a, "max-tokens", 128, 0, 1 << 24, &max_tokens) || ts_args_int(&a, "top-k", 0, 0, 1 << 30, &top_k) ||
        ts_args_int(&a, "seed", 0, 0, 0x7fffffffffffffffll, &seed) ||
        ts_args_double(&a, "temperature", 0, 0, 100, &temperature) || ts_args_double(&a, "top-p", 1, 0, 1, &top_p) ||
        ts_args_double(&a, "min-p", 0, 0, 1, &min_p) || ts_args_double(&a, "repetition-penalty", 1, 0.01, 100, &rep))
        return 2;
    const char *output = ts_args_get(&a, "output");
    if (output && strcmp(output, "ids") != 0 && strcmp(output, "text") != 0) {
        fprintf(stderr, "tessera: --output must be ids or text\n");
        return 2;
    }
    const char *ids_s = ts_args_get(&a, "prompt-ids"), *text = ts_args_get(&a, "prompt"),
               *file = ts_args_get(&a, "prompt-file");
    int chat = ts_args_has(&a, "chat");
    if ((ids_s != NULL) + (text != NULL) + (file != NULL) + chat != 1) {
        fprintf(stderr, "tessera: give exactly one of --prompt, --prompt-file, --prompt-ids or --chat\n");
        ts_args_usage(g_specs, nspecs, usage);
        return 2;
    }
    int *ids = NULL, n = 0;
    if (ids_s && (ts_parse_id_list(ids_s, &ids, &n) != 0 || n == 0)) {
        fprintf(stderr, "tessera: --prompt-ids must be a non-empty list of non-negative integers\n");
        return 2;
    }
    run_ctx r;
    memset(&r, 0, sizeof r);
    int rc = ts_cli_model_open(&a, 0, &r.cm);
    if (rc != 0) {
        free(ids);
        return rc;
    }
    ts_error err = {{0}};
    if (ts_tokenizer_for_model(r.cm.model->path, r.cm.model->vocab, &r.tok, &err) != 0 && !ids_s) {
        fprintf(stderr, "tessera: a text prompt needs the model's tokenizer: %s\n", err.message);
        rc = 1;
        goto done;
    }
    if (!r.tok && (text || file || chat)) {
        fprintf(stderr, "tessera: %s has no tokenizer; use --prompt-ids\n", r.cm.model->path);
        rc = 1;
        goto done;
    }
    r.text_output = output ? !strcmp(output, "text") : r.tok != NULL && !ids_s;
    if (r.text_output && !r.tok) {
        fprintf(stderr, "tessera: --output text needs the model's tokenizer\n");
        rc = 2;
        goto done;
    }
    ts_sampling_params_init(&r.sp);
    r.sp.temperature = (float)temperature;
    r.sp.top_k = (int)top_k;
    r.sp.top_p = (float)top_p;
    r.sp.min_p = (float)min_p;
    r.sp.repetition_penalty = (float)rep;
    r.sp.has_seed = ts_args_has(&a, "seed");
    r.sp.seed = (uint64_t)seed;
    r.max_tokens = (int)max_tokens;
    r.ignore_eos = ts_args_has(&a, "ignore-eos");
    r.context = r.cm.model->cfg.max_position_embeddings < 8192 ? r.cm.model->cfg.max_position_embeddings : 8192;
    if (ts_kv_cache_init_for(&r.cache, r.cm.model, r.context, 1, &err) != 0) {
        fprintf(stderr, "tessera: %s\n", err.message);
        rc = 1;
        goto done;
    }
    if (chat) {
        rc = chat_loop(&r, &a);
    } else {
        char *buf = NULL;
        if (file && ts_read_file(file, 64u << 20, &buf, NULL, &err) != 0) {
            fprintf(stderr, "tessera: %s\n", err.message);
            rc = 1;
        } else if (!ids && encode_text(&r, file ? buf : text, &ids, &n) != 0) {
            rc = 1;
        } else if (n == 0) {
            fprintf(stderr, "tessera: the prompt is empty\n");
            rc = 2;
        } else {
            rc = generate(&r, ids, n, NULL, NULL);
        }
        free(buf);
    }
    ts_kv_cache_destroy(&r.cache);
done:
    ts_tokenizer_free(r.tok);
    free(ids);
    ts_cli_model_close(&r.cm);
    return rc;
}
