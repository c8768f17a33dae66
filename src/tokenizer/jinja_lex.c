/* Jinja lexer: template text, {{ }}, {% %} and {# #} with the whitespace rules transformers renders
 * with: "-" strips all whitespace on that side, "+" disables the block rules, trim_blocks removes the
 * newline after a block or comment tag, lstrip_blocks removes spaces and tabs before one when they are
 * all that precedes it on its line. Newlines are normalised to \n and one trailing newline of the
 * template is dropped, as Jinja does. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"
#include "tokenizer/unicode_text.h"

typedef struct lexer {
    const char *src; /* normalised source */
    size_t len, pos;
    uint32_t line, col;
    jj_arena *a;
    jj_fail *f;
    jj_token *toks;
    size_t n, cap;
} lexer;

static void advance_to(lexer *L, size_t pos) {
    for (; L->pos < pos; L->pos++) {
        if (L->src[L->pos] == '\n') { L->line++; L->col = 1; }
        else if (((unsigned char)L->src[L->pos] & 0xC0) != 0x80) L->col++;
    }
}

static jj_token *push(lexer *L, int kind, uint32_t line, uint32_t col) {
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jj_token *t = jj_alloc(L->a, L->f, cap * sizeof *t);
        if (L->n) memcpy(t, L->toks, L->n * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    jj_token *t = &L->toks[L->n++];
    memset(t, 0, sizeof *t);
    t->kind = (uint8_t)kind;
    t->line = line;
    t->col = col;
    return t;
}

/* Python's str.isspace for the whitespace "-" strips. */
static size_t space_len_at(const char *s, size_t len, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) return (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F)) ? 1 : 0;
    int32_t cp;
    int n = ts_utf8_sequence_length((const uint8_t *)s + i, len - i, NULL);
    if (n <= 0) return 0;
    ts_utf8_decode_valid((const uint8_t *)s + i, &cp);
    return (ts_uni_class(cp) & TS_UNI_SPACE) ? (size_t)n : 0;
}

static size_t rstrip_len(const char *s, size_t len) {
    for (;;) {
        size_t i = len;
        if (!i) return 0;
        do i--; while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
        if (space_len_at(s, len, i) != len - i) return len;
        len = i;
    }
}

static void emit_data(lexer *L, const char *s, size_t n, uint32_t line, uint32_t col) {
    if (!n) return;
    jj_token *t = push(L, JT_DATA, line, col);
    t->s = s;
    t->len = n;
}

static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal with Python's escapes; returns the position after the closing quote. */
static size_t lex_string(lexer *L, size_t p, uint32_t line, uint32_t col) {
    char q = L->src[p++];
    char *out = jj_alloc(L->a, L->f, L->len - p + 1);
    size_t o = 0;
    for (;;) {
        if (p >= L->len) jj_raise(L->f, line, col, "unterminated string literal");
        char c = L->src[p];
        if (c == q) { p++; break; }
        if (c != '\\') { out[o++] = c; p++; continue; }
        if (p + 1 >= L->len) jj_raise(L->f, line, col, "unterminated string literal");
        char e = L->src[p + 1];
        p += 2;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case '0': out[o++] = '\0'; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0; /* eight hex digits fill 32 bits: unsigned, so \UFFFFFFFF cannot overflow */
            for (int k = 0; k < digits; k++) {
                int h = p < L->len ? hexval(L->src[p]) : -1;
                if (h < 0) jj_raise(L->f, line, col, "bad \\%c escape in string literal", e);
                cp = cp * 16 + (uint32_t)h;
                p++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                jj_raise(L->f, line, col, "escape \\%c%X is not a Unicode scalar value", e, (unsigned)cp);
            o += (size_t)ts_utf8_encode((int32_t)cp, out + o);
            break;
        }
        default: /* unknown escapes stay as written, as in Python */
            out[o++] = '\\';
            out[o++] = e;
            break;
        }
    }
    out[o] = '\0';
    jj_token *t = push(L, JT_STRING, line, col);
    t->s = out;
    t->len = o;
    return p;
}

static const char *const k_ops2[] = {"//", "**", "==", "!=", "<=", ">="};
static const char k_ops1[] = "+-*/%~[](){}<>=.:|,";

