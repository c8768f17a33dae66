/* The tokenizer that belongs to a model path: tokenizer.json in a Hugging Face directory, or the
 * vocabulary a GGUF file carries (tokenizer.ggml.*). */
#ifndef TS_TOKENIZER_MODEL_TOKENIZER_H
#define TS_TOKENIZER_MODEL_TOKENIZER_H

#include "tokenizer/tokenizer.h"

/* vocab: the GGUF vocabulary when the caller already read it (may be NULL: the file is read). */
int ts_tokenizer_for_model(const char *model_path, const ts_vocab_spec *vocab, ts_tokenizer **out, ts_error *err);

#endif
