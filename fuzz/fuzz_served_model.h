/* For the HTTP request targets: a served model with a real tokenizer and chat template (the repository's
 * models/tiny-code, loaded once) but no engine, which is all that the request readers and the prompt
 * path (ts_prompt_*) touch before a generation starts. */
#ifndef TS_FUZZ_SERVED_MODEL_H
#define TS_FUZZ_SERVED_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/registry.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

static int fuzz_render_chat(void *owner, const json_t *vars, char **text, size_t *len, ts_error *err) {
    json_t *all = json_deep_copy(vars);
    if (!all) return ts_fail(err, "out of memory");
    json_object_set_new(all, "bos_token", json_string(""));
    json_object_set_new(all, "eos_token", json_string("<|endoftext|>"));
    ts_jinja_limits limits = ts_jinja_default_limits();
    limits.max_steps = 200000;
    int rc = ts_jinja_render((const ts_jinja_template *)owner, all, &limits, text, len, err);
    json_decref(all);
    return rc;
}

static ts_served_model *fuzz_served_model(void) {
    static ts_served_model *model;
    if (model) return model;
    const char *dir = TESSERA_SOURCE_DIR "/models/tiny-code";
    ts_tokenizer *tok = NULL;
    ts_error err = {{0}};
    if (ts_tokenizer_load_dir(dir, &tok, &err) != 0) {
        fprintf(stderr, "fuzz: cannot load the tokenizer of %s: %s\n", dir, err.message);
        abort();
    }
    const char *tpl_text = ts_tokenizer_chat_template(tok);
    ts_jinja_template *tpl = NULL;
    if (!tpl_text || ts_jinja_parse(tpl_text, strlen(tpl_text), "chat_template.jinja", &tpl, &err) != 0) {
        fprintf(stderr, "fuzz: %s has no usable chat template: %s\n", dir, err.message);
        abort();
    }
    model = calloc(1, sizeof *model);
    if (!model) abort();
    snprintf(model->name, sizeof model->name, "tiny-code");
    snprintf(model->inst.version, sizeof model->inst.version, "1");
    model->inst.tokenizer = tok;
    model->inst.render_chat = fuzz_render_chat;
    model->inst.owner = tpl;
    return model;
}

#endif