/* Tokens of one {{ }} or {% %} tag; returns the position after the closing delimiter. */
static size_t lex_tag(lexer *L, size_t p, int is_block, uint32_t tag_line, uint32_t tag_col) {
    int depth = 0;
    for (;;) {
        while (p < L->len && space_len_at(L->src, L->len, p)) p += space_len_at(L->src, L->len, p);
        advance_to(L, p);
        uint32_t line = L->line, col = L->col;
        if (p >= L->len)
            jj_raise(L->f, tag_line, tag_col, "unclosed %s tag", is_block ? "{%" : "{{");
        const char *s = L->src + p;
        size_t rest = L->len - p;
        char close = is_block ? '%' : '}';
        if (depth == 0) {
            int strip = 0, plus = 0;
            size_t k = 0;
            if (s[0] == '-' && rest >= 3 && s[1] == close && s[2] == '}') { strip = 1; k = 1; }
            else if (is_block && s[0] == '+' && rest >= 3 && s[1] == '%' && s[2] == '}') { plus = 1; k = 1; }
            if (rest >= k + 2 && s[k] == close && s[k + 1] == '}') {
                push(L, is_block ? JT_BLOCK_END : JT_VAR_END, line, col);
                p += k + 2;
                if (strip) while (p < L->len && space_len_at(L->src, L->len, p)) p += space_len_at(L->src, L->len, p);
                else if (is_block && !plus && p < L->len && L->src[p] == '\n') p++; /* trim_blocks */
                return p;
            }
        }
        if (is_name_start(s[0])) {
            size_t n = 1;
            while (n < rest && is_name_char(s[n])) n++;
            jj_token *t = push(L, JT_NAME, line, col);
            char *name = jj_alloc(L->a, L->f, n + 1);
            memcpy(name, s, n);
            name[n] = '\0';
            t->s = name;
            t->len = n;
            p += n;
            continue;
        }
        if (s[0] >= '0' && s[0] <= '9') {
            size_t n = 0;
            char num[64];
            size_t o = 0;
            int is_float = 0;
            /* Characters that do not fit in num would silently change the value: such a literal is refused. */
            int too_long = 0;
#define JJ_NUM_APPEND(c) (o < sizeof num - 1 ? (void)(num[o++] = (c)) : (void)(too_long = 1))
            while (n < rest && ((s[n] >= '0' && s[n] <= '9') || s[n] == '_')) {
                if (s[n] != '_') JJ_NUM_APPEND(s[n]);
                n++;
            }
            if (n + 1 < rest && s[n] == '.' && s[n + 1] >= '0' && s[n + 1] <= '9') {
                is_float = 1;
                do {
                    JJ_NUM_APPEND(s[n]);
                    n++;
                } while (n < rest && s[n] >= '0' && s[n] <= '9');
            }
            if (n < rest && (s[n] == 'e' || s[n] == 'E')) {
                size_t m = n + 1;
                if (m < rest && (s[m] == '+' || s[m] == '-')) m++;
                if (m < rest && s[m] >= '0' && s[m] <= '9') {
                    is_float = 1;
                    for (; n < m; n++) JJ_NUM_APPEND(s[n]);
                    for (; n < rest && s[n] >= '0' && s[n] <= '9'; n++) JJ_NUM_APPEND(s[n]);
                }
            }
#undef JJ_NUM_APPEND
            if (too_long) jj_raise(L->f, line, col, "number literal longer than %zu digits", sizeof num - 1);
            num[o] = '\0';
            jj_token *t = push(L, is_float ? JT_FLOAT : JT_INT, line, col);
            if (is_float) t->f = strtod(num, NULL);
            else {
                char *end;
                unsigned long long v = strtoull(num, &end, 10);
                if (o > 18 && v > (unsigned long long)INT64_MAX) jj_raise(L->f, line, col, "integer literal too large");
                t->i = (int64_t)v;
            }
            p += n;
            continue;
        }
        if (s[0] == '\'' || s[0] == '"') {
            p = lex_string(L, p, line, col);
            continue;
        }
        const char *op = NULL;
        size_t oplen = 0;
        for (size_t k = 0; k < sizeof k_ops2 / sizeof k_ops2[0]; k++)
            if (rest >= 2 && s[0] == k_ops2[k][0] && s[1] == k_ops2[k][1]) { op = k_ops2[k]; oplen = 2; break; }
        if (!op && strchr(k_ops1, s[0]) && s[0]) { op = s; oplen = 1; }
        if (!op) {
            char shown[8] = {0};
            size_t n = (size_t)ts_utf8_sequence_length((const uint8_t *)s, rest, NULL);
            memcpy(shown, s, n ? n : 1);
            jj_raise(L->f, line, col, "unexpected character '%s' in a tag", shown);
        }
        if (oplen == 1 && (s[0] == '(' || s[0] == '[' || s[0] == '{')) depth++;
        if (oplen == 1 && (s[0] == ')' || s[0] == ']' || s[0] == '}')) {
            if (depth == 0) jj_raise(L->f, line, col, "unexpected '%c'", s[0]);
            depth--;
        }
        jj_token *t = push(L, JT_OP, line, col);
        char *o = jj_alloc(L->a, L->f, 3);
        memcpy(o, s, oplen);
        o[oplen] = '\0';
        t->s = o;
        t->len = oplen;
        p += oplen;
    }
}

