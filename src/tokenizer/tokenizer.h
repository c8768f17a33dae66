/* The text <-> token ids interface: a byte-level BPE tokenizer exact to Hugging Face `tokenizers` for the
 * Qwen2/Qwen3, GPT-2 and Llama-3/SmolLM configurations, loaded from tokenizer.json (or vocab.json +
 * merges.txt) or from a ts_vocab_spec (GGUF metadata). A loaded tokenizer is immutable: any number of
 * threads may encode and decode with it at once; per-sequence streaming state lives in ts_detok_stream.
 *
 * Text handling decisions:
 * - Input to encode must be valid UTF-8 (Hugging Face only accepts str); invalid input is rejected with
 *   an error naming the byte offset, never guessed at.
 * - Decoding concatenates token bytes and replaces each maximal invalid UTF-8 subpart by U+FFFD, which
 *   is what Hugging Face's ByteLevel decoder (String::from_utf8_lossy) does.
 * - With parse_special = 0, special tokens (<|im_start|>, <|endoftext|>) written in the text are encoded
 *   as plain text, like transformers' split_special_tokens=True; added tokens that are not special
 *   (Qwen3's <think>) are still matched, as Hugging Face does. No BOS/EOS is added by encode.
 * - NFC and the character classes come from utf8proc's Unicode tables (15.0 on Debian 12). Hugging Face's
 *   NFC uses older tables: marks added in recent Unicode versions (U+1ABF, U+1ACC ...) it leaves
 *   unordered where we apply their canonical combining class, so such rare text can tokenize differently. */
#ifndef TS_TOKENIZER_TOKENIZER_H
#define TS_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "tokenizer/vocab_spec.h"

typedef struct ts_tokenizer ts_tokenizer;

/* Loads model_dir/tokenizer.json (or vocab.json + merges.txt) and tokenizer_config.json when present
 * (special token names, chat template). */
int ts_tokenizer_load_dir(const char *model_dir, ts_tokenizer **out, ts_error *err);
/* Loads from the text of a tokenizer.json; config_json (tokenizer_config.json text) may be NULL. */
int ts_tokenizer_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                           const char *source, ts_tokenizer **out, ts_error *err);
/* Builds from plain vocabulary data (GGUF tokenizer.ggml.*); CONTROL and USER_DEFINED tokens become
 * added tokens, spec->pre chooses the pre-tokenizer ("qwen2", "gpt-2", "llama-bpe", "smollm", "default"). */
int ts_tokenizer_from_spec(const ts_vocab_spec *spec, ts_tokenizer **out, ts_error *err);
/* Converts a model directory's tokenizer.json (+ tokenizer_config.json, chat_template.jinja) to a spec,
 * e.g. to write it into a GGUF file. */
int ts_tokenizer_json_to_spec(const char *model_dir, ts_vocab_spec *out, ts_error *err);
int ts_tokenizer_json_buffer_to_spec(const char *json, size_t len, const char *config_json, size_t config_len,
                                     const char *source, ts_vocab_spec *out, ts_error *err);
void ts_tokenizer_free(ts_tokenizer *tok);

/* Encodes text; *ids is a heap array the caller frees (NULL with *n = 0 for empty text). */
int ts_tokenizer_encode(const ts_tokenizer *tok, const char *text, size_t len, int parse_special, int32_t **ids,
                        size_t *n, ts_error *err);
/* Decodes ids to NUL-terminated UTF-8 (heap, caller frees). skip_special drops special tokens. */
int ts_tokenizer_decode(const ts_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, char **text,
                        size_t *len, ts_error *err);

int32_t ts_tokenizer_vocab_size(const ts_tokenizer *tok);
/* The token's string as the vocabulary spells it (byte-level characters, "Ġhello"); NULL for a bad id. */
const char *ts_tokenizer_token_piece(const ts_tokenizer *tok, int32_t id, size_t *len);
/* The raw bytes the token stands for (may be part of a UTF-8 character); -1 for a bad id. */
int ts_tokenizer_token_bytes(const ts_tokenizer *tok, int32_t id, const uint8_t **bytes, size_t *len);
/* Id of a token by its vocabulary spelling (added tokens included), or -1. */
int32_t ts_tokenizer_token_id(const ts_tokenizer *tok, const char *piece);
int ts_tokenizer_is_special(const ts_tokenizer *tok, int32_t id);

/* Special tokens named by tokenizer_config.json (or the spec); -1 / NULL when absent. */
int32_t ts_tokenizer_bos_id(const ts_tokenizer *tok);
int32_t ts_tokenizer_eos_id(const ts_tokenizer *tok);
int32_t ts_tokenizer_pad_id(const ts_tokenizer *tok);
const char *ts_tokenizer_bos_token(const ts_tokenizer *tok);
const char *ts_tokenizer_eos_token(const ts_tokenizer *tok);
/* Whether the model expects a BOS token before a prompt (Llama-3 style); callers prepend it. */
int ts_tokenizer_add_bos(const ts_tokenizer *tok);
/* The chat template found with the tokenizer (tokenizer_config.json or the spec), or NULL. */
const char *ts_tokenizer_chat_template(const ts_tokenizer *tok);

/* Streaming detokenizer for one sequence: text comes out only in whole UTF-8 characters; bytes of a
 * character split across tokens wait for the rest; an invalid sequence becomes U+FFFD as soon as it is
 * known to be invalid, so that the streamed text equals ts_tokenizer_decode of all the ids. */
typedef struct ts_detok_stream {
    uint8_t pending[4];
    size_t n_pending;
    int skip_special;
    char *buf;
    size_t buf_cap;
} ts_detok_stream;

void ts_detok_stream_init(ts_detok_stream *st, int skip_special);
/* Pushes one id; *text (valid until the next call) receives the text that is now complete. */
int ts_detok_stream_push(ts_detok_stream *st, const ts_tokenizer *tok, int32_t id, const char **text, size_t *len,
                         ts_error *err);
/* Flushes an unfinished character as U+FFFD. */
int ts_detok_stream_finish(ts_detok_stream *st, const char **text, size_t *len, ts_error *err);
void ts_detok_stream_free(ts_detok_stream *st);

#endif
