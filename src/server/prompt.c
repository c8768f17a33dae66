/* Prompts to token ids: tokenizing text, checking id lists, rendering chats. */
#include "server/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ts_prompt_encode_text(const ts_served_model *m, const char *text, size_t len, int32_t **ids, int *n,
                          ts_api_error *e) {
    *ids = NULL;
    *n = 0;
    const ts_tokenizer *tok = m->inst.tokenizer;
    if (!tok) return ts_api_fail(e, 400, "prompt", "model '%s' has no tokenizer: send token ids instead of text", m->name);
    int32_t *raw = NULL;
    size_t count = 0;
    ts_error err = {{0}};
    if (ts_tokenizer_encode(tok, text, len, 1, &raw, &count, &err) != 0)
        return ts_api_fail(e, 400, "prompt", "cannot tokenize the prompt: %s", err.message);
    int bos = ts_tokenizer_add_bos(tok) ? ts_tokenizer_bos_id(tok) : -1;
    size_t total = count + (bos >= 0 ? 1 : 0);
    if (total > (size_t)1 << 30) {
        free(raw);
        return ts_api_fail(e, 400, "prompt", "the prompt is too long");
    }
    int32_t *out = malloc((total ? total : 1) * sizeof *out);
    if (!out) {
        free(raw);
        return ts_api_fail(e, 503, NULL, "out of memory");
    }
    size_t k = 0;
    if (bos >= 0) out[k++] = bos;
    if (count) memcpy(out + k, raw, count * sizeof *out);
    free(raw);
    *ids = out;
    *n = (int)total;
    return 0;
}

int ts_prompt_ids(const ts_served_model *m, const json_t *arr, const char *name, int32_t **ids, int *n,
                  ts_api_error *e) {
    *ids = NULL;
    *n = 0;
    size_t count = json_array_size(arr);
    if (count == 0) return ts_api_fail(e, 400, name, "'%s' must not be empty", name);
    if (count > (size_t)1 << 24) return ts_api_fail(e, 400, name, "'%s' has too many tokens", name);
    int vocab = m->inst.tokenizer ? ts_tokenizer_vocab_size(m->inst.tokenizer) : 0;
    int32_t *out = malloc(count * sizeof *out);
    if (!out) return ts_api_fail(e, 503, NULL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v)) {
            free(out);
            return ts_api_fail(e, 400, name, "'%s[%zu]' must be a token id (an integer), found %s", name, i,
                               ts_json_type_words(v));
        }
        json_int_t id = json_integer_value(v);
        if (id < 0 || (vocab > 0 && id >= vocab) || id > INT32_MAX) {
            free(out);
            return ts_api_fail(e, 400, name, "'%s[%zu]': token id %lld is outside the vocabulary (0..%d)", name, i,
                               (long long)id, vocab - 1);
        }
        out[i] = (int32_t)id;
    }
    *ids = out;
    *n = (int)count;
    return 0;
}

/* A message's content as one string: a string, null (""), or a list of text parts joined by newlines. */
static json_t *content_text(const json_t *content, size_t index, ts_api_error *e) {
    char name[64];
    snprintf(name, sizeof name, "messages[%zu].content", index);
    if (!content || json_is_null(content)) return json_string("");
    if (json_is_string(content)) return json_incref((json_t *)content);
    if (!json_is_array(content))
        return ts_api_fail(e, 400, name, "'%s' must be a string or a list of content parts, found %s", name,
                           ts_json_type_words(content)),
               NULL;
    size_t total = 0, i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !type || strcmp(type, "text") != 0 || !json_is_string(text))
            return ts_api_fail(e, 400, name, "'%s[%zu]': only parts {\"type\": \"text\", \"text\": \"...\"} are supported",
                               name, i),
                   NULL;
        total += json_string_length(text) + 1;
    }
    char *joined = malloc(total + 1);
    if (!joined) return ts_api_fail(e, 503, NULL, "out of memory"), NULL;
    size_t k = 0;
    json_array_foreach(content, i, part) {
        const json_t *text = json_object_get(part, "text");
        if (i) joined[k++] = '\n';
        memcpy(joined + k, json_string_value(text), json_string_length(text));
        k += json_string_length(text);
    }
    json_t *s = json_stringn(joined, k);
    free(joined);
    if (!s) ts_api_fail(e, 400, name, "'%s' is not valid UTF-8", name);
    return s;
}

