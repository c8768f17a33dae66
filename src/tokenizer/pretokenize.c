/* Hand-written matchers for the byte-level BPE split patterns (see pretokenize.h). Each matcher tries the
 * pattern's alternatives in order at one position, as a backtracking regex engine does, and returns the
 * end of the first alternative that matches. */
#include "tokenizer/pretokenize.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode_text.h"

static const char k_qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const char *ts_pretok_pattern(ts_pretok_kind kind) {
    switch (kind) {
    case TS_PRETOK_QWEN2: return k_qwen2_pattern;
    case TS_PRETOK_LLAMA3: return k_llama3_pattern;
    case TS_PRETOK_GPT2: return k_gpt2_pattern;
    default: return NULL;
    }
}

int ts_pretok_from_pattern(const char *pattern, ts_pretok_kind *out, ts_error *err) {
    if (!strcmp(pattern, k_qwen2_pattern)) *out = TS_PRETOK_QWEN2;
    else if (!strcmp(pattern, k_llama3_pattern)) *out = TS_PRETOK_LLAMA3;
    else if (!strcmp(pattern, k_gpt2_pattern)) *out = TS_PRETOK_GPT2;
    else
        return ts_fail(err, "unsupported pre-tokenizer split pattern \"%.300s\": tessera implements the Qwen2, "
                            "Llama-3 and GPT-2 patterns", pattern);
    return 0;
}

void ts_pretok_scratch_free(ts_pretok_scratch *s) {
    free(s->cls);
    free(s->off);
    memset(s, 0, sizeof *s);
}

static int scratch_reserve(ts_pretok_scratch *s, size_t n) {
    if (n + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n + 1) cap *= 2;
    uint8_t *cls = realloc(s->cls, cap);
    if (!cls) return -1;
    s->cls = cls;
    size_t *off = realloc(s->off, cap * sizeof *off);
    if (!off) return -1;
    s->off = off;
    s->cap = cap;
    return 0;
}

/* Decodes text into per-code-point classes and offsets; returns the code point count or -1. */
static ptrdiff_t classify(const char *text, size_t len, ts_pretok_scratch *s) {
    if (scratch_reserve(s, len)) return -1;
    const uint8_t *p = (const uint8_t *)text;
    size_t i = 0, n = 0;
    while (i < len) {
        s->off[n] = i;
        if (p[i] < 0x80) {
            s->cls[n++] = (uint8_t)ts_uni_class(p[i]);
            i++;
        } else {
            int32_t cp;
            i += (size_t)ts_utf8_decode_valid(p + i, &cp);
            s->cls[n++] = (uint8_t)ts_uni_class(cp);
        }
    }
    s->off[n] = len;
    return (ptrdiff_t)n;
}

#define IS_L(c) ((c) & TS_UNI_LETTER)
#define IS_N(c) ((c) & TS_UNI_NUMBER)
#define IS_S(c) ((c) & TS_UNI_SPACE)
#define IS_NL(c) ((c) & TS_UNI_NEWLINE)
#define IS_OTHER(c) (!((c) & (TS_UNI_LETTER | TS_UNI_NUMBER | TS_UNI_SPACE)))

