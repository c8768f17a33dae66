/* From a request's prompt to token ids: text through the model's tokenizer (special tokens written in
 * the text are recognised, as Hugging Face does by default, and a BOS token is prepended when the
 * tokenizer asks for one), token-id lists checked against the vocabulary, and chats rendered with the
 * model's chat template first. Errors name the request field. */
#ifndef TS_SERVER_PROMPT_H
#define TS_SERVER_PROMPT_H

#include <jansson.h>
#include <stdint.h>

#include "server/api_error.h"
#include "server/registry.h"

/* *ids is a heap array (caller frees). */
int ts_prompt_encode_text(const ts_served_model *m, const char *text, size_t len, int32_t **ids, int *n,
                          ts_api_error *e);
/* A JSON array of token ids; `name` is the field for errors. */
int ts_prompt_ids(const ts_served_model *m, const json_t *arr, const char *name, int32_t **ids, int *n,
                  ts_api_error *e);
/* Renders body.messages (with body.tools, body.chat_template_kwargs, body.enable_thinking) and
 * encodes the result. *rendered (may be NULL) receives the prompt text (caller frees). */
int ts_prompt_chat(const ts_served_model *m, const json_t *body, int32_t **ids, int *n, char **rendered,
                   ts_api_error *e);
/* The text of ids (special tokens skipped), for echo and for log-probability token strings. */
char *ts_prompt_decode(const ts_served_model *m, const int32_t *ids, int n, int skip_special);

#endif