static json_t *chat_vars(const json_t *body, ts_api_error *e) {
    const json_t *messages = json_object_get(body, "messages");
    if (!messages || json_is_null(messages)) return ts_api_fail(e, 400, "messages", "'messages' is required"), NULL;
    if (!json_is_array(messages))
        return ts_api_fail(e, 400, "messages", "'messages' must be a list, found %s", ts_json_type_words(messages)), NULL;
    if (json_array_size(messages) == 0) return ts_api_fail(e, 400, "messages", "'messages' must not be empty"), NULL;
    json_t *vars = json_object();
    json_t *list = json_array();
    json_object_set_new(vars, "messages", list);
    size_t i;
    const json_t *msg;
    json_array_foreach(messages, i, msg) {
        char name[64];
        snprintf(name, sizeof name, "messages[%zu]", i);
        if (!json_is_object(msg)) {
            json_decref(vars);
            return ts_api_fail(e, 400, name, "'%s' must be an object, found %s", name, ts_json_type_words(msg)), NULL;
        }
        const json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role)) {
            json_decref(vars);
            snprintf(name, sizeof name, "messages[%zu].role", i);
            return ts_api_fail(e, 400, name, "'%s' must be a string, found %s", name, ts_json_type_words(role)), NULL;
        }
        json_t *text = content_text(json_object_get(msg, "content"), i, e);
        if (!text) {
            json_decref(vars);
            return NULL;
        }
        json_t *copy = json_deep_copy(msg);
        json_object_set_new(copy, "content", text);
        json_array_append_new(list, copy);
    }
    int add_generation_prompt = 1, found = 0;
    if (ts_field_bool(body, "add_generation_prompt", "add_generation_prompt", &add_generation_prompt, &found, e)) {
        json_decref(vars);
        return NULL;
    }
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    const json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            json_decref(vars);
            return ts_api_fail(e, 400, "tools", "'tools' must be a list, found %s", ts_json_type_words(tools)), NULL;
        }
        json_object_set(vars, "tools", (json_t *)tools);
    }
    const json_t *kwargs = json_object_get(body, "chat_template_kwargs");
    if (kwargs && !json_is_null(kwargs)) {
        if (!json_is_object(kwargs)) {
            json_decref(vars);
            return ts_api_fail(e, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object, found %s",
                               ts_json_type_words(kwargs)),
                   NULL;
        }
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)kwargs, key, value) {
            if (!strcmp(key, "messages")) continue; /* the request's messages are the messages */
            json_object_set(vars, key, value);
        }
    }
    int thinking = 0;
    if (ts_field_bool(body, "enable_thinking", "enable_thinking", &thinking, &found, e)) {
        json_decref(vars);
        return NULL;
    }
    if (found) json_object_set_new(vars, "enable_thinking", json_boolean(thinking));
    return vars;
}

int ts_prompt_chat(const ts_served_model *m, const json_t *body, int32_t **ids, int *n, char **rendered,
                   ts_api_error *e) {
    *ids = NULL;
    *n = 0;
    if (rendered) *rendered = NULL;
    if (!m->inst.render_chat || !m->inst.tokenizer)
        return ts_api_fail(e, 400, "messages", "model '%s' has no chat template; use /v1/completions", m->name);
    json_t *vars = chat_vars(body, e);
    if (!vars) return -1;
    char *text = NULL;
    size_t len = 0;
    ts_error err = {{0}};
    int rc = m->inst.render_chat(m->inst.owner, vars, &text, &len, &err);
    json_decref(vars);
    if (rc != 0) return ts_api_fail(e, 400, "messages", "the chat template failed: %s", err.message);
    int32_t *raw = NULL;
    size_t count = 0;
    if (ts_tokenizer_encode(m->inst.tokenizer, text, len, 1, &raw, &count, &err) != 0) {
        free(text);
        return ts_api_fail(e, 400, "messages", "cannot tokenize the rendered chat: %s", err.message);
    }
    if (count == 0 || count > (size_t)1 << 30) {
        free(raw);
        free(text);
        return ts_api_fail(e, 400, "messages", "the rendered chat is empty");
    }
    *ids = raw;
    *n = (int)count;
    if (rendered) *rendered = text;
    else free(text);
    return 0;
}

char *ts_prompt_decode(const ts_served_model *m, const int32_t *ids, int n, int skip_special) {
    char *text = NULL;
    size_t len = 0;
    ts_error err = {{0}};
    if (!m->inst.tokenizer || ts_tokenizer_decode(m->inst.tokenizer, ids, (size_t)n, skip_special, &text, &len, &err) != 0)
        return strdup("");
    return text;
}
