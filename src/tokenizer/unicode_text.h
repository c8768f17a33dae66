/* UTF-8 and Unicode helpers for the tokenizer: strict validation, decoding, lossy repair (one U+FFFD
 * per maximal invalid subpart, as Python's errors="replace" and Rust's from_utf8_lossy do), the
 * character classes the pre-tokenizer patterns need (\p{L}, \p{N}, \s), and NFC through utf8proc. */
#ifndef TS_TOKENIZER_UNICODE_TEXT_H
#define TS_TOKENIZER_UNICODE_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

enum {
    TS_UNI_LETTER = 1,  /* \p{L} */
    TS_UNI_NUMBER = 2,  /* \p{N} */
    TS_UNI_SPACE = 4,   /* \s: the Unicode White_Space property */
    TS_UNI_NEWLINE = 8, /* \r or \n */
};

/* Returns the TS_UNI_* bits of a code point. */
unsigned ts_uni_class(int32_t cp);

/* Decodes one code point from valid UTF-8 (the caller has validated it); returns its byte length. */
static inline int ts_utf8_decode_valid(const uint8_t *s, int32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = ((int32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (b < 0xF0) { *cp = ((int32_t)(b & 0x0F) << 12) | ((int32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); return 3; }
    *cp = ((int32_t)(b & 0x07) << 18) | ((int32_t)(s[1] & 0x3F) << 12) | ((int32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes at s start no valid sequence
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). When the bytes are a valid
 * but truncated prefix, *incomplete is set (if non-NULL) and 0 is returned. */
int ts_utf8_sequence_length(const uint8_t *s, size_t avail, int *incomplete);

/* Fails with the byte offset of the first invalid byte. */
int ts_utf8_validate(const char *s, size_t len, ts_error *err);

/* Writes cp as UTF-8 into out (4 bytes room); returns the byte count. */
int ts_utf8_encode(int32_t cp, char *out);

/* Number of code points in valid UTF-8. */
size_t ts_utf8_count(const char *s, size_t len);

/* Lossy decoding: appends s to *out (heap buffer grown as needed) with every maximal invalid subpart
 * replaced by U+FFFD. Returns -1 only when memory runs out. */
int ts_utf8_append_lossy(char **out, size_t *out_len, size_t *out_cap, const uint8_t *s, size_t len);

/* NFC of valid UTF-8. *out is NULL when s is already NFC (the common case, detected without
 * allocating); otherwise a heap string the caller frees. */
int ts_uni_nfc(const char *s, size_t len, char **out, size_t *out_len, ts_error *err);

#endif
