/* Chat template selection and rendering (see chat.h). The variables passed to the template mirror
 * transformers: messages, tools (None when absent), documents (None), add_generation_prompt, the special
 * token strings it knows (bos_token, eos_token) and extra keyword arguments such as enable_thinking. */
#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "format/json_util.h"
#include "tokenizer/tokenizer_config.h"

#define MAX_TEMPLATE_FILE (16u << 20)

/* transformers' former GPT-2 default: turns joined by the end-of-text token */
static const char k_eos_joined_template[] =
    "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}";

struct ts_chat_template {
    ts_jinja_template *jinja;
    char *source;
    char *bos_token, *eos_token;
};

void ts_chat_options_init(ts_chat_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->add_generation_prompt = 1;
    opt->enable_thinking = -1;
}

void ts_chat_template_free(ts_chat_template *tpl) {
    if (!tpl) return;
    ts_jinja_free(tpl->jinja);
    free(tpl->source);
    free(tpl->bos_token);
    free(tpl->eos_token);
    free(tpl);
}

const char *ts_chat_template_source(const ts_chat_template *tpl) { return tpl->source; }

int ts_chat_template_from_string(const char *source, size_t len, const char *name, const char *bos_token,
                                 const char *eos_token, ts_chat_template **out, ts_error *err) {
    *out = NULL;
    ts_chat_template *t = calloc(1, sizeof *t);
    if (!t) return ts_fail(err, "out of memory");
    t->source = malloc(len + 1);
    if (!t->source) {
        free(t);
        return ts_fail(err, "out of memory");
    }
    memcpy(t->source, source, len);
    t->source[len] = '\0';
    t->bos_token = bos_token ? strdup(bos_token) : NULL;
    t->eos_token = eos_token ? strdup(eos_token) : NULL;
    if (ts_jinja_parse(source, len, name ? name : "chat_template", &t->jinja, err)) {
        ts_chat_template_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int ts_chat_template_from_tokenizer(const ts_tokenizer *tok, ts_chat_template **out, ts_error *err) {
    const char *src = ts_tokenizer_chat_template(tok);
    const char *name = "chat_template";
    if (!src) {
        src = k_eos_joined_template;
        name = "default chat template (turns joined by eos_token)";
    }
    return ts_chat_template_from_string(src, strlen(src), name, ts_tokenizer_bos_token(tok), ts_tokenizer_eos_token(tok),
                                        out, err);
}

int ts_chat_template_load_dir(const char *model_dir, ts_chat_template **out, ts_error *err) {
    *out = NULL;
    char path[4200];
    json_t *cfg = NULL;
    if (ts_path_join(path, sizeof path, model_dir, "tokenizer_config.json")) return ts_fail(err, "%s: path too long", model_dir);
    if (ts_file_exists(path) && !(cfg = ts_json_load_file(path, MAX_TEMPLATE_FILE, err))) return -1;
    const char *bos = ts_tokenizer_config_token(json_object_get(cfg, "bos_token"));
    const char *eos = ts_tokenizer_config_token(json_object_get(cfg, "eos_token"));
    int rc;
    ts_path_join(path, sizeof path, model_dir, "chat_template.jinja");
    if (ts_file_exists(path)) {
        char *text;
        size_t len;
        if (ts_read_file(path, MAX_TEMPLATE_FILE, &text, &len, err)) {
            json_decref(cfg);
            return -1;
        }
        rc = ts_chat_template_from_string(text, len, "chat_template.jinja", bos, eos, out, err);
        free(text);
        json_decref(cfg);
        return rc;
    }
    const char *text = ts_tokenizer_config_chat_template(cfg);
    if (text) rc = ts_chat_template_from_string(text, strlen(text), "tokenizer_config.json chat_template", bos, eos, out, err);
    else
        rc = ts_chat_template_from_string(k_eos_joined_template, strlen(k_eos_joined_template),
                                          "default chat template (turns joined by eos_token)", bos, eos, out, err);
    json_decref(cfg);
    return rc;
}

int ts_chat_render(const ts_chat_template *tpl, const json_t *messages, const ts_chat_options *opt, char **out,
                   size_t *out_len, ts_error *err) {
    *out = NULL;
    *out_len = 0;
    ts_chat_options defaults;
    if (!opt) {
        ts_chat_options_init(&defaults);
        opt = &defaults;
    }
    if (!json_is_array(messages)) return ts_fail(err, "chat messages must be a JSON array");
    json_t *vars = json_object();
    if (!vars) return ts_fail(err, "out of memory");
    if (opt->extra && json_is_object(opt->extra)) json_object_update(vars, (json_t *)opt->extra);
    json_object_set(vars, "messages", (json_t *)messages);
    json_object_set_new(vars, "tools", opt->tools ? json_incref((json_t *)opt->tools) : json_null());
    if (!json_object_get(vars, "documents")) json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(opt->add_generation_prompt));
    if (opt->enable_thinking >= 0) json_object_set_new(vars, "enable_thinking", json_boolean(opt->enable_thinking));
    if (tpl->bos_token && !json_object_get(vars, "bos_token")) json_object_set_new(vars, "bos_token", json_string(tpl->bos_token));
    if (tpl->eos_token && !json_object_get(vars, "eos_token")) json_object_set_new(vars, "eos_token", json_string(tpl->eos_token));
    int rc = ts_jinja_render(tpl->jinja, vars, opt->limits, out, out_len, err);
    json_decref(vars);
    return rc;
}
