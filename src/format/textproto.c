/* Protocol-buffers text format: lexer, recursive-descent parser into ts_tp_node trees, schema
 * validation and typed value reads. Memory comes from one arena per document, so a tree is freed in
 * one call and allocation is bounded by the input's length. */
#include "format/textproto.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- arena ---- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    /* data follows */
} arena_block;

struct ts_tp_doc {
    arena_block *blocks;
    ts_tp_node root;
    char source[512];
};

#define ARENA_BLOCK 65536

static void *arena_alloc(ts_tp_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = malloc(sizeof(arena_block) + 16 + cap);
        if (!b) return NULL;
        b->next = d->blocks;
        b->used = 0;
        b->cap = cap;
        d->blocks = b;
    }
    char *base = (char *)(b + 1);
    base += (16 - ((uintptr_t)base & 15)) & 15;
    void *p = base + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void ts_tp_free(ts_tp_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

const ts_tp_node *ts_tp_root(const ts_tp_doc *doc) { return &doc->root; }
const char *ts_tp_source(const ts_tp_doc *doc) { return doc->source; }

/* ---- lexer ---- */

typedef enum { TK_END, TK_IDENT, TK_NUMBER, TK_STRING, TK_SYMBOL } tk_type;

typedef struct {
    tk_type type;
    int line, col;
    size_t start, end; /* byte range in the input */
    char sym;
} token;

typedef struct {
    const char *s;
    size_t len, pos;
    int line, col;
    token tok;
    int depth;
    int nodes;
    ts_tp_doc *doc;
    ts_error *err;
} parser;

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident_char(int c) { return isalnum(c) || c == '_'; }

static void advance_char(parser *p) {
    if (p->s[p->pos] == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    p->pos++;
}

static int fail_at(parser *p, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail_at(parser *p, int line, int col, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ts_fail(p->err, "%s:%d:%d: %s", p->doc->source, line, col, msg);
}

/* Writes a printable rendering of bytes (escaping quotes and control bytes), truncated with "...". */
static void render_bytes(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    const size_t limit = 40;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        if (i == limit) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else out[o++] = (char)c;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static void describe_token(const parser *p, const token *t, char *buf, size_t cap) {
    char raw[128];
    switch (t->type) {
    case TK_END: snprintf(buf, cap, "end of input"); return;
    case TK_IDENT:
        render_bytes(p->s + t->start, t->end - t->start, raw, sizeof raw);
        snprintf(buf, cap, "identifier %s", raw);
        return;
    case TK_NUMBER:
        render_bytes(p->s + t->start, t->end - t->start, raw, sizeof raw);
        snprintf(buf, cap, "number %s", raw);
        return;
    case TK_STRING:
        /* the literal as written, without its quotes */
        render_bytes(p->s + t->start + 1, t->end - t->start >= 2 ? t->end - t->start - 2 : 0, raw, sizeof raw);
        snprintf(buf, cap, "string \"%s\"", raw);
        return;
    case TK_SYMBOL: snprintf(buf, cap, "'%c'", t->sym); return;
    }
}

static int skip_space(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
            advance_char(p);
        } else if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n') advance_char(p);
        } else {
            break;
        }
    }
    return 0;
}

/* Reads the next token into p->tok. Strings are only delimited here; decoding happens when the
 * parser builds the value, so that errors inside escapes point at the escape. */
static int next_token(parser *p) {
    skip_space(p);
    token *t = &p->tok;
    t->line = p->line;
    t->col = p->col;
    t->start = p->pos;
    t->sym = 0;
    if (p->pos >= p->len) {
        t->type = TK_END;
        t->end = p->pos;
        return 0;
    }
    unsigned char c = (unsigned char)p->s[p->pos];
    if (is_ident_start(c)) {
        while (p->pos < p->len && is_ident_char((unsigned char)p->s[p->pos])) advance_char(p);
        t->type = TK_IDENT;
    } else if (isdigit(c) || (c == '.' && p->pos + 1 < p->len && isdigit((unsigned char)p->s[p->pos + 1]))) {
        int hex = c == '0' && p->pos + 1 < p->len && (p->s[p->pos + 1] == 'x' || p->s[p->pos + 1] == 'X');
        while (p->pos < p->len) {
            unsigned char d = (unsigned char)p->s[p->pos];
            if (is_ident_char(d) || d == '.') {
                advance_char(p);
            } else if ((d == '+' || d == '-') && !hex && (p->s[p->pos - 1] == 'e' || p->s[p->pos - 1] == 'E')) {
                advance_char(p);
            } else {
                break;
            }
        }
        t->type = TK_NUMBER;
    } else if (c == '"' || c == '\'') {
        advance_char(p);
        for (;;) {
            if (p->pos >= p->len || p->s[p->pos] == '\n')
                return fail_at(p, t->line, t->col, "string is not terminated before the end of the %s",
                               p->pos >= p->len ? "input" : "line");
            char d = p->s[p->pos];
            if (d == '\\') {
                advance_char(p);
                if (p->pos >= p->len || p->s[p->pos] == '\n') continue; /* reported as unterminated */
                advance_char(p);
                continue;
            }
            advance_char(p);
            if ((unsigned char)d == c) break;
        }
        t->type = TK_STRING;
    } else if (strchr("{}<>[]:,;-", c) && c != '\0') {
        advance_char(p);
        t->type = TK_SYMBOL;
        t->sym = (char)c;
    } else {
        if (c >= 0x20 && c < 0x7f) return fail_at(p, t->line, t->col, "unexpected character '%c'", c);
        return fail_at(p, t->line, t->col, "unexpected byte 0x%02x", c);
    }
    t->end = p->pos;
    return 0;
}

static int is_sym(const parser *p, char c) { return p->tok.type == TK_SYMBOL && p->tok.sym == c; }

/* ---- value construction ---- */

static char *arena_strndup(ts_tp_doc *d, const char *s, size_t n) {
    char *r = arena_alloc(d, n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads n hex digits at s[i..]; returns -1 when fewer are there. */
static long read_hex(const char *s, size_t i, size_t end, int n) {
    long v = 0;
    for (int k = 0; k < n; k++) {
        if (i + (size_t)k >= end) return -1;
        int h = hexval((unsigned char)s[i + (size_t)k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes the string token t (quotes included) and appends the bytes to out (capacity checked by the
 * caller: a decoded string is never longer than its literal). Strings never span lines, so a byte's
 * column is the token's column plus its offset. */
static int decode_string(parser *p, const token *t, char *out, size_t *out_len) {
    const char *s = p->s;
    size_t i = t->start + 1, end = t->end - 1, o = *out_len;
    while (i < end) {
        char c = s[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        int col = t->col + (int)(i - t->start);
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = '\v'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case '?': out[o++] = '?'; break;
        case 'x':
        case 'X': {
            int v = 0, n = 0;
            while (n < 2 && i < end && hexval((unsigned char)s[i]) >= 0)
                v = v * 16 + hexval((unsigned char)s[i++]), n++;
            if (n == 0) return fail_at(p, t->line, col, "escape '\\%c' needs one or two hexadecimal digits", e);
            out[o++] = (char)v;
            break;
        }
        case 'u':
        case 'U': {
            int n = e == 'u' ? 4 : 8;
            long cp = read_hex(s, i, end, n);
            if (cp < 0) return fail_at(p, t->line, col, "escape '\\%c' needs exactly %d hexadecimal digits", e, n);
            i += (size_t)n;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = (i + 1 < end && s[i] == '\\' && s[i + 1] == 'u') ? read_hex(s, i + 2, end, 4) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail_at(p, t->line, col, "high surrogate \\u%04lx is not followed by a low surrogate", cp);
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return fail_at(p, t->line, col, "low surrogate \\u%04lx without a high surrogate before it", cp);
            } else if (cp > 0x10ffff) {
                return fail_at(p, t->line, col, "code point \\U%08lx is beyond U+10FFFF", cp);
            }
            o += put_utf8(out + o, (uint32_t)cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', n = 1;
                while (n < 3 && i < end && s[i] >= '0' && s[i] <= '7') v = v * 8 + (s[i++] - '0'), n++;
                if (v > 255) return fail_at(p, t->line, col, "octal escape \\%o is larger than one byte (\\377)", v);
                out[o++] = (char)v;
                break;
            }
            if ((unsigned char)e >= 0x20 && (unsigned char)e < 0x7f)
                return fail_at(p, t->line, col, "invalid escape sequence '\\%c' in string", e);
            return fail_at(p, t->line, col, "invalid escape sequence (backslash before byte 0x%02x) in string",
                           (unsigned char)e);
        }
    }
    *out_len = o;
    return 0;
}

/* Classifies a number literal and computes its value; refuses malformed literals. */
static int classify_number(parser *p, const token *t, ts_tp_node *n) {
    const char *s = p->s + t->start;
    size_t len = t->end - t->start;
    char lit[128];
    render_bytes(s, len, lit, sizeof lit);
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        if (len == 2) return fail_at(p, t->line, t->col, "invalid hexadecimal number %s: no digits after 0x", lit);
        uint64_t v = 0;
        for (size_t i = 2; i < len; i++) {
            int h = hexval((unsigned char)s[i]);
            if (h < 0) return fail_at(p, t->line, t->col, "invalid hexadecimal number %s", lit);
            if (v > (UINT64_MAX >> 4)) n->overflow = 1;
            v = (v << 4) | (uint64_t)h;
        }
        n->magnitude = v;
        n->float_value = (double)v;
        return 0;
    }
    size_t i = 0;
    int digits = 0, dot = 0, exp = 0, suffix = 0;
    while (i < len && isdigit((unsigned char)s[i])) i++, digits++;
    if (i < len && s[i] == '.') {
        dot = 1;
        i++;
        while (i < len && isdigit((unsigned char)s[i])) i++, digits++;
    }
    if (digits == 0) return fail_at(p, t->line, t->col, "invalid number %s", lit);
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        exp = 1;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        int ed = 0;
        while (i < len && isdigit((unsigned char)s[i])) i++, ed++;
        if (ed == 0) return fail_at(p, t->line, t->col, "invalid number %s: the exponent has no digits", lit);
    }
    if (i < len && (s[i] == 'f' || s[i] == 'F')) suffix = 1, i++;
    if (i != len) return fail_at(p, t->line, t->col, "invalid number %s", lit);
    n->is_float = dot || exp || suffix;
    char buf[128];
    size_t m = len - (size_t)suffix;
    if (m >= sizeof buf) return fail_at(p, t->line, t->col, "number %s is too long", lit);
    memcpy(buf, s, m);
    buf[m] = '\0';
    n->float_value = strtod(buf, NULL);
    if (n->is_float) return 0;
    int octal = len > 1 && s[0] == '0';
    uint64_t v = 0;
    for (size_t k = 0; k < len; k++) {
        int d = s[k] - '0';
        if (octal && d > 7)
            return fail_at(p, t->line, t->col, "invalid octal number %s (a leading 0 means octal)", lit);
        uint64_t base = octal ? 8 : 10;
        if (v > (UINT64_MAX - (uint64_t)d) / base) n->overflow = 1;
        v = v * base + (uint64_t)d;
    }
    n->magnitude = v;
    if (octal) n->float_value = (double)v;
    return 0;
}

static ts_tp_node *new_node(parser *p, const char *name, int line, int col) {
    if (++p->nodes > TS_TP_MAX_NODES) {
        fail_at(p, line, col, "more than %d fields and values; this is not a configuration tessera reads",
                TS_TP_MAX_NODES);
        return NULL;
    }
    ts_tp_node *n = arena_alloc(p->doc, sizeof *n);
    if (!n) {
        ts_fail(p->err, "%s: out of memory while parsing", p->doc->source);
        return NULL;
    }
    n->name = name;
    n->line = line;
    n->col = col;
    n->value_line = line;
    n->value_col = col;
    return n;
}

static void append_child(ts_tp_node *parent, ts_tp_node *child) {
    if (parent->last_child) parent->last_child->next = child;
    else parent->first_child = child;
    parent->last_child = child;
    parent->num_children++;
}

static int fail_found(parser *p, const char *expected) {
    char found[160];
    describe_token(p, &p->tok, found, sizeof found);
    return fail_at(p, p->tok.line, p->tok.col, "expected %s, found %s", expected, found);
}

static int is_float_word(const char *s, size_t n) {
    return (n == 3 && !strncasecmp(s, "inf", 3)) || (n == 8 && !strncasecmp(s, "infinity", 8)) ||
           (n == 3 && !strncasecmp(s, "nan", 3));
}

/* Scalar value at the current token: strings (adjacent literals joined), numbers, identifiers, and
 * '-' before a number or inf/nan. */
static int parse_scalar(parser *p, ts_tp_node *n, const char *field) {
    n->value_line = p->tok.line;
    n->value_col = p->tok.col;
    if (p->tok.type == TK_STRING) {
        /* Decoded strings are never longer than their literals, so the total literal length bounds
         * the buffer. */
        size_t total = 0;
        parser save = *p;
        while (p->tok.type == TK_STRING) {
            total += p->tok.end - p->tok.start;
            if (next_token(p) != 0) return -1;
        }
        *p = save;
        char *buf = arena_alloc(p->doc, total * 2 + 1);
        if (!buf) return ts_fail(p->err, "%s: out of memory while parsing", p->doc->source);
        size_t len = 0;
        while (p->tok.type == TK_STRING) {
            if (decode_string(p, &p->tok, buf, &len) != 0) return -1;
            if (next_token(p) != 0) return -1;
        }
        buf[len] = '\0';
        n->kind = TS_TP_STRING;
        n->text = buf;
        n->text_len = len;
        return 0;
    }
    int negative = 0;
    if (is_sym(p, '-')) {
        negative = 1;
        if (next_token(p) != 0) return -1;
        if (p->tok.type != TK_NUMBER &&
            !(p->tok.type == TK_IDENT && is_float_word(p->s + p->tok.start, p->tok.end - p->tok.start)))
            return fail_found(p, "a number after '-'");
    }
    if (p->tok.type == TK_NUMBER || p->tok.type == TK_IDENT) {
        size_t len = p->tok.end - p->tok.start;
        char *text = arena_alloc(p->doc, len + 2);
        if (!text) return ts_fail(p->err, "%s: out of memory while parsing", p->doc->source);
        if (negative) text[0] = '-';
        memcpy(text + negative, p->s + p->tok.start, len);
        n->text = text;
        n->text_len = len + (size_t)negative;
        n->negative = negative;
        if (p->tok.type == TK_NUMBER) {
            n->kind = TS_TP_NUMBER;
            if (classify_number(p, &p->tok, n) != 0) return -1;
            if (negative) n->float_value = -n->float_value;
        } else {
            n->kind = TS_TP_IDENT;
        }
        return next_token(p);
    }
    char what[160];
    snprintf(what, sizeof what, "a value for field \"%s\"", field);
    return fail_found(p, what);
}

static int parse_message_body(parser *p, ts_tp_node *msg, char close, int open_line, int open_col);

static int parse_message_value(parser *p, ts_tp_node *n) {
    char close = p->tok.sym == '{' ? '}' : '>';
    int line = p->tok.line, col = p->tok.col;
    n->kind = TS_TP_MESSAGE;
    n->value_line = line;
    n->value_col = col;
    if (++p->depth > TS_TP_MAX_DEPTH)
        return fail_at(p, line, col, "messages are nested more than %d deep", TS_TP_MAX_DEPTH);
    if (next_token(p) != 0) return -1;
    if (parse_message_body(p, n, close, line, col) != 0) return -1;
    p->depth--;
    return 0;
}

static int parse_list(parser *p, ts_tp_node *list, int has_colon) {
    int open_line = p->tok.line, open_col = p->tok.col;
    list->kind = TS_TP_LIST;
    list->value_line = open_line;
    list->value_col = open_col;
    if (next_token(p) != 0) return -1;
    if (is_sym(p, ']')) return next_token(p);
    for (;;) {
        ts_tp_node *e = new_node(p, list->name, p->tok.line, p->tok.col);
        if (!e) return -1;
        if (is_sym(p, '{') || is_sym(p, '<')) {
            if (parse_message_value(p, e) != 0) return -1;
        } else {
            if (!has_colon)
                return fail_at(p, open_line, open_col,
                               "a list of scalar values for field \"%s\" needs ':' after the field name", list->name);
            if (parse_scalar(p, e, list->name) != 0) return -1;
        }
        append_child(list, e);
        if (is_sym(p, ']')) return next_token(p);
        if (is_sym(p, ',')) {
            if (next_token(p) != 0) return -1;
            if (is_sym(p, ']')) return fail_found(p, "a value after ','");
            continue;
        }
        char what[160];
        snprintf(what, sizeof what, "',' or ']' in the list opened at %d:%d", open_line, open_col);
        return fail_found(p, what);
    }
}

static int parse_field(parser *p, ts_tp_node *msg) {
    if (p->tok.type != TK_IDENT) return fail_found(p, "a field name");
    char *name = arena_strndup(p->doc, p->s + p->tok.start, p->tok.end - p->tok.start);
    if (!name) return ts_fail(p->err, "%s: out of memory while parsing", p->doc->source);
    ts_tp_node *n = new_node(p, name, p->tok.line, p->tok.col);
    if (!n) return -1;
    if (next_token(p) != 0) return -1;
    int has_colon = 0;
    if (is_sym(p, ':')) {
        has_colon = 1;
        if (next_token(p) != 0) return -1;
    }
    if (is_sym(p, '{') || is_sym(p, '<')) {
        if (parse_message_value(p, n) != 0) return -1;
    } else if (is_sym(p, '[')) {
        if (parse_list(p, n, has_colon) != 0) return -1;
    } else if (!has_colon) {
        char what[160];
        snprintf(what, sizeof what, "':' or '{' after field name \"%s\"", name);
        return fail_found(p, what);
    } else if (parse_scalar(p, n, name) != 0) {
        return -1;
    }
    append_child(msg, n);
    if (is_sym(p, ';') || is_sym(p, ',')) return next_token(p);
    return 0;
}

static int parse_message_body(parser *p, ts_tp_node *msg, char close, int open_line, int open_col) {
    for (;;) {
        if (close && is_sym(p, close)) return next_token(p);
        if (p->tok.type == TK_END) {
            if (!close) return 0;
            return fail_at(p, p->tok.line, p->tok.col,
                           "expected '%c' to close the message opened at %d:%d, found end of input", close, open_line,
                           open_col);
        }
        if (is_sym(p, '}') || is_sym(p, '>')) {
            if (!close) return fail_at(p, p->tok.line, p->tok.col, "unexpected '%c': no message is open", p->tok.sym);
            char what[160];
            snprintf(what, sizeof what, "'%c' to close the message opened at %d:%d", close, open_line, open_col);
            return fail_found(p, what);
        }
        if (parse_field(p, msg) != 0) return -1;
    }
}

int ts_tp_parse(const char *text, size_t len, const char *source, ts_tp_doc **out, ts_error *err) {
    *out = NULL;
    ts_tp_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return ts_fail(err, "%s: out of memory", source);
    snprintf(doc->source, sizeof doc->source, "%s", source ? source : "<input>");
    doc->root.kind = TS_TP_MESSAGE;
    doc->root.name = "";
    doc->root.line = doc->root.col = doc->root.value_line = doc->root.value_col = 1;
    parser p = {.s = text, .len = len, .line = 1, .col = 1, .doc = doc, .err = err};
    if (next_token(&p) != 0 || parse_message_body(&p, &doc->root, 0, 1, 1) != 0) {
        ts_tp_free(doc);
        return -1;
    }
    *out = doc;
    return 0;
}

/* ---- reading values ---- */

int ts_tp_each(const ts_tp_node *msg, const char *name, ts_tp_value_fn fn, void *ctx) {
    for (const ts_tp_node *c = msg->first_child; c; c = c->next) {
        if (strcmp(c->name, name) != 0) continue;
        if (c->kind == TS_TP_LIST) {
            for (const ts_tp_node *e = c->first_child; e; e = e->next)
                if (fn(e, ctx) != 0) return -1;
        } else if (fn(c, ctx) != 0) {
            return -1;
        }
    }
    return 0;
}

const ts_tp_node *ts_tp_get(const ts_tp_node *msg, const char *name) {
    const ts_tp_node *found = NULL;
    for (const ts_tp_node *c = msg->first_child; c; c = c->next) {
        if (strcmp(c->name, name) != 0) continue;
        if (c->kind == TS_TP_LIST) {
            if (c->last_child) found = c->last_child;
        } else {
            found = c;
        }
    }
    return found;
}

int ts_tp_count(const ts_tp_node *msg, const char *name) {
    int n = 0;
    for (const ts_tp_node *c = msg->first_child; c; c = c->next)
        if (!strcmp(c->name, name)) n += c->kind == TS_TP_LIST ? c->num_children : 1;
    return n;
}

void ts_tp_describe(const ts_tp_node *v, char *buf, size_t cap) {
    char raw[160];
    switch (v->kind) {
    case TS_TP_MESSAGE: snprintf(buf, cap, "a message"); return;
    case TS_TP_LIST: snprintf(buf, cap, "a list"); return;
    case TS_TP_STRING:
        render_bytes(v->text, v->text_len, raw, sizeof raw);
        snprintf(buf, cap, "string \"%s\"", raw);
        return;
    case TS_TP_NUMBER:
        render_bytes(v->text, v->text_len, raw, sizeof raw);
        snprintf(buf, cap, "number %s", raw);
        return;
    case TS_TP_IDENT:
        render_bytes(v->text, v->text_len, raw, sizeof raw);
        snprintf(buf, cap, "identifier %s", raw);
        return;
    }
}

static int value_fail(const ts_tp_doc *doc, const ts_tp_node *v, ts_error *err, const char *what,
                      const char *expected) {
    char found[200];
    ts_tp_describe(v, found, sizeof found);
    return ts_fail(err, "%s:%d:%d: %s expects %s, found %s", doc->source, v->value_line, v->value_col, what, expected,
                   found);
}

static int int_value(const ts_tp_doc *doc, const ts_tp_node *v, int64_t lo, int64_t hi, int64_t *out, const char *what,
                     ts_error *err) {
    if (v->kind != TS_TP_NUMBER || v->is_float) return value_fail(doc, v, err, what, "an integer");
    int in_range;
    int64_t value = 0;
    if (v->overflow) {
        in_range = 0;
    } else if (v->negative) {
        in_range = v->magnitude <= (uint64_t)INT64_MAX + 1;
        if (in_range) value = v->magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v->magnitude;
    } else {
        in_range = v->magnitude <= (uint64_t)INT64_MAX;
        value = (int64_t)v->magnitude;
    }
    if (!in_range || value < lo || value > hi)
        return ts_fail(err, "%s:%d:%d: %s: %s is out of range (%lld to %lld)", doc->source, v->value_line, v->value_col,
                       what, v->text, (long long)lo, (long long)hi);
    *out = value;
    return 0;
}

static int uint_value(const ts_tp_doc *doc, const ts_tp_node *v, uint64_t hi, uint64_t *out, const char *what,
                      ts_error *err) {
    if (v->kind != TS_TP_NUMBER || v->is_float) return value_fail(doc, v, err, what, "an integer");
    if (v->overflow || (v->negative && v->magnitude != 0) || v->magnitude > hi)
        return ts_fail(err, "%s:%d:%d: %s: %s is out of range (0 to %llu)", doc->source, v->value_line, v->value_col,
                       what, v->text, (unsigned long long)hi);
    *out = v->magnitude;
    return 0;
}

static int double_value(const ts_tp_doc *doc, const ts_tp_node *v, double *out, const char *what, ts_error *err) {
    if (v->kind == TS_TP_NUMBER) {
        *out = v->float_value;
        return 0;
    }
    if (v->kind == TS_TP_IDENT) {
        const char *s = v->text + v->negative;
        size_t n = v->text_len - (size_t)v->negative;
        if (is_float_word(s, n)) {
            double x = (s[0] == 'n' || s[0] == 'N') ? NAN : INFINITY;
            *out = v->negative ? -x : x;
            return 0;
        }
    }
    return value_fail(doc, v, err, what, "a number");
}

static int bool_value(const ts_tp_doc *doc, const ts_tp_node *v, int *out, const char *what, ts_error *err) {
    if (v->kind == TS_TP_IDENT && !v->negative) {
        static const char *const yes[] = {"true", "True", "t"}, *const no[] = {"false", "False", "f"};
        for (int i = 0; i < 3; i++) {
            if (!strcmp(v->text, yes[i])) return *out = 1, 0;
            if (!strcmp(v->text, no[i])) return *out = 0, 0;
        }
    }
    if (v->kind == TS_TP_NUMBER && !v->is_float && !v->negative && !v->overflow && v->magnitude <= 1 &&
        v->text_len == 1) {
        *out = (int)v->magnitude;
        return 0;
    }
    return value_fail(doc, v, err, what, "true or false");
}

static int string_value(const ts_tp_doc *doc, const ts_tp_node *v, char *buf, size_t cap, const char *what,
                        ts_error *err) {
    if (v->kind != TS_TP_STRING) return value_fail(doc, v, err, what, "a quoted string");
    if (memchr(v->text, '\0', v->text_len))
        return ts_fail(err, "%s:%d:%d: %s: the string contains a NUL byte", doc->source, v->value_line, v->value_col,
                       what);
    if (buf) {
        if (v->text_len >= cap)
            return ts_fail(err, "%s:%d:%d: %s: the string is %zu bytes long; at most %zu are supported", doc->source,
                           v->value_line, v->value_col, what, v->text_len, cap - 1);
        memcpy(buf, v->text, v->text_len + 1);
    }
    return 0;
}

static int enum_value(const ts_tp_doc *doc, const ts_tp_node *v, const ts_tp_enum_desc *e, int *out, const char *what,
                      ts_error *err) {
    if (v->kind == TS_TP_IDENT && !v->negative) {
        for (int i = 0; i < e->count; i++)
            if (!strcmp(v->text, e->names[i])) return *out = e->numbers[i], 0;
    } else if (v->kind == TS_TP_NUMBER && !v->is_float && !v->overflow && v->magnitude <= INT32_MAX) {
        int num = v->negative ? -(int)v->magnitude : (int)v->magnitude;
        for (int i = 0; i < e->count; i++)
            if (e->numbers[i] == num) return *out = num, 0;
    } else {
        char expected[96];
        snprintf(expected, sizeof expected, "a value of enum %s", e->full_name);
        return value_fail(doc, v, err, what, expected);
    }
    char names[512];
    size_t o = 0;
    for (int i = 0; i < e->count && o + 2 < sizeof names; i++)
        o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", e->names[i]);
    return ts_fail(err, "%s:%d:%d: %s: %s is not a value of enum %s (expected one of %s)", doc->source, v->value_line,
                   v->value_col, what, v->text, e->full_name, names);
}

static void field_what(const ts_tp_node *v, char *buf, size_t cap) { snprintf(buf, cap, "field %s", v->name); }

int ts_tp_int(const ts_tp_doc *doc, const ts_tp_node *v, int64_t lo, int64_t hi, int64_t *out, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return int_value(doc, v, lo, hi, out, what, err);
}

int ts_tp_uint(const ts_tp_doc *doc, const ts_tp_node *v, uint64_t hi, uint64_t *out, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return uint_value(doc, v, hi, out, what, err);
}

int ts_tp_double(const ts_tp_doc *doc, const ts_tp_node *v, double *out, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return double_value(doc, v, out, what, err);
}

int ts_tp_bool(const ts_tp_doc *doc, const ts_tp_node *v, int *out, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return bool_value(doc, v, out, what, err);
}

int ts_tp_string(const ts_tp_doc *doc, const ts_tp_node *v, char *buf, size_t cap, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return string_value(doc, v, buf, cap, what, err);
}

int ts_tp_enum(const ts_tp_doc *doc, const ts_tp_node *v, const ts_tp_enum_desc *e, int *out, ts_error *err) {
    char what[160];
    field_what(v, what, sizeof what);
    return enum_value(doc, v, e, out, what, err);
}

/* ---- schema validation ---- */

const char *ts_tp_type_name(ts_tp_type t) {
    static const char *const names[] = {"int32",  "int64", "uint32", "uint64", "float",
                                        "double", "bool",  "string", "enum",   "message"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

const ts_tp_field_desc *ts_tp_find_field(const ts_tp_message_desc *m, const char *name) {
    for (int i = 0; i < m->num_fields; i++)
        if (!strcmp(m->fields[i].name, name)) return &m->fields[i];
    return NULL;
}

#define MAX_SCHEMA_FIELDS 64
#define MAX_ONEOFS 8

static int validate_message(const ts_tp_doc *doc, const ts_tp_node *msg, const ts_tp_message_desc *desc, ts_error *err);

static int validate_value(const ts_tp_doc *doc, const ts_tp_node *v, const ts_tp_field_desc *f,
                          const ts_tp_message_desc *owner, ts_error *err) {
    char what[256];
    const char *type = f->type == TS_TP_ENUM        ? f->enumeration->full_name
                       : f->type == TS_TP_MESSAGE_T ? f->message->full_name
                                                    : ts_tp_type_name(f->type);
    snprintf(what, sizeof what, "field %s (%s) of %s", f->name, type, owner->full_name);
    if (f->type == TS_TP_MESSAGE_T) {
        if (v->kind != TS_TP_MESSAGE) {
            char found[200];
            ts_tp_describe(v, found, sizeof found);
            return ts_fail(err, "%s:%d:%d: %s is a message; expected '{', found %s", doc->source, v->value_line,
                           v->value_col, what, found);
        }
        return validate_message(doc, v, f->message, err);
    }
    if (v->kind == TS_TP_MESSAGE)
        return ts_fail(err, "%s:%d:%d: %s is a scalar; expected ':' and a value, found a message", doc->source,
                       v->value_line, v->value_col, what);
    int64_t i;
    uint64_t u;
    double d;
    int b;
    switch (f->type) {
    case TS_TP_INT32: return int_value(doc, v, INT32_MIN, INT32_MAX, &i, what, err);
    case TS_TP_INT64: return int_value(doc, v, INT64_MIN, INT64_MAX, &i, what, err);
    case TS_TP_UINT32: return uint_value(doc, v, UINT32_MAX, &u, what, err);
    case TS_TP_UINT64: return uint_value(doc, v, UINT64_MAX, &u, what, err);
    case TS_TP_FLOAT:
    case TS_TP_DOUBLE: return double_value(doc, v, &d, what, err);
    case TS_TP_BOOL: return bool_value(doc, v, &b, what, err);
    case TS_TP_STRING_T: return string_value(doc, v, NULL, 0, what, err);
    case TS_TP_ENUM: return enum_value(doc, v, f->enumeration, &b, what, err);
    case TS_TP_MESSAGE_T: break;
    }
    return 0;
}

static int validate_message(const ts_tp_doc *doc, const ts_tp_node *msg, const ts_tp_message_desc *desc,
                            ts_error *err) {
    if (desc->num_fields > MAX_SCHEMA_FIELDS)
        return ts_fail(err, "%s: schema %s has more than %d fields", doc->source, desc->full_name, MAX_SCHEMA_FIELDS);
    const ts_tp_node *seen[MAX_SCHEMA_FIELDS] = {0};
    struct {
        const char *oneof;
        const ts_tp_node *node;
    } oneofs[MAX_ONEOFS];
    int num_oneofs = 0;
    for (const ts_tp_node *c = msg->first_child; c; c = c->next) {
        const ts_tp_field_desc *f = ts_tp_find_field(desc, c->name);
        if (!f)
            return ts_fail(err, "%s:%d:%d: message type %s has no field named \"%s\"", doc->source, c->line, c->col,
                           desc->full_name, c->name);
        int idx = (int)(f - desc->fields);
        if (!f->repeated) {
            if (c->kind == TS_TP_LIST)
                return ts_fail(err, "%s:%d:%d: field %s of %s is not repeated; a list [...] is not allowed",
                               doc->source, c->value_line, c->value_col, f->name, desc->full_name);
            if (seen[idx])
                return ts_fail(err, "%s:%d:%d: non-repeated field %s of %s is given twice (first at %d:%d)",
                               doc->source, c->line, c->col, f->name, desc->full_name, seen[idx]->line, seen[idx]->col);
            seen[idx] = c;
        }
        if (f->oneof) {
            int k = 0;
            while (k < num_oneofs && strcmp(oneofs[k].oneof, f->oneof) != 0) k++;
            if (k < num_oneofs) {
                const ts_tp_node *o = oneofs[k].node;
                if (strcmp(o->name, c->name) != 0)
                    return ts_fail(err,
                                   "%s:%d:%d: field %s of %s is in oneof %s together with %s, given at %d:%d; "
                                   "set only one of them",
                                   doc->source, c->line, c->col, c->name, desc->full_name, f->oneof, o->name, o->line,
                                   o->col);
            } else if (num_oneofs < MAX_ONEOFS) {
                oneofs[num_oneofs].oneof = f->oneof;
                oneofs[num_oneofs].node = c;
                num_oneofs++;
            }
        }
        if (c->kind == TS_TP_LIST) {
            for (const ts_tp_node *e = c->first_child; e; e = e->next)
                if (validate_value(doc, e, f, desc, err) != 0) return -1;
        } else if (validate_value(doc, c, f, desc, err) != 0) {
            return -1;
        }
    }
    return 0;
}

int ts_tp_validate(const ts_tp_doc *doc, const ts_tp_node *msg, const ts_tp_message_desc *desc, ts_error *err) {
    return validate_message(doc, msg, desc, err);
}
