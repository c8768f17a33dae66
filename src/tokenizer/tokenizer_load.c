/* Loading tokenizers: tokenizer.json (and the older vocab.json + merges.txt pair) with
 * tokenizer_config.json into a ts_tokenizer_def, conversion of that definition to and from ts_vocab_spec
 * (GGUF metadata), and the model-directory entry points. Everything unsupported is an error that names
 * the field and the value found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "format/json_util.h"
#include "tokenizer/tokenizer_config.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_text.h"

#define MAX_VOCAB (1 << 24)          /* ids above this are rejected rather than allocated for */
#define MAX_TOKENIZER_JSON (512u << 20)
#define MAX_CONFIG_JSON (64u << 20)

/* ---- pre-tokenizer, normalizer ---- */

static int add_step(ts_tokenizer_def *def, ts_pretok_step_type type, ts_pretok_kind kind, const char *source,
                    ts_error *err) {
    if (def->n_steps == TS_MAX_PRETOK_STEPS)
        return ts_fail(err, "%s: more than %d pre-tokenizer steps", source, TS_MAX_PRETOK_STEPS);
    def->steps[def->n_steps].type = type;
    def->steps[def->n_steps].kind = kind;
    def->n_steps++;
    return 0;
}

static int parse_pretokenizer(ts_tokenizer_def *def, const json_t *pt, const char *source, int depth, ts_error *err) {
    if (!pt || json_is_null(pt)) return 0;
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return ts_fail(err, "%s: pre_tokenizer has no \"type\"", source);
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list) || depth > 4)
            return ts_fail(err, "%s: pre_tokenizer Sequence needs a \"pretokenizers\" array", source);
        size_t i;
        const json_t *item;
        json_array_foreach(list, i, item) if (parse_pretokenizer(def, item, source, depth + 1, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        const json_t *aps = json_object_get(pt, "add_prefix_space"), *ur = json_object_get(pt, "use_regex");
        if (json_is_true(aps) && add_step(def, TS_STEP_PREFIX_SPACE, 0, source, err)) return -1;
        if ((!ur || json_is_true(ur)) && add_step(def, TS_STEP_SPLIT, TS_PRETOK_GPT2, source, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const json_t *pattern = json_object_get(pt, "pattern");
        const char *regex = json_string_value(json_object_get(pattern, "Regex"));
        if (!regex)
            return ts_fail(err, "%s: pre_tokenizer Split needs {\"Regex\": ...} (string patterns are not supported)",
                           source);
        const char *behavior = json_string_value(json_object_get(pt, "behavior"));
        if (!behavior || strcmp(behavior, "Isolated"))
            return ts_fail(err, "%s: pre_tokenizer Split behavior \"%s\" is not supported (expected \"Isolated\")",
                           source, behavior ? behavior : "(missing)");
        if (json_is_true(json_object_get(pt, "invert")))
            return ts_fail(err, "%s: pre_tokenizer Split with invert=true is not supported", source);
        ts_pretok_kind kind;
        if (ts_pretok_from_pattern(regex, &kind, err)) {
            ts_error_prefix(err, "%s: ", source);
            return -1;
        }
        return add_step(def, TS_STEP_SPLIT, kind, source, err);
    }
    if (!strcmp(type, "Digits")) {
        int individual = json_is_true(json_object_get(pt, "individual_digits"));
        return add_step(def, TS_STEP_SPLIT, individual ? TS_PRETOK_DIGITS_INDIVIDUAL : TS_PRETOK_DIGITS_GROUPED,
                        source, err);
    }
    return ts_fail(err, "%s: pre_tokenizer type \"%s\" is not supported (ByteLevel, Split, Digits, Sequence are)",
                   source, type);
}

static int parse_normalizer(ts_tokenizer_def *def, const json_t *n, const char *source, ts_error *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (type && !strcmp(type, "NFC")) {
        def->nfc = 1;
        return 0;
    }
    if (type && !strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(n, "normalizers");
        size_t i;
        const json_t *item;
        json_array_foreach(list, i, item) {
            const char *t = json_string_value(json_object_get(item, "type"));
            if (!t || strcmp(t, "NFC"))
                return ts_fail(err, "%s: normalizer \"%s\" is not supported (only NFC is)", source, t ? t : "?");
            def->nfc = 1;
        }
        return 0;
    }
    return ts_fail(err, "%s: normalizer \"%s\" is not supported (only NFC is)", source, type ? type : "?");
}

/* ---- tokenizer_config.json ---- */

static int set_str(char **dst, const char *s) {
    free(*dst);
    *dst = s ? strdup(s) : NULL;
    return s && !*dst ? -1 : 0;
}

static int apply_config(ts_tokenizer_def *def, const json_t *cfg) {
    if (!json_is_object(cfg)) return 0;
    if (set_str(&def->bos_token, ts_tokenizer_config_token(json_object_get(cfg, "bos_token"))) ||
        set_str(&def->eos_token, ts_tokenizer_config_token(json_object_get(cfg, "eos_token"))) ||
        set_str(&def->pad_token, ts_tokenizer_config_token(json_object_get(cfg, "pad_token"))))
        return -1;
    const json_t *add_bos = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(add_bos)) def->spec.add_bos = json_is_true(add_bos);
    const char *text = ts_tokenizer_config_chat_template(cfg);
    if (text && set_str(&def->spec.chat_template, text)) return -1;
    return 0;
}

/* ---- tokenizer.json ---- */

static int ensure_tokens(ts_vocab_spec *spec, int32_t n, ts_error *err) {
    if (n <= spec->n_tokens) return 0;
    char **t = realloc(spec->tokens, (size_t)n * sizeof *t);
    if (!t) return ts_fail(err, "out of memory");
    spec->tokens = t;
    int32_t *ty = realloc(spec->token_types, (size_t)n * sizeof *ty);
    if (!ty) return ts_fail(err, "out of memory");
    spec->token_types = ty;
    for (int32_t i = spec->n_tokens; i < n; i++) {
        spec->tokens[i] = NULL;
        spec->token_types[i] = TS_TOKEN_UNUSED;
    }
    spec->n_tokens = n;
    return 0;
}

static int add_added_token(ts_tokenizer_def *def, const char *content, int32_t id, int special, int lstrip,
                           int rstrip, int normalized, int single_word, ts_error *err) {
    ts_added_token *a = realloc(def->added, (def->n_added + 1) * sizeof *a);
    if (!a) return ts_fail(err, "out of memory");
    def->added = a;
    ts_added_token *t = &a[def->n_added];
    memset(t, 0, sizeof *t);
    t->content = strdup(content);
    if (!t->content) return ts_fail(err, "out of memory");
    def->n_added++;
    t->len = strlen(content);
    t->id = id;
    t->special = (uint8_t)special;
    t->lstrip = (uint8_t)lstrip;
    t->rstrip = (uint8_t)rstrip;
    t->normalized = (uint8_t)normalized;
    t->single_word = (uint8_t)single_word;
    return 0;
}

/* Token tables are sized by the largest id, so ids far beyond the number of tokens a file lists would let a
 * few bytes of input allocate gigabytes; real vocabularies are dense (a few holes at most). */
static int32_t id_limit(size_t listed) {
    return listed < (size_t)(MAX_VOCAB - 1024) / 2 ? (int32_t)(2 * listed + 1024) : MAX_VOCAB;
}

/* `listed`: how many tokens the file lists in all (vocabulary and added tokens), which bounds the ids. */
static int parse_vocab(ts_tokenizer_def *def, const json_t *vocab, size_t listed, const char *source, ts_error *err) {
    if (!json_is_object(vocab)) return ts_fail(err, "%s: model.vocab must be an object of token -> id", source);
    int32_t max_id = -1, limit = id_limit(listed);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= limit)
            return ts_fail(err, "%s: vocab entry \"%.100s\" has id %lld (expected an integer in 0..%d for %zu tokens)",
                           source, key, (long long)id, limit - 1, listed);
        if (id > max_id) max_id = (int32_t)id;
    }
    if (ensure_tokens(&def->spec, max_id + 1, err)) return -1;
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (def->spec.tokens[id])
            return ts_fail(err, "%s: vocab id %d is given to both \"%.100s\" and \"%.100s\"", source, (int)id,
                           def->spec.tokens[id], key);
        if (!(def->spec.tokens[id] = strdup(key))) return ts_fail(err, "out of memory");
        def->spec.token_types[id] = TS_TOKEN_NORMAL;
    }
    return 0;
}

