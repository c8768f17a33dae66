/* Property test: for thousands of seeded random strings (all Unicode planes, combining marks, emoji ZWJ
 * sequences, whitespace runs, CRLF), decode(encode(s)) == NFC(s) with the Qwen3 tokenizer (NFC
 * normalizer) and == s with GPT-2's (no normalizer). NFC here comes from utf8proc directly, which also
 * checks the tokenizer's shortcut for text that needs no normalization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <utf8proc.h>

#include "support/testlib.h"
#include "tokenizer/tokenizer.h"

#define N_STRINGS 3000

static size_t put(char *buf, size_t pos, int32_t cp) {
    return pos + (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)buf + pos);
}

static int32_t random_code_point(uint64_t *rng) {
    for (;;) {
        uint64_t r = ts_test_rand(rng);
        int32_t cp;
        switch (r % 4) {
        case 0: cp = (int32_t)(r >> 8) % 0x80; break;
        case 1: cp = (int32_t)(r >> 8) % 0x10000; break;
        case 2: cp = (int32_t)(r >> 8) % 0x30000; break;
        default: cp = (int32_t)(r >> 8) % 0x110000; break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        return cp;
    }
}

static size_t random_string(uint64_t *rng, char *buf) {
    static const int32_t spaces[] = {' ', '\t', '\n', '\r', 0xA0, 0x3000, 0x2003, 0x85, 0x200B, 0x2028};
    static const int32_t emoji[] = {0x1F468, 0x1F469, 0x1F467, 0x1F44D, 0x2764, 0x1F3FD, 0x1F1EB, 0x1F1F7};
    size_t pos = 0;
    int parts = 1 + (int)(ts_test_rand(rng) % 10);
    for (int p = 0; p < parts; p++) {
        uint64_t r = ts_test_rand(rng);
        int len = 1 + (int)((r >> 8) % 6);
        switch (r % 7) {
        case 0: /* whitespace run */
            for (int i = 0; i < len; i++) pos = put(buf, pos, spaces[ts_test_rand(rng) % 10]);
            break;
        case 1: pos = put(buf, pos, '\r'); pos = put(buf, pos, '\n'); break;
        case 2: /* letters with combining marks, composed and not */
            for (int i = 0; i < len; i++) {
                pos = put(buf, pos, (int32_t)("aeiouAEIOUnc"[ts_test_rand(rng) % 12]));
                pos = put(buf, pos, 0x300 + (int32_t)(ts_test_rand(rng) % 0x70));
            }
            break;
        case 3: /* emoji ZWJ sequence with variation selector */
            for (int i = 0; i < len; i++) {
                if (i) pos = put(buf, pos, 0x200D);
                pos = put(buf, pos, emoji[ts_test_rand(rng) % 8]);
                if (ts_test_rand(rng) % 3 == 0) pos = put(buf, pos, 0xFE0F);
            }
            break;
        case 4: /* Hangul jamo that compose, and syllables */
            pos = put(buf, pos, 0x1100 + (int32_t)(ts_test_rand(rng) % 19));
            pos = put(buf, pos, 0x1161 + (int32_t)(ts_test_rand(rng) % 21));
            pos = put(buf, pos, 0xAC00 + (int32_t)(ts_test_rand(rng) % 11172));
            pos = put(buf, pos, 0x11A8 + (int32_t)(ts_test_rand(rng) % 27));
            break;
        default:
            for (int i = 0; i < len; i++) pos = put(buf, pos, random_code_point(rng));
            break;
        }
    }
    buf[pos] = '\0';
    return pos;
}

static void run(const char *rel, int nfc, uint64_t seed) {
    char path[1024];
    ts_tokenizer *tok = NULL;
    ts_error err = {{0}};
    if (ts_tokenizer_load_dir(ts_test_shared_path(rel, path, sizeof path), &tok, &err)) fail_msg("%s", err.message);
    uint64_t rng = seed;
    char buf[1024];
    int normalized_differs = 0;
    for (int k = 0; k < N_STRINGS; k++) {
        size_t len = random_string(&rng, buf);
        const char *want = buf;
        size_t want_len = len;
        utf8proc_uint8_t *norm = NULL;
        if (nfc) {
            utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)buf, (utf8proc_ssize_t)len, &norm,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            assert_true(n >= 0);
            want = (const char *)norm;
            want_len = (size_t)n;
            normalized_differs += want_len != len || memcmp(want, buf, len);
        }
        int32_t *ids;
        size_t n;
        if (ts_tokenizer_encode(tok, buf, len, 0, &ids, &n, &err)) fail_msg("string %d: %s", k, err.message);
        char *back;
        size_t back_len;
        assert_int_equal(ts_tokenizer_decode(tok, ids, n, 0, &back, &back_len, &err), 0);
        if (back_len != want_len || memcmp(back, want, want_len))
            fail_msg("%s string %d: decode(encode(s)) differs from %s(s)", rel, k, nfc ? "NFC" : "");
        free(back);
        free(ids);
        free(norm);
    }
    if (nfc) assert_true(normalized_differs > N_STRINGS / 20); /* the generator does exercise NFC */
    ts_tokenizer_free(tok);
}

static void test_qwen3_roundtrip_is_nfc(void **state) {
    (void)state;
    run("testdata/qwen3-tiny-tok", 1, 0x5eed0001);
}

static void test_gpt2_roundtrip_is_identity(void **state) {
    (void)state;
    run("testdata/dialogpt-tiny", 0, 0x5eed0002);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_roundtrip_is_nfc),
        cmocka_unit_test(test_gpt2_roundtrip_is_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
