/* Jinja values with Python semantics: the arena they live in, conversion from JSON, truthiness,
 * equality and ordering, str()/repr() and json.dumps() text. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

struct jj_chunk {
    jj_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

_Noreturn void jj_raise(jj_fail *f, uint32_t line, uint32_t col, const char *fmt, ...) {
    char msg[TS_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line) ts_fail(f->err, "%s:%u:%u: %s", f->name, line, col, msg);
    else ts_fail(f->err, "%s: %s", f->name, msg);
    longjmp(f->jb, 1);
}

void *jj_alloc(jj_arena *a, jj_fail *f, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > a->limit || a->used > a->limit - n)
        jj_raise(f, 0, 0, "template used more than %zu bytes of memory", a->limit);
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        jj_chunk *c = malloc(sizeof *c + cap);
        if (!c) jj_raise(f, 0, 0, "out of memory");
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    a->used += n;
    return p;
}

void jj_arena_free(jj_arena *a) {
    for (jj_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

void jj_buf_put(jj_buf *b, jj_fail *f, const char *s, size_t n) {
    if (n > b->limit || b->len > b->limit - n) jj_raise(f, 0, 0, "template output exceeds %zu bytes", b->limit);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) jj_raise(f, 0, 0, "out of memory");
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

jj_str *jj_str_new(jj_arena *a, jj_fail *f, const char *s, size_t len) {
    jj_str *r = jj_alloc(a, f, sizeof *r + len + 1);
    r->len = len;
    if (len) memcpy(r->data, s, len);
    r->data[len] = '\0';
    return r;
}

jv jv_str(jj_arena *a, jj_fail *f, const char *s, size_t len) {
    jv v;
    v.type = JV_STR;
    v.u.s = jj_str_new(a, f, s, len);
    return v;
}

jv jv_cstr(jj_arena *a, jj_fail *f, const char *s) { return jv_str(a, f, s, strlen(s)); }

jv jv_list_new(jj_arena *a, jj_fail *f, size_t cap) {
    jv v;
    v.type = JV_LIST;
    v.u.l = jj_alloc(a, f, sizeof *v.u.l);
    v.u.l->n = 0;
    v.u.l->tuple = 0;
    v.u.l->cap = cap;
    v.u.l->items = cap ? jj_alloc(a, f, cap * sizeof(jv)) : NULL;
    return v;
}

void jv_list_push(jj_arena *a, jj_fail *f, jv list, jv item) {
    jj_list *l = list.u.l;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *items = jj_alloc(a, f, cap * sizeof(jv));
        if (l->n) memcpy(items, l->items, l->n * sizeof(jv));
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = item;
}

jv jv_dict_new(jj_arena *a, jj_fail *f, int kind) {
    jv v;
    v.type = JV_DICT;
    v.u.d = jj_alloc(a, f, sizeof *v.u.d);
    memset(v.u.d, 0, sizeof *v.u.d);
    v.u.d->kind = kind;
    return v;
}

int jv_dict_get(jv dict, const char *key, size_t len, jv *out) {
    jj_dict *d = dict.u.d;
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->len == len && !memcmp(d->keys[i]->data, key, len)) {
            *out = d->vals[i];
            return 1;
        }
    return 0;
}

void jv_dict_set(jj_arena *a, jj_fail *f, jv dict, jj_str *key, jv value) {
    jj_dict *d = dict.u.d;
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->len == key->len && !memcmp(d->keys[i]->data, key->data, key->len)) {
            d->vals[i] = value;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jj_str **keys = jj_alloc(a, f, cap * sizeof *keys);
        jv *vals = jj_alloc(a, f, cap * sizeof *vals);
        memset(keys, 0, cap * sizeof *keys);
        if (d->n) {
            memcpy(keys, d->keys, d->n * sizeof *keys);
            memcpy(vals, d->vals, d->n * sizeof *vals);
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = value;
    d->n++;
}

jv jv_from_json(jj_arena *a, jj_fail *f, const json_t *j, int depth) {
    if (depth > 64) jj_raise(f, 0, 0, "template variables nest deeper than 64 levels");
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(1);
    case JSON_FALSE: return jv_bool(0);
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str(a, f, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jv l = jv_list_new(a, f, json_array_size(j));
        size_t i;
        const json_t *item;
        json_array_foreach(j, i, item) jv_list_push(a, f, l, jv_from_json(a, f, item, depth + 1));
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict_new(a, f, JJ_DICT_PLAIN);
        const char *key;
        size_t klen;
        json_t *item;
        json_object_keylen_foreach((json_t *)j, key, klen, item)
            jv_dict_set(a, f, d, jj_str_new(a, f, key, klen), jv_from_json(a, f, item, depth + 1));
        return d;
    }
    }
    return jv_none();
}

const char *jv_type_name(jv v) {
    switch (v.type) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_DICT: return v.u.d->kind == JJ_DICT_NAMESPACE ? "Namespace" : v.u.d->kind == JJ_DICT_LOOP ? "LoopContext" : "dict";
    default: return "function";
    }
}

int jv_truthy(jv v) {
    switch (v.type) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s->len != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->kind != JJ_DICT_PLAIN || v.u.d->n != 0;
    default: return 1;
    }
}

static int is_number(jv v) { return v.type == JV_BOOL || v.type == JV_INT || v.type == JV_FLOAT; }
static double as_double(jv v) { return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t as_int(jv v) { return v.type == JV_INT ? v.u.i : (int64_t)v.u.b; }

int jv_equal(jv a, jv b, uint64_t *work) {
    ++*work;
    if (is_number(a) && is_number(b)) {
        if (a.type == JV_FLOAT || b.type == JV_FLOAT) return as_double(a) == as_double(b);
        return as_int(a) == as_int(b);
    }
    if (a.type != b.type) return 0;
    switch (a.type) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR:
        *work += a.u.s->len / 64;
        return a.u.s->len == b.u.s->len && !memcmp(a.u.s->data, b.u.s->data, a.u.s->len);
    case JV_LIST:
        if (a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->items[i], b.u.l->items[i], work)) return 0;
        return 1;
    case JV_DICT: {
        if (a.u.d == b.u.d) return 1;
        if (a.u.d->n != b.u.d->n || a.u.d->kind != JJ_DICT_PLAIN) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv other;
            *work += b.u.d->n; /* jv_dict_get scans the keys */
            if (!jv_dict_get(b, a.u.d->keys[i]->data, a.u.d->keys[i]->len, &other) || !jv_equal(a.u.d->vals[i], other, work))
                return 0;
        }
        return 1;
    }
    case JV_MACRO: return a.u.macro == b.u.macro;
    case JV_FUNC: return a.u.func == b.u.func;
    default: return 0;
    }
}