static int push_merge(ts_vocab_spec *spec, const char *left, size_t ll, const char *right, size_t rl,
                      int32_t *cap, ts_error *err) {
    if (spec->n_merges == *cap) {
        int32_t nc = *cap ? *cap * 2 : 1024;
        char **m = realloc(spec->merges, (size_t)nc * sizeof *m);
        if (!m) return ts_fail(err, "out of memory");
        spec->merges = m;
        *cap = nc;
    }
    char *s = malloc(ll + rl + 2);
    if (!s) return ts_fail(err, "out of memory");
    memcpy(s, left, ll);
    s[ll] = ' ';
    memcpy(s + ll + 1, right, rl);
    s[ll + rl + 1] = '\0';
    spec->merges[spec->n_merges++] = s;
    return 0;
}

static int parse_merges(ts_tokenizer_def *def, const json_t *merges, const char *source, ts_error *err) {
    if (!json_is_array(merges)) return ts_fail(err, "%s: model.merges must be an array", source);
    int32_t cap = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return ts_fail(err, "%s: merge %zu (\"%.100s\") is not two tokens separated by one space", source, i, s);
            if (push_merge(&def->spec, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), &cap, err)) return -1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            if (strchr(a, ' ') || strchr(b, ' '))
                return ts_fail(err, "%s: merge %zu has a token containing a space, which is not supported", source, i);
            if (push_merge(&def->spec, a, strlen(a), b, strlen(b), &cap, err)) return -1;
        } else
            return ts_fail(err, "%s: merge %zu must be \"left right\" or [\"left\", \"right\"]", source, i);
    }
    return 0;
}

