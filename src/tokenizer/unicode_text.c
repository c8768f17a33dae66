/* UTF-8 validation, lossy repair, character classes and NFC for the tokenizer (see unicode_text.h). */
#include "tokenizer/unicode_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int is_white_space(int32_t cp) {
    /* The Unicode White_Space property, which is what \s means in the Oniguruma patterns HF uses. */
    if (cp >= 0x09 && cp <= 0x0D) return 1;
    switch (cp) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

unsigned ts_uni_class(int32_t cp) {
    unsigned c = 0;
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return TS_UNI_LETTER;
        if (cp >= '0' && cp <= '9') return TS_UNI_NUMBER;
        if (cp == '\r' || cp == '\n') return TS_UNI_SPACE | TS_UNI_NEWLINE;
        if (is_white_space(cp)) return TS_UNI_SPACE;
        return 0;
    }
    if (is_white_space(cp)) c |= TS_UNI_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        c |= TS_UNI_LETTER;
        break;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        c |= TS_UNI_NUMBER;
        break;
    default:
        break;
    }
    return c;
}

int ts_utf8_sequence_length(const uint8_t *s, size_t avail, int *incomplete) {
    if (incomplete) *incomplete = 0;
    if (avail == 0) return 0;
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;       /* overlong */
        else if (b == 0xED) hi = 0x9F;  /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;       /* overlong */
        else if (b == 0xF4) hi = 0x8F;  /* above U+10FFFF */
    } else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= avail) {
            if (incomplete) *incomplete = 1;
            return 0;
        }
        uint8_t c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return 0;
    }
    return need;
}

int ts_utf8_validate(const char *s, size_t len, ts_error *err) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) { i++; continue; }
        int n = ts_utf8_sequence_length(p + i, len - i, NULL);
        if (n == 0)
            return ts_fail(err, "invalid UTF-8 at byte offset %zu (byte 0x%02X): text must be valid UTF-8", i, p[i]);
        i += (size_t)n;
    }
    return 0;
}

int ts_utf8_encode(int32_t cp, char *out) {
    return (int)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
}

size_t ts_utf8_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((uint8_t)s[i] & 0xC0) != 0x80;
    return n;
}

static int append_bytes(char **out, size_t *len, size_t *cap, const void *data, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1) c *= 2;
        char *p = realloc(*out, c);
        if (!p) return -1;
        *out = p;
        *cap = c;
    }
    memcpy(*out + *len, data, n);
    *len += n;
    (*out)[*len] = '\0';
    return 0;
}

int ts_utf8_append_lossy(char **out, size_t *out_len, size_t *out_cap, const uint8_t *s, size_t len) {
    static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, run = 0;
    while (i < len) {
        int incomplete;
        int n = s[i] < 0x80 ? 1 : ts_utf8_sequence_length(s + i, len - i, &incomplete);
        if (n > 0) { i += (size_t)n; continue; }
        if (append_bytes(out, out_len, out_cap, s + run, i - run)) return -1;
        if (append_bytes(out, out_len, out_cap, replacement, 3)) return -1;
        /* A maximal invalid subpart: the lead byte plus the continuation bytes that were still valid. */
        size_t skip = 1;
        uint8_t b = s[i];
        int need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
        if (b >= 0xC2 && b <= 0xF4) {
            uint8_t lo = 0x80, hi = 0xBF;
            if (b == 0xE0) lo = 0xA0;
            else if (b == 0xED) hi = 0x9F;
            else if (b == 0xF0) lo = 0x90;
            else if (b == 0xF4) hi = 0x8F;
            while ((int)skip < need && i + skip < len) {
                uint8_t c = s[i + skip];
                if (skip == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
                skip++;
            }
        }
        i += skip;
        run = i;
    }
    if (append_bytes(out, out_len, out_cap, s + run, len - run)) return -1;
    if (!*out) return append_bytes(out, out_len, out_cap, "", 0);
    return 0;
}

/* NFC works locally: text can be cut before any starter that nothing before it can combine with (a
 * "boundary"), and each part normalized alone. utf8proc marks composition partners in comb_index:
 * below 0x8000 a first, from 0x8000 a second; Hangul jamo compose algorithmically and are unmarked. */
static int is_hangul_vt(int32_t cp) { return (cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2); }

static int nfc_boundary(int32_t cp) {
    if (cp < 0x300) return 1;
    if (is_hangul_vt(cp)) return 0;
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->combining_class == 0 && (p->comb_index == UINT16_MAX || p->comb_index < 0x8000);
}

/* A code point that NFC may change or combine with its neighbours. */
static int nfc_needs_work(int32_t cp) {
    if (cp < 0x300) return 0;
    if (cp >= 0x1100 && cp <= 0x11FF) return 1;
    if (cp >= 0x4E00 && cp <= 0x9FFF) return 0; /* CJK unified ideographs: the common case, kept fast */
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    if (p->combining_class != 0 || p->comp_exclusion) return 1;
    if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) return 1; /* canonical decomposition */
    return p->comb_index != UINT16_MAX && p->comb_index >= 0x8000;
}

static int append_raw(char **out, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1) c *= 2;
        char *p = realloc(*out, c);
        if (!p) return -1;
        *out = p;
        *cap = c;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
    return 0;
}

int ts_uni_nfc(const char *s, size_t len, char **out, size_t *out_len, ts_error *err) {
    *out = NULL;
    *out_len = 0;
    const uint8_t *p = (const uint8_t *)s;
    char *buf = NULL;
    size_t buf_len = 0, buf_cap = 0, copied = 0, last_boundary = 0, i = 0;
    while (i < len) {
        if (p[i] < 0xCC) { /* below U+0300 */
            last_boundary = i;
            i += p[i] < 0x80 ? 1 : 2;
            continue;
        }
        int32_t cp;
        int n = ts_utf8_decode_valid(p + i, &cp);
        if (!nfc_needs_work(cp)) {
            if (nfc_boundary(cp)) last_boundary = i;
            i += (size_t)n;
            continue;
        }
        /* normalize from the last boundary to the next boundary that needs nothing */
        size_t start = last_boundary, end = i + (size_t)n;
        while (end < len) {
            int32_t c2;
            int n2 = ts_utf8_decode_valid(p + end, &c2);
            if (nfc_boundary(c2) && !nfc_needs_work(c2)) break;
            end += (size_t)n2;
        }
        utf8proc_uint8_t *mapped = NULL;
        utf8proc_ssize_t m = utf8proc_map(p + start, (utf8proc_ssize_t)(end - start), &mapped,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (m < 0) {
            free(buf);
            return ts_fail(err, "NFC normalization failed: %s", utf8proc_errmsg(m));
        }
        if ((size_t)m != end - start || memcmp(mapped, p + start, (size_t)m)) {
            if (append_raw(&buf, &buf_len, &buf_cap, s + copied, start - copied) ||
                append_raw(&buf, &buf_len, &buf_cap, (const char *)mapped, (size_t)m)) {
                free(mapped);
                free(buf);
                return ts_fail(err, "out of memory normalizing %zu bytes", len);
            }
            copied = end;
        }
        free(mapped);
        i = last_boundary = end;
    }
    if (!buf) return 0;
    if (append_raw(&buf, &buf_len, &buf_cap, s + copied, len - copied)) {
        free(buf);
        return ts_fail(err, "out of memory normalizing %zu bytes", len);
    }
    *out = buf;
    *out_len = buf_len;
    return 0;
}
