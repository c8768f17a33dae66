/* Chat templates: finding a model's template (chat_template.jinja, or tokenizer_config.json's
 * chat_template as a string or a list of named templates, or the template carried by a GGUF vocabulary)
 * and rendering a conversation with it the way transformers' apply_chat_template does. A model without
 * a template gets GPT-2/DialoGPT's convention: each turn's content followed by the end-of-text token. */
#ifndef TS_TOKENIZER_CHAT_H
#define TS_TOKENIZER_CHAT_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

typedef struct ts_chat_template ts_chat_template;

/* Loads model_dir's template; bos/eos token strings come from tokenizer_config.json. */
int ts_chat_template_load_dir(const char *model_dir, ts_chat_template **out, ts_error *err);
/* From a loaded tokenizer (its template, or the end-of-text convention when it has none). */
int ts_chat_template_from_tokenizer(const ts_tokenizer *tok, ts_chat_template **out, ts_error *err);
/* From template text; bos/eos may be NULL. */
int ts_chat_template_from_string(const char *source, size_t len, const char *name, const char *bos_token,
                                 const char *eos_token, ts_chat_template **out, ts_error *err);
void ts_chat_template_free(ts_chat_template *tpl);
/* The template text in use (for logging and tests). */
const char *ts_chat_template_source(const ts_chat_template *tpl);

typedef struct ts_chat_options {
    int add_generation_prompt;
    int enable_thinking;   /* 1 or 0, or -1 to leave it undefined (the template's default) */
    const json_t *tools;   /* JSON array of tool schemas, or NULL */
    const json_t *extra;   /* further template variables (a JSON object), or NULL */
    const ts_jinja_limits *limits; /* NULL for ts_jinja_default_limits() */
} ts_chat_options;

void ts_chat_options_init(ts_chat_options *opt);

/* Renders messages (a JSON array of {role, content, ...}) to the prompt text (heap, NUL-terminated). */
int ts_chat_render(const ts_chat_template *tpl, const json_t *messages, const ts_chat_options *opt, char **out,
                   size_t *out_len, ts_error *err);

#endif
