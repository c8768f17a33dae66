/* Reading Hugging Face's tokenizer_config.json: the fields that more than one loader needs. */
#ifndef TS_TOKENIZER_TOKENIZER_CONFIG_H
#define TS_TOKENIZER_TOKENIZER_CONFIG_H

#include <jansson.h>

/* A special token's text as tokenizer_config.json writes it: a string, or an object whose "content" is
 * the string (an AddedToken); NULL for anything else. */
const char *ts_tokenizer_config_token(const json_t *v);

/* The chat template text of a parsed tokenizer_config.json: "chat_template" as a string, or from a list
 * of named templates the one named "default", else the first; NULL when there is none. The text belongs
 * to cfg. */
const char *ts_tokenizer_config_chat_template(const json_t *cfg);

#endif
