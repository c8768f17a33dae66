/* tessera tokenize: prints the token ids of a text, like llama.cpp's llama-tokenize. With --bench N it
 * instead encodes the text N times and reports the encoding throughput (used by bench/tokenizer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/files.h"
#include "cli/commands.h"
#include "format/json_util.h"
#include "tokenizer/model_tokenizer.h"

#define TOKENIZE_MAX_FILE ((size_t)1 << 31)

static void tokenize_usage(void) {
    fprintf(stderr,
            "usage: tessera tokenize --model DIR (--text TEXT | --file FILE) [--ids-only] [--no-special]\n"
            "  --model DIR     model directory with tokenizer.json (or vocab.json + merges.txt)\n"
            "  --text TEXT     text to tokenize\n"
            "  --file FILE     read the text from FILE (must be UTF-8)\n"
            "  --ids-only      print the ids on one line, space separated\n"
            "  --no-special    treat special tokens written in the text as plain text\n"
            "  --bench N       encode the text N times and print the throughput instead\n"
            "  --jsonl         the file holds one JSON string per line; print one line of ids per string\n");
}

/* Prints a piece the way llama-tokenize does: the decoded text between single quotes. */
static void print_piece(const ts_tokenizer *tok, int32_t id) {
    const uint8_t *bytes;
    size_t n;
    ts_tokenizer_token_bytes(tok, id, &bytes, &n);
    fputc('\'', stdout);
    fwrite(bytes, 1, n, stdout);
    fputc('\'', stdout);
}

/* One JSON string per line in, one line of space-separated ids out: lets tests compare thousands of
 * strings against another tokenizer in one process. */
static int run_jsonl(const ts_tokenizer *tok, const char *text, size_t len, int parse_special) {
    size_t line_no = 0;
    for (const char *line = text; line < text + len;) {
        const char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        line_no++;
        json_error_t je;
        json_t *v = json_loadb(line, ll, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(v)) {
            fprintf(stderr, "tessera tokenize: line %zu: expected a JSON string\n", line_no);
            json_decref(v);
            return 1;
        }
        ts_error err;
        int32_t *ids;
        size_t n;
        if (ts_tokenizer_encode(tok, json_string_value(v), json_string_length(v), parse_special, &ids, &n, &err)) {
            printf("error: %s\n", err.message);
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
            fputc('\n', stdout);
            free(ids);
        }
        json_decref(v);
        line = nl ? nl + 1 : text + len;
    }
    return 0;
}

static int run_bench(const ts_tokenizer *tok, const char *text, size_t len, int parse_special, long reps) {
    ts_error err;
    size_t n_tokens = 0;
    double best = 1e30;
    for (long r = 0; r < reps; r++) {
        int32_t *ids;
        size_t n;
        double t0 = ts_now_seconds();
        if (ts_tokenizer_encode(tok, text, len, parse_special, &ids, &n, &err)) {
            fprintf(stderr, "tessera tokenize: %s\n", err.message);
            return 1;
        }
        double dt = ts_now_seconds() - t0;
        if (dt < best) best = dt;
        n_tokens = n;
        free(ids);
    }
    printf("bytes=%zu tokens=%zu best_seconds=%.6f MB_per_s=%.2f tokens_per_s=%.0f\n", len, n_tokens, best,
           (double)len / best / 1e6, (double)n_tokens / best);
    return 0;
}

int ts_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    int ids_only = 0, parse_special = 1, jsonl = 0;
    long bench = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            tokenize_usage();
            return 0;
        } else if (!strcmp(a, "--ids-only")) ids_only = 1;
        else if (!strcmp(a, "--no-special")) parse_special = 0;
        else if (!strcmp(a, "--jsonl")) jsonl = 1;
        else if (i + 1 < argc && !strcmp(a, "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--text")) text = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--file")) file = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--bench")) bench = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "tessera tokenize: unknown or incomplete option '%s'\n", a);
            tokenize_usage();
            return 2;
        }
    }
    if (!model || (!text == !file)) {
        tokenize_usage();
        return 2;
    }
    ts_error err;
    ts_tokenizer *tok;
    if (ts_tokenizer_for_model(model, NULL, &tok, &err)) {
        fprintf(stderr, "tessera tokenize: %s\n", err.message);
        return 1;
    }
    char *file_text = NULL;
    size_t len = text ? strlen(text) : 0;
    if (file && ts_read_file(file, TOKENIZE_MAX_FILE, &file_text, &len, &err)) {
        fprintf(stderr, "tessera tokenize: %s\n", err.message);
        ts_tokenizer_free(tok);
        return 1;
    }
    const char *input = file ? file_text : text;
    int rc = 0;
    if (jsonl) {
        rc = run_jsonl(tok, input, len, parse_special);
    } else if (bench > 0) {
        rc = run_bench(tok, input, len, parse_special, bench);
    } else {
        int32_t *ids;
        size_t n;
        if (ts_tokenizer_encode(tok, input, len, parse_special, &ids, &n, &err)) {
            fprintf(stderr, "tessera tokenize: %s\n", err.message);
            rc = 1;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (ids_only) {
                    printf(i ? " %d" : "%d", (int)ids[i]);
                } else {
                    printf("%6d -> ", (int)ids[i]);
                    print_piece(tok, ids[i]);
                    fputc('\n', stdout);
                }
            }
            if (ids_only) fputc('\n', stdout);
            free(ids);
        }
    }
    free(file_text);
    ts_tokenizer_free(tok);
    return rc;
}