static inline int lower_ascii(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i; returns the match length in code points (0 for none). */
static size_t match_contraction(const char *text, const ts_pretok_scratch *s, size_t i, size_t n, int fold) {
    if (text[s->off[i]] != '\'' || i + 1 >= n) return 0;
    int c1 = (unsigned char)text[s->off[i + 1]];
    if (s->off[i + 2] - s->off[i + 1] != 1) return 0; /* only ASCII letters follow */
    if (fold) c1 = lower_ascii(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (i + 2 >= n || s->off[i + 3] - s->off[i + 2] != 1) return 0;
    int c2 = (unsigned char)text[s->off[i + 2]];
    if (fold) c2 = lower_ascii(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

/* End (exclusive) of the whitespace run that starts at i. */
static inline size_t space_run_end(const uint8_t *cls, size_t i, size_t n) {
    while (i < n && IS_S(cls[i])) i++;
    return i;
}

/* \s+(?!\S) followed by \s+: the whole run at the end of the text, else the run minus its last
 * character (backtracking until the lookahead sees whitespace), else the single character. */
static inline size_t match_space_tail(size_t i, size_t run_end, size_t n) {
    if (run_end == n) return run_end;
    if (run_end - i >= 2) return run_end - 1;
    return run_end;
}

static size_t match_qwen2_like(const char *text, const ts_pretok_scratch *s, size_t i, size_t n,
                               size_t max_digits) {
    const uint8_t *cls = s->cls;
    size_t m = match_contraction(text, s, i, n, 1);
    if (m) return i + m;
    uint8_t c = cls[i];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    size_t j = i;
    if (!(c & (TS_UNI_LETTER | TS_UNI_NUMBER | TS_UNI_NEWLINE)) && i + 1 < n && IS_L(cls[i + 1])) j = i + 1;
    if (IS_L(cls[j])) {
        while (j < n && IS_L(cls[j])) j++;
        return j;
    }
    /* \p{N} or \p{N}{1,3} */
    if (IS_N(c)) {
        j = i;
        while (j < n && j - i < max_digits && IS_N(cls[j])) j++;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = i;
    if (text[s->off[i]] == ' ' && i + 1 < n && IS_OTHER(cls[i + 1])) j = i + 1;
    if (IS_OTHER(cls[j])) {
        while (j < n && IS_OTHER(cls[j])) j++;
        while (j < n && IS_NL(cls[j])) j++;
        return j;
    }
    /* the rest starts with whitespace */
    size_t run_end = space_run_end(cls, i, n);
    /* \s*[\r\n]+ : ends after the last newline of the run */
    for (size_t k = run_end; k > i; k--)
        if (IS_NL(cls[k - 1])) return k;
    return match_space_tail(i, run_end, n);
}

static size_t match_gpt2(const char *text, const ts_pretok_scratch *s, size_t i, size_t n) {
    const uint8_t *cls = s->cls;
    size_t m = match_contraction(text, s, i, n, 0);
    if (m) return i + m;
    size_t j = i;
    int space = text[s->off[i]] == ' ' && i + 1 < n;
    /*  ?\p{L}+ */
    if (space && IS_L(cls[i + 1])) j = i + 1;
    if (IS_L(cls[j])) {
        while (j < n && IS_L(cls[j])) j++;
        return j;
    }
    /*  ?\p{N}+ */
    j = i;
    if (space && IS_N(cls[i + 1])) j = i + 1;
    if (IS_N(cls[j])) {
        while (j < n && IS_N(cls[j])) j++;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+ */
    j = i;
    if (space && IS_OTHER(cls[i + 1])) j = i + 1;
    if (IS_OTHER(cls[j])) {
        while (j < n && IS_OTHER(cls[j])) j++;
        return j;
    }
    return match_space_tail(i, space_run_end(cls, i, n), n);
}

/* Digits: each numeric character its own piece, or runs of them, with the text between kept whole. */
static size_t match_digits(const ts_pretok_scratch *s, size_t i, size_t n, int individual) {
    const uint8_t *cls = s->cls;
    size_t j = i;
    if (IS_N(cls[i])) {
        if (individual) return i + 1;
        while (j < n && IS_N(cls[j])) j++;
        return j;
    }
    while (j < n && !IS_N(cls[j])) j++;
    return j;
}

int ts_pretok_split(ts_pretok_kind kind, const char *text, size_t len, ts_pretok_scratch *scratch,
                    ts_pretok_emit emit, void *ctx) {
    if (len == 0) return 0;
    ptrdiff_t count = classify(text, len, scratch);
    if (count < 0) return -1;
    size_t n = (size_t)count, i = 0;
    while (i < n) {
        size_t end;
        switch (kind) {
        case TS_PRETOK_QWEN2: end = match_qwen2_like(text, scratch, i, n, 1); break;
        case TS_PRETOK_LLAMA3: end = match_qwen2_like(text, scratch, i, n, 3); break;
        case TS_PRETOK_GPT2: end = match_gpt2(text, scratch, i, n); break;
        case TS_PRETOK_DIGITS_INDIVIDUAL: end = match_digits(scratch, i, n, 1); break;
        default: end = match_digits(scratch, i, n, 0); break;
        }
        int rc = emit(ctx, scratch->off[i], scratch->off[end]);
        if (rc) return rc;
        i = end;
    }
    return 0;
}