static int parse_added_tokens(ts_tokenizer_def *def, const json_t *list, size_t listed, const char *source,
                              ts_error *err) {
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) return ts_fail(err, "%s: added_tokens must be an array", source);
    int32_t limit = id_limit(listed);
    size_t i;
    const json_t *t;
    json_array_foreach(list, i, t) {
        const json_t *idv = json_object_get(t, "id");
        const char *content = json_string_value(json_object_get(t, "content"));
        json_int_t id = json_integer_value(idv);
        if (!content || !json_is_integer(idv) || id < 0 || id >= limit)
            return ts_fail(err, "%s: added_tokens[%zu] needs \"content\" and an \"id\" in 0..%d (for %zu tokens)", source,
                           i, limit - 1, listed);
        if (ts_utf8_validate(content, strlen(content), err)) return -1;
        int special = json_is_true(json_object_get(t, "special"));
        if (ensure_tokens(&def->spec, (int32_t)id + 1, err)) return -1;
        if (!def->spec.tokens[id] && !(def->spec.tokens[id] = strdup(content))) return ts_fail(err, "out of memory");
        def->spec.token_types[id] = special ? TS_TOKEN_CONTROL : TS_TOKEN_USER_DEFINED;
        if (add_added_token(def, content, (int32_t)id, special, json_is_true(json_object_get(t, "lstrip")),
                            json_is_true(json_object_get(t, "rstrip")), json_is_true(json_object_get(t, "normalized")),
                            json_is_true(json_object_get(t, "single_word")), err))
            return -1;
    }
    return 0;
}

static int check_model_options(const json_t *model, const char *source, ts_error *err) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return ts_fail(err, "%s: model type \"%s\" is not supported (byte-level BPE only)", source, type);
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return ts_fail(err, "%s: BPE with byte_fallback (SentencePiece style) is not supported", source);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const char *v = json_string_value(json_object_get(model, keys[k]));
        if (v && *v) return ts_fail(err, "%s: BPE %s \"%s\" is not supported", source, keys[k], v);
    }
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return ts_fail(err, "%s: BPE dropout is not supported", source);
    return 0;
}