int jv_compare(jj_fail *f, uint32_t line, uint32_t col, jv a, jv b, uint64_t *work) {
    ++*work;
    if (is_number(a) && is_number(b)) {
        if (a.type == JV_FLOAT || b.type == JV_FLOAT) {
            double x = as_double(a), y = as_double(b);
            return x < y ? -1 : x > y;
        }
        int64_t x = as_int(a), y = as_int(b);
        return x < y ? -1 : x > y;
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        *work += n / 64;
        int c = memcmp(a.u.s->data, b.u.s->data, n); /* UTF-8 byte order is code point order */
        if (c) return c < 0 ? -1 : 1;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    if (a.type == JV_LIST && b.type == JV_LIST) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i], work)) continue;
            return jv_compare(f, line, col, a.u.l->items[i], b.u.l->items[i], work);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    jj_raise(f, line, col, "cannot compare %s with %s", jv_type_name(a), jv_type_name(b));
}

/* Python's float repr: the shortest digits that read back to the same double; scientific notation
 * below 1e-4 and from 1e16 on, else positional with at least one decimal. */
void jj_write_float(jj_buf *b, jj_fail *f, double d) {
    if (isnan(d)) { jj_buf_puts(b, f, "nan"); return; }
    if (isinf(d)) { jj_buf_puts(b, f, d < 0 ? "-inf" : "inf"); return; }
    char tmp[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp is [-]D.DDDe[+-]XX: collect digits and exponent */
    char digits[32];
    int nd = 0, neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char out[64];
    int o = 0;
    if (neg) out[o++] = '-';
    if (exp < -4 || exp >= 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
        for (int i = 0; i < nd; i++) out[o++] = digits[i];
    } else {
        for (int i = 0; i <= exp; i++) out[o++] = i < nd ? digits[i] : '0';
        out[o++] = '.';
        if (nd > exp + 1)
            for (int i = exp + 1; i < nd; i++) out[o++] = digits[i];
        else
            out[o++] = '0';
    }
    jj_buf_put(b, f, out, (size_t)o);
}

static void write_int(jj_buf *b, jj_fail *f, int64_t i) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)i);
    jj_buf_put(b, f, tmp, (size_t)n);
}