jj_token *jj_lex(const char *src, size_t len, jj_arena *a, jj_fail *f, size_t *n_tokens) {
    if (ts_utf8_validate(src, len, f->err)) jj_raise(f, 0, 0, "template is not valid UTF-8");
    /* \r\n and \r become \n; one trailing newline goes (keep_trailing_newline=False) */
    char *norm = jj_alloc(a, f, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else
            norm[n++] = src[i];
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = '\0';

    lexer L = {norm, n, 0, 1, 1, a, f, NULL, 0, 0};
    int line_starting = 1;
    while (L.pos < L.len) {
        size_t text_start = L.pos;
        uint32_t tline = L.line, tcol = L.col;
        /* the next tag start */
        size_t p = L.pos;
        const char *tag = NULL;
        while (p + 1 < L.len) {
            const char *q = memchr(L.src + p, '{', L.len - p - 1);
            if (!q) break;
            if (q[1] == '{' || q[1] == '%' || q[1] == '#') { tag = q; break; }
            p = (size_t)(q - L.src) + 1;
        }
        if (!tag) {
            emit_data(&L, L.src + text_start, L.len - text_start, tline, tcol);
            break;
        }
        size_t tag_pos = (size_t)(tag - L.src);
        char kind = tag[1];
        char sign = tag_pos + 2 < L.len ? tag[2] : 0;
        size_t text_len = tag_pos - text_start;
        const char *text = L.src + text_start;
        if (sign == '-') {
            text_len = rstrip_len(text, text_len);
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks */
            size_t l_pos = text_len;
            while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
            if (l_pos > 0 || line_starting) {
                int only_space = 1;
                for (size_t i = l_pos; i < text_len && only_space;) {
                    size_t sl = space_len_at(text, text_len, i);
                    if (!sl) only_space = 0;
                    i += sl;
                }
                if (only_space) text_len = l_pos;
            }
        }
        emit_data(&L, text, text_len, tline, tcol);
        advance_to(&L, tag_pos);
        uint32_t line = L.line, col = L.col;
        size_t body = tag_pos + 2 + (sign == '-' || sign == '+');
        if (kind == '#') {
            size_t q = body;
            for (;;) {
                const char *e = q + 1 < L.len ? memchr(L.src + q, '#', L.len - q - 1) : NULL;
                if (!e) jj_raise(f, line, col, "missing end of comment tag");
                q = (size_t)(e - L.src);
                if (L.src[q + 1] == '}') break;
                q++;
            }
            char before = q > body ? L.src[q - 1] : 0;
            size_t after = q + 2;
            if (before == '-') {
                while (after < L.len && space_len_at(L.src, L.len, after)) after += space_len_at(L.src, L.len, after);
            } else if (before != '+' && after < L.len && L.src[after] == '\n')
                after++;
            advance_to(&L, after);
            line_starting = after > 0 && L.src[after - 1] == '\n';
            continue;
        }
        push(&L, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, line, col);
        size_t end = lex_tag(&L, body, kind == '%', line, col);
        advance_to(&L, end);
        line_starting = end > 0 && L.src[end - 1] == '\n';
    }
    push(&L, JT_EOF, L.line, L.col);
    *n_tokens = L.n;
    return L.toks;
}