static int check_decoder(const json_t *dec, const char *source, ts_error *err) {
    if (!dec || json_is_null(dec)) return 0;
    const char *type = json_string_value(json_object_get(dec, "type"));
    if (type && !strcmp(type, "ByteLevel")) return 0;
    return ts_fail(err, "%s: decoder \"%s\" is not supported (ByteLevel only)", source, type ? type : "?");
}

/* A TemplateProcessing post-processor that puts a special token before the sequence means the model
 * expects BOS (Llama-3); the ByteLevel one adds nothing. */
static void detect_add_bos(ts_tokenizer_def *def, const json_t *post) {
    const char *type = json_string_value(json_object_get(post, "type"));
    if (!type || strcmp(type, "TemplateProcessing")) return;
    const json_t *single = json_object_get(post, "single");
    const json_t *first = json_array_get(single, 0);
    const char *name = json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
    if (name) {
        def->spec.add_bos = 1;
        if (!def->bos_token) def->bos_token = strdup(name);
    }
}

int ts_tokenizer_def_from_json(ts_tokenizer_def *def, const char *json, size_t len, const char *config_json,
                               size_t config_len, const char *source, ts_error *err) {
    json_t *root = ts_json_parse(json, len, source, err);
    if (!root) return -1;
    int rc = -1;
    json_t *cfg = NULL;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        ts_fail(err, "%s: no \"model\" object (is this a tokenizer.json?)", source);
        goto done;
    }
    const json_t *added = json_object_get(root, "added_tokens");
    size_t listed = json_object_size(json_object_get(model, "vocab")) + json_array_size(added);
    if (check_model_options(model, source, err) || check_decoder(json_object_get(root, "decoder"), source, err) ||
        parse_vocab(def, json_object_get(model, "vocab"), listed, source, err) ||
        parse_merges(def, json_object_get(model, "merges"), source, err) ||
        parse_added_tokens(def, added, listed, source, err) ||
        parse_normalizer(def, json_object_get(root, "normalizer"), source, err) ||
        parse_pretokenizer(def, json_object_get(root, "pre_tokenizer"), source, 0, err))
        goto done;
    def->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    snprintf(def->spec.model, sizeof def->spec.model, "gpt2");
    if (config_json) {
        cfg = ts_json_parse(config_json, config_len, "tokenizer_config.json", err);
        if (!cfg) goto done;
        if (apply_config(def, cfg)) {
            ts_fail(err, "out of memory");
            goto done;
        }
    }
    detect_add_bos(def, json_object_get(root, "post_processor"));
    rc = 0;
done:
    json_decref(root);
    json_decref(cfg);
    return rc;
}

/* ---- vocab.json + merges.txt (GPT-2 style directories without tokenizer.json) ---- */

static int def_from_vocab_merges(ts_tokenizer_def *def, const char *dir, const json_t *cfg, ts_error *err) {
    char path[4200];
    ts_path_join(path, sizeof path, dir, "vocab.json");
    json_t *vocab = ts_json_load_file(path, MAX_TOKENIZER_JSON, err);
    if (!vocab) return -1;
    int rc = parse_vocab(def, vocab, json_object_size(vocab), path, err);
    json_decref(vocab);
    if (rc) return -1;
    ts_path_join(path, sizeof path, dir, "merges.txt");
    char *text = NULL;
    size_t len = 0;
    if (ts_read_file(path, MAX_TOKENIZER_JSON, &text, &len, err)) return -1;
    int32_t cap = 0;
    size_t line_no = 0;
    for (char *line = text; line && *line;) {
        char *nl = memchr(line, '\n', len - (size_t)(line - text));
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll && line[ll - 1] == '\r') ll--;
        line_no++;
        if (ll && !(line_no == 1 && !strncmp(line, "#version", 8))) {
            char *sp = memchr(line, ' ', ll);
            if (!sp || memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - line))) {
                free(text);
                return ts_fail(err, "%s:%zu: expected \"left right\"", path, line_no);
            }
            if (push_merge(&def->spec, line, (size_t)(sp - line), sp + 1, ll - (size_t)(sp + 1 - line), &cap, err)) {
                free(text);
                return -1;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (add_step(def, TS_STEP_SPLIT, TS_PRETOK_GPT2, path, err)) return -1;
    snprintf(def->spec.model, sizeof def->spec.model, "gpt2");
    /* The special tokens named by the config are the added tokens of such a directory. */
    const char *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int k = 0; k < 4; k++) {
        const char *name = ts_tokenizer_config_token(json_object_get(cfg, names[k]));
        if (!name) continue;
        int seen = 0;
        for (size_t i = 0; i < def->n_added; i++) seen |= !strcmp(def->added[i].content, name);
        if (seen) continue;
        for (int32_t id = 0; id < def->spec.n_tokens; id++)
            if (def->spec.tokens[id] && !strcmp(def->spec.tokens[id], name)) {
                def->spec.token_types[id] = TS_TOKEN_CONTROL;
                if (add_added_token(def, name, id, 1, 0, 0, 0, 0, err)) return -1;
                break;
            }
    }
    return 0;
}