static void write_string_repr(jj_buf *b, jj_fail *f, const jj_str *s) {
    int has_single = memchr(s->data, '\'', s->len) != NULL, has_double = memchr(s->data, '"', s->len) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    jj_buf_put(b, f, &quote, 1);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        char esc[8];
        if (c == '\\') jj_buf_puts(b, f, "\\\\");
        else if (c == (unsigned char)quote) { esc[0] = '\\'; esc[1] = (char)c; jj_buf_put(b, f, esc, 2); }
        else if (c == '\n') jj_buf_puts(b, f, "\\n");
        else if (c == '\r') jj_buf_puts(b, f, "\\r");
        else if (c == '\t') jj_buf_puts(b, f, "\\t");
        else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            jj_buf_puts(b, f, esc);
        } else if (c == 0xC2 && i + 1 < s->len && ((unsigned char)s->data[i + 1] <= 0xA0 || (unsigned char)s->data[i + 1] == 0xAD)) {
            /* C1 controls, no-break space and soft hyphen are not printable in Python */
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)s->data[i + 1]);
            jj_buf_puts(b, f, esc);
            i++;
        } else
            jj_buf_put(b, f, (const char *)&s->data[i], 1);
    }
    jj_buf_put(b, f, &quote, 1);
}

void jv_write_repr(jj_buf *b, jj_fail *f, jv v) {
    if (v.type == JV_STR) write_string_repr(b, f, v.u.s);
    else jv_write_str(b, f, v);
}

void jv_write_str(jj_buf *b, jj_fail *f, jv v) {
    switch (v.type) {
    case JV_UNDEF: return;
    case JV_NONE: jj_buf_puts(b, f, "None"); return;
    case JV_BOOL: jj_buf_puts(b, f, v.u.b ? "True" : "False"); return;
    case JV_INT: write_int(b, f, v.u.i); return;
    case JV_FLOAT: jj_write_float(b, f, v.u.f); return;
    case JV_STR: jj_buf_put(b, f, v.u.s->data, v.u.s->len); return;
    case JV_LIST:
        jj_buf_puts(b, f, v.u.l->tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jj_buf_puts(b, f, ", ");
            jv_write_repr(b, f, v.u.l->items[i]);
        }
        jj_buf_puts(b, f, v.u.l->tuple ? (v.u.l->n == 1 ? ",)" : ")") : "]");
        return;
    case JV_DICT:
        if (v.u.d->kind == JJ_DICT_NAMESPACE) { jj_buf_puts(b, f, "<Namespace>"); return; }
        jj_buf_puts(b, f, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) jj_buf_puts(b, f, ", ");
            write_string_repr(b, f, v.u.d->keys[i]);
            jj_buf_puts(b, f, ": ");
            jv_write_repr(b, f, v.u.d->vals[i]);
        }
        jj_buf_puts(b, f, "}");
        return;
    default: jj_buf_puts(b, f, "<function>"); return;
    }
}

static void write_json_string(jj_buf *b, jj_fail *f, const char *s, size_t len, int ensure_ascii) {
    jj_buf_puts(b, f, "\"");
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[16];
        size_t adv = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", c); esc = tmp; }
        else if (c >= 0x80 && ensure_ascii) {
            uint32_t cp;
            if (c >= 0xF0 && i + 3 < len + 0) { cp = ((uint32_t)(c & 7) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) | ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F); adv = 4; }
            else if (c >= 0xE0 && i + 2 < len) { cp = ((uint32_t)(c & 0xF) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F); adv = 3; }
            else if (c >= 0xC0 && i + 1 < len) { cp = ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F); adv = 2; }
            else cp = 0xFFFD;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            esc = tmp;
        }
        if (esc) {
            jj_buf_put(b, f, s + run, i - run);
            jj_buf_puts(b, f, esc);
            i += adv;
            run = i;
        } else
            i++;
    }
    jj_buf_put(b, f, s + run, len - run);
    jj_buf_puts(b, f, "\"");
}

