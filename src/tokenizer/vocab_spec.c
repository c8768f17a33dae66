#include "tokenizer/vocab_spec.h"

#include <stdlib.h>
#include <string.h>

void ts_vocab_spec_init(ts_vocab_spec *s) {
    memset(s, 0, sizeof *s);
    s->bos_id = s->eos_id = s->pad_id = s->unk_id = -1;
}

void ts_vocab_spec_free(ts_vocab_spec *s) {
    for (int32_t i = 0; s->tokens && i < s->n_tokens; i++) free(s->tokens[i]);
    for (int32_t i = 0; s->merges && i < s->n_merges; i++) free(s->merges[i]);
    free(s->tokens);
    free(s->token_types);
    free(s->merges);
    free(s->chat_template);
    ts_vocab_spec_init(s);
}