/* ---- directories ---- */

static int read_optional(const char *dir, const char *name, size_t max, char **text, size_t *len, ts_error *err) {
    char path[4200];
    *text = NULL;
    *len = 0;
    if (ts_path_join(path, sizeof path, dir, name)) return ts_fail(err, "%s: path too long", dir);
    if (!ts_file_exists(path)) return 0;
    return ts_read_file(path, max, text, len, err);
}

static int def_from_dir(ts_tokenizer_def *def, const char *dir, ts_error *err) {
    char *cfg_text = NULL, *json = NULL, *tpl = NULL;
    size_t cfg_len = 0, json_len = 0, tpl_len = 0;
    int rc = -1;
    char path[4200];
    if (ts_path_join(path, sizeof path, dir, "tokenizer.json")) return ts_fail(err, "%s: path too long", dir);
    if (read_optional(dir, "tokenizer_config.json", MAX_CONFIG_JSON, &cfg_text, &cfg_len, err) ||
        read_optional(dir, "tokenizer.json", MAX_TOKENIZER_JSON, &json, &json_len, err) ||
        read_optional(dir, "chat_template.jinja", MAX_CONFIG_JSON, &tpl, &tpl_len, err))
        goto done;
    if (json) {
        if (ts_tokenizer_def_from_json(def, json, json_len, cfg_text, cfg_len, path, err)) goto done;
    } else {
        char vocab_path[4200];
        ts_path_join(vocab_path, sizeof vocab_path, dir, "vocab.json");
        if (!ts_file_exists(vocab_path)) {
            ts_fail(err, "%s: no tokenizer.json (nor vocab.json + merges.txt) in this directory", dir);
            goto done;
        }
        json_t *cfg = cfg_text ? ts_json_parse(cfg_text, cfg_len, "tokenizer_config.json", err) : NULL;
        if (cfg_text && !cfg) goto done;
        int r = def_from_vocab_merges(def, dir, cfg, err);
        if (!r && apply_config(def, cfg)) r = ts_fail(err, "out of memory");
        json_decref(cfg);
        if (r) goto done;
    }
    if (tpl) { /* chat_template.jinja is what transformers writes today and wins over the config */
        free(def->spec.chat_template);
        def->spec.chat_template = tpl;
        tpl = NULL;
    }
    rc = 0;
done:
    free(cfg_text);
    free(json);
    free(tpl);
    return rc;
}

int ts_tokenizer_load_dir(const char *model_dir, ts_tokenizer **out, ts_error *err) {
    *out = NULL;
    ts_tokenizer_def def;
    ts_tokenizer_def_init(&def);
    if (def_from_dir(&def, model_dir, err)) {
        ts_tokenizer_def_free(&def);
        return -1;
    }
    return ts_tokenizer_build(&def, out, err);
}