static void newline_indent(jj_buf *b, jj_fail *f, int indent, int level) {
    jj_buf_puts(b, f, "\n");
    for (int i = 0; i < indent * level; i++) jj_buf_puts(b, f, " ");
}

static int compare_keys(const void *x, const void *y) {
    const jj_str *a = *(jj_str *const *)x, *b = *(jj_str *const *)y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->data, b->data, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

void jv_write_json(jj_buf *b, jj_fail *f, jv v, int indent, int ensure_ascii, int sort_keys, const char *item_sep,
                   const char *key_sep, int depth, uint32_t line, uint32_t col) {
    if (depth > 128) jj_raise(f, line, col, "tojson: value nests deeper than 128 levels");
    switch (v.type) {
    case JV_UNDEF: jj_raise(f, line, col, "tojson: Object of type Undefined is not JSON serializable");
    case JV_NONE: jj_buf_puts(b, f, "null"); return;
    case JV_BOOL: jj_buf_puts(b, f, v.u.b ? "true" : "false"); return;
    case JV_INT: write_int(b, f, v.u.i); return;
    case JV_FLOAT:
        if (isnan(v.u.f)) jj_buf_puts(b, f, "NaN");
        else if (isinf(v.u.f)) jj_buf_puts(b, f, v.u.f < 0 ? "-Infinity" : "Infinity");
        else jj_write_float(b, f, v.u.f);
        return;
    case JV_STR: write_json_string(b, f, v.u.s->data, v.u.s->len, ensure_ascii); return;
    case JV_LIST:
        if (!v.u.l->n) { jj_buf_puts(b, f, "[]"); return; }
        jj_buf_puts(b, f, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jj_buf_puts(b, f, item_sep);
            if (indent >= 0) newline_indent(b, f, indent, depth + 1);
            jv_write_json(b, f, v.u.l->items[i], indent, ensure_ascii, sort_keys, item_sep, key_sep, depth + 1, line, col);
        }
        if (indent >= 0) newline_indent(b, f, indent, depth);
        jj_buf_puts(b, f, "]");
        return;
    case JV_DICT: {
        jj_dict *d = v.u.d;
        if (!d->n) { jj_buf_puts(b, f, "{}"); return; }
        jj_str **order = d->keys;
        jj_str *sorted[256];
        if (sort_keys) {
            if (d->n > 256) jj_raise(f, line, col, "tojson: sort_keys supports up to 256 keys");
            memcpy(sorted, d->keys, d->n * sizeof *sorted);
            qsort(sorted, d->n, sizeof *sorted, compare_keys);
            order = sorted;
        }
        jj_buf_puts(b, f, "{");
        for (size_t i = 0; i < d->n; i++) {
            if (i) jj_buf_puts(b, f, item_sep);
            if (indent >= 0) newline_indent(b, f, indent, depth + 1);
            write_json_string(b, f, order[i]->data, order[i]->len, ensure_ascii);
            jj_buf_puts(b, f, key_sep);
            jv item;
            jv_dict_get(v, order[i]->data, order[i]->len, &item);
            jv_write_json(b, f, item, indent, ensure_ascii, sort_keys, item_sep, key_sep, depth + 1, line, col);
        }
        if (indent >= 0) newline_indent(b, f, indent, depth);
        jj_buf_puts(b, f, "}");
        return;
    }
    default: jj_raise(f, line, col, "tojson: a function is not JSON serializable");
    }
}

jv jv_to_string(jj_arena *a, jj_fail *f, jj_buf *scratch, jv v) {
    if (v.type == JV_STR) return v;
    scratch->len = 0;
    jv_write_str(scratch, f, v);
    return jv_str(a, f, scratch->data ? scratch->data : "", scratch->len);
}
