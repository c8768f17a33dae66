/* Fuzz target: tokenizer.json (optionally followed by a line "\n--- tokenizer_config.json ---\n" and
 * tokenizer_config.json text) through ts_tokenizer_load_json. When it loads: fixed texts and a slice of
 * the input are encoded and decoded back, input bytes are decoded as ids (also through the streaming
 * detokenizer), and the same definition goes through the vocabulary spec and ts_tokenizer_from_spec,
 * the path GGUF vocabularies take. */
/* fuzz-max-len: 262144 */
/* fuzz-dict: json.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static const char CONFIG_SEPARATOR[] = "\n--- tokenizer_config.json ---\n";

static const char *const TEXTS[] = {
    "Hello, world! It's 2024: 12345 tokens.\n\n  indented\tline  ",
    "<|im_start|>user\nÇa va? 日本語のテキスト 🎉<|im_end|>\n<think>\n</think>",
    "<|endoftext|><s></s> don't WE'LL i'm\r\n\u00a0\u3000x",
    "",
};

static void check_roundtrip(const ts_tokenizer *tok, const char *text, size_t len) {
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        ts_error err = {{0}};
        int rc = ts_tokenizer_encode(tok, text, len, special, &ids, &n, &err);
        fuzz_check("ts_tokenizer_encode", rc, &err);
        if (rc != 0) continue;
        int32_t vocab = ts_tokenizer_vocab_size(tok);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) abort();
        char *out = NULL;
        size_t out_len = 0;
        rc = ts_tokenizer_decode(tok, ids, n, 0, &out, &out_len, &err);
        fuzz_check("ts_tokenizer_decode", rc, &err);
        if (rc == 0) {
            if (strlen(out) > out_len) abort();
            free(out);
        }
        free(ids);
    }
}

static void decode_input_ids(const ts_tokenizer *tok, const uint8_t *data, size_t size) {
    int32_t ids[64];
    size_t n = 0;
    for (size_t i = 0; i + 2 <= size && n < 64; i += 2) ids[n++] = (int32_t)(((uint32_t)data[i] << 8) | data[i + 1]) - 64;
    char *text = NULL;
    size_t len = 0;
    ts_error err = {{0}};
    if (ts_tokenizer_decode(tok, ids, n, 1, &text, &len, &err) == 0) free(text);
    ts_detok_stream st;
    ts_detok_stream_init(&st, 0);
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        size_t plen;
        (void)ts_detok_stream_push(&st, tok, ids[i], &piece, &plen, &err);
        (void)ts_tokenizer_token_piece(tok, ids[i], &plen);
        const uint8_t *bytes;
        (void)ts_tokenizer_token_bytes(tok, ids[i], &bytes, &plen);
        (void)ts_tokenizer_is_special(tok, ids[i]);
    }
    const char *piece;
    size_t plen;
    (void)ts_detok_stream_finish(&st, &piece, &plen, &err);
    ts_detok_stream_free(&st);
}

static void exercise(const ts_tokenizer *tok, const uint8_t *data, size_t size) {
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) check_roundtrip(tok, TEXTS[i], strlen(TEXTS[i]));
    size_t slice = size < 256 ? size : 256;
    check_roundtrip(tok, (const char *)data + size - slice, slice);
    decode_input_ids(tok, data, size);
    const char *names[] = {ts_tokenizer_bos_token(tok), ts_tokenizer_eos_token(tok)};
    for (int i = 0; i < 2; i++)
        if (names[i]) (void)ts_tokenizer_token_id(tok, names[i]);
    (void)ts_tokenizer_bos_id(tok);
    (void)ts_tokenizer_eos_id(tok);
    (void)ts_tokenizer_pad_id(tok);
    (void)ts_tokenizer_add_bos(tok);
    ts_chat_template *tpl = NULL;
    ts_error err = {{0}};
    if (ts_chat_template_from_tokenizer(tok, &tpl, &err) == 0) ts_chat_template_free(tpl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    const char *text = (const char *)data;
    size_t json_len = size;
    const char *config = NULL;
    size_t config_len = 0;
    const char *sep = memmem(text, size, CONFIG_SEPARATOR, sizeof CONFIG_SEPARATOR - 1);
    if (sep) {
        json_len = (size_t)(sep - text);
        config = sep + sizeof CONFIG_SEPARATOR - 1;
        config_len = size - json_len - (sizeof CONFIG_SEPARATOR - 1);
    }
    ts_tokenizer *tok = NULL;
    ts_error err = {{0}};
    int rc = ts_tokenizer_load_json(text, json_len, config, config_len, "fuzz/tokenizer.json", &tok, &err);
    fuzz_check("ts_tokenizer_load_json", rc, &err);
    if (rc != 0) {
        if (tok) abort();
        return 0;
    }
    exercise(tok, data, size);
    ts_tokenizer_free(tok);

    ts_vocab_spec spec;
    ts_error_clear(&err);
    rc = ts_tokenizer_json_buffer_to_spec(text, json_len, config, config_len, "fuzz/tokenizer.json", &spec, &err);
    fuzz_check("ts_tokenizer_json_buffer_to_spec", rc, &err);
    if (rc == 0) {
        ts_error_clear(&err);
        rc = ts_tokenizer_from_spec(&spec, &tok, &err);
        fuzz_check("ts_tokenizer_from_spec", rc, &err);
        if (rc == 0) {
            exercise(tok, data, size);
            ts_tokenizer_free(tok);
        }
        ts_vocab_spec_free(&spec);
    }
    return 0;
}