int ts_tokenizer_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           const char *source, ts_tokenizer **out, ts_error *err) {
    *out = NULL;
    ts_tokenizer_def def;
    ts_tokenizer_def_init(&def);
    if (ts_tokenizer_def_from_json(&def, json, len, config_json, config_len, source, err)) {
        ts_tokenizer_def_free(&def);
        return -1;
    }
    return ts_tokenizer_build(&def, out, err);
}

/* ---- ts_vocab_spec ---- */

static int pre_name_of(const ts_tokenizer_def *def, char *name, size_t cap, ts_error *err) {
    const ts_pretok_step *s = def->steps;
    int n = def->n_steps;
    const char *pre = NULL;
    if (n == 1 && s[0].type == TS_STEP_SPLIT && s[0].kind == TS_PRETOK_QWEN2 && def->nfc) pre = "qwen2";
    else if (n == 1 && s[0].type == TS_STEP_SPLIT && s[0].kind == TS_PRETOK_LLAMA3 && !def->nfc) pre = "llama-bpe";
    else if (n == 1 && s[0].type == TS_STEP_SPLIT && s[0].kind == TS_PRETOK_GPT2 && !def->nfc) pre = "gpt-2";
    else if (n == 2 && s[0].type == TS_STEP_SPLIT && s[0].kind == TS_PRETOK_DIGITS_INDIVIDUAL &&
             s[1].type == TS_STEP_SPLIT && s[1].kind == TS_PRETOK_GPT2 && !def->nfc)
        pre = "smollm";
    if (!pre)
        return ts_fail(err, "this tokenizer's normalizer and pre-tokenizer combination has no GGUF pre-tokenizer name");
    snprintf(name, cap, "%s", pre);
    return 0;
}

