/* A Jinja2 template interpreter for chat templates, matching what transformers renders with
 * (ImmutableSandboxedEnvironment, trim_blocks and lstrip_blocks on, loop controls, its own tojson with
 * ensure_ascii=False, raise_exception and strftime_now). Covers expressions, filters, tests and methods
 * that real chat templates use; anything else is an error naming the construct and its line:col.
 * Rendering is bounded (output size, memory, evaluation steps, call depth) so that a hostile template
 * can neither hang nor exhaust memory. A parsed template is immutable and may be rendered from several
 * threads at once. */
#ifndef TS_TOKENIZER_JINJA_H
#define TS_TOKENIZER_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ts_jinja_template ts_jinja_template;

typedef struct ts_jinja_limits {
    size_t max_output;  /* bytes of rendered text */
    size_t max_memory;  /* bytes of values created while rendering */
    uint64_t max_steps; /* expression and statement evaluations */
    int max_depth;      /* nested macro calls */
} ts_jinja_limits;

/* 1 MiB output, 64 MiB memory, 10 million steps, depth 64. */
ts_jinja_limits ts_jinja_default_limits(void);

/* Parses a template; `name` prefixes error messages ("chat_template.jinja:12:5: ..."). */
int ts_jinja_parse(const char *source, size_t len, const char *name, ts_jinja_template **out, ts_error *err);
void ts_jinja_free(ts_jinja_template *tpl);

/* Renders with the variables of a JSON object (messages, tools, add_generation_prompt, bos_token, ...).
 * limits may be NULL for the defaults. *out is a NUL-terminated heap string. */
int ts_jinja_render(const ts_jinja_template *tpl, const json_t *variables, const ts_jinja_limits *limits, char **out,
                    size_t *out_len, ts_error *err);

#endif