static int spec_from_def(ts_tokenizer_def *def, ts_vocab_spec *out, ts_error *err) {
    if (pre_name_of(def, def->spec.pre, sizeof def->spec.pre, err)) return -1;
    ts_vocab_spec *s = &def->spec;
    for (int32_t id = 0; id < s->n_tokens; id++) {
        if (s->tokens[id]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", (int)id);
        if (!(s->tokens[id] = strdup(pad))) return ts_fail(err, "out of memory");
        s->token_types[id] = TS_TOKEN_UNUSED;
    }
    int32_t *ids[] = {&s->bos_id, &s->eos_id, &s->pad_id};
    const char *names[] = {def->bos_token, def->eos_token, def->pad_token};
    for (int k = 0; k < 3; k++) {
        *ids[k] = -1;
        for (int32_t id = 0; names[k] && id < s->n_tokens; id++)
            if (!strcmp(s->tokens[id], names[k])) { *ids[k] = id; break; }
    }
    *out = *s;
    ts_vocab_spec_init(s);
    return 0;
}

int ts_tokenizer_json_buffer_to_spec(const char *json, size_t len, const char *config_json, size_t config_len,
                                     const char *source, ts_vocab_spec *out, ts_error *err) {
    ts_vocab_spec_init(out);
    ts_tokenizer_def def;
    ts_tokenizer_def_init(&def);
    int rc = ts_tokenizer_def_from_json(&def, json, len, config_json, config_len, source, err);
    if (!rc) rc = spec_from_def(&def, out, err);
    ts_tokenizer_def_free(&def);
    return rc;
}

int ts_tokenizer_json_to_spec(const char *model_dir, ts_vocab_spec *out, ts_error *err) {
    ts_vocab_spec_init(out);
    ts_tokenizer_def def;
    ts_tokenizer_def_init(&def);
    int rc = def_from_dir(&def, model_dir, err);
    if (!rc) rc = spec_from_def(&def, out, err);
    ts_tokenizer_def_free(&def);
    return rc;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int ts_tokenizer_from_spec(const ts_vocab_spec *spec, ts_tokenizer **out, ts_error *err) {
    *out = NULL;
    if (strcmp(spec->model, "gpt2"))
        return ts_fail(err, "tokenizer model \"%s\" is not supported (byte-level BPE, \"gpt2\", only)", spec->model);
    if (spec->n_tokens <= 0 || spec->n_tokens > MAX_VOCAB || !spec->tokens || spec->n_merges < 0 ||
        (spec->n_merges && !spec->merges))
        return ts_fail(err, "vocabulary spec has %d tokens and %d merges", (int)spec->n_tokens, (int)spec->n_merges);
    ts_tokenizer_def def;
    ts_tokenizer_def_init(&def);
    const char *pre = spec->pre[0] ? spec->pre : "default";
    int rc = 0;
    if (!strcmp(pre, "qwen2")) {
        def.nfc = 1;
        rc = add_step(&def, TS_STEP_SPLIT, TS_PRETOK_QWEN2, "spec", err);
    } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) {
        def.ignore_merges = 1;
        rc = add_step(&def, TS_STEP_SPLIT, TS_PRETOK_LLAMA3, "spec", err);
    } else if (!strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2") || !strcmp(pre, "default")) {
        rc = add_step(&def, TS_STEP_SPLIT, TS_PRETOK_GPT2, "spec", err);
    } else if (!strcmp(pre, "smollm")) {
        rc = add_step(&def, TS_STEP_SPLIT, TS_PRETOK_DIGITS_INDIVIDUAL, "spec", err);
        if (!rc) rc = add_step(&def, TS_STEP_SPLIT, TS_PRETOK_GPT2, "spec", err);
    } else {
        ts_tokenizer_def_free(&def);
        return ts_fail(err, "pre-tokenizer \"%s\" is not supported (qwen2, llama-bpe, gpt-2, smollm, default are)", pre);
    }
    def.spec.n_tokens = spec->n_tokens;
    def.spec.tokens = calloc((size_t)spec->n_tokens, sizeof(char *));
    def.spec.token_types = calloc((size_t)spec->n_tokens, sizeof(int32_t));
    def.spec.merges = calloc((size_t)spec->n_merges + 1, sizeof(char *));
    if (rc || !def.spec.tokens || !def.spec.token_types || !def.spec.merges) {
        def.spec.n_tokens = 0;
        ts_tokenizer_def_free(&def);
        return rc ? -1 : ts_fail(err, "out of memory");
    }
    for (int32_t i = 0; i < spec->n_tokens; i++) {
        const char *t = spec->tokens[i] ? spec->tokens[i] : "";
        int32_t type = spec->token_types ? spec->token_types[i] : TS_TOKEN_NORMAL;
        def.spec.token_types[i] = type;
        if (!(def.spec.tokens[i] = strdup(t))) rc = -1;
        if (!rc && (type == TS_TOKEN_CONTROL || type == TS_TOKEN_USER_DEFINED) && *t) {
            if (ts_utf8_validate(t, strlen(t), err)) {
                ts_error_prefix(err, "token %d: ", (int)i);
                ts_tokenizer_def_free(&def);
                return -1;
            }
            rc = add_added_token(&def, t, i, type == TS_TOKEN_CONTROL, 0, 0, 0, 0, err);
        }
        if (rc) {
            ts_tokenizer_def_free(&def);
            return ts_fail(err, "out of memory");
        }
    }
    for (int32_t i = 0; i < spec->n_merges; i++) {
        if (!spec->merges[i] || !(def.spec.merges[i] = strdup(spec->merges[i]))) {
            def.spec.n_merges = i;
            ts_tokenizer_def_free(&def);
            return ts_fail(err, "merge %d is missing", (int)i);
        }
        def.spec.n_merges = i + 1;
    }
    snprintf(def.spec.model, sizeof def.spec.model, "%s", spec->model);
    snprintf(def.spec.pre, sizeof def.spec.pre, "%s", pre);
    def.spec.bos_id = spec->bos_id < spec->n_tokens ? spec->bos_id : -1;
    def.spec.eos_id = spec->eos_id < spec->n_tokens ? spec->eos_id : -1;
    def.spec.pad_id = spec->pad_id < spec->n_tokens ? spec->pad_id : -1;
    def.spec.unk_id = spec->unk_id < spec->n_tokens ? spec->unk_id : -1;
    def.spec.add_bos = spec->add_bos;
    def.spec.add_eos = spec->add_eos;
    def.spec.chat_template = dup_or_null(spec->chat_template);
    return ts_tokenizer_build(&def, out, err);
}
