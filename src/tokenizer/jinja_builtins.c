/* Jinja builtins used by chat templates: filters, tests, string/dict methods and the global functions
 * transformers provides (range, namespace, raise_exception, strftime_now, dict). String operations work
 * on code points, as Python's do. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "tokenizer/jinja_internal.h"
#include "tokenizer/unicode_text.h"

static const char *const k_filters[] = {
    "length", "count", "trim", "tojson", "string", "lower", "upper", "capitalize", "title", "default", "d", "join",
    "first", "last", "items", "list", "replace", "int", "float", "safe", "abs", "round", "reverse", "sort", "unique",
    "sum", "min", "max", "selectattr", "rejectattr", "map", "select", "reject", "indent", "escape", "e", "attr",
    "wordcount", NULL};

static const char *const k_tests[] = {
    "defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number", "integer", "float",
    "boolean", "true", "false", "eq", "equalto", "ne", "lt", "lessthan", "le", "gt", "greaterthan", "ge", "in", "odd",
    "even", "divisibleby", "callable", "lower", "upper", "sameas", NULL};

static int in_table(const char *const *table, const char *name) {
    for (; *table; table++)
        if (!strcmp(*table, name)) return 1;
    return 0;
}

int jj_filter_exists(const char *name) { return in_table(k_filters, name); }
int jj_test_exists(const char *name) { return in_table(k_tests, name); }

#define A (&c->arena)
#define F (&c->fail)

static _Noreturn void fail(jj_ctx *c, const jj_node *at, const char *fmt, const char *a1, const char *a2) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a1, a2 ? a2 : "");
    jj_raise(F, at->line, at->col, "%s", msg);
}

static jv need_str(jj_ctx *c, const jj_node *at, jv v, const char *what) {
    if (v.type != JV_STR) fail(c, at, "%s expects a string, found %s", what, jv_type_name(v));
    return v;
}

static jv str_from_buf(jj_ctx *c, const char *s, size_t n) { return jv_str(A, F, s, n); }

/* ---- code-point helpers ---- */

static int32_t cp_at(const jj_str *s, size_t i, size_t *len) {
    int32_t cp;
    *len = (size_t)ts_utf8_decode_valid((const uint8_t *)s->data + i, &cp);
    return cp;
}

static int py_isspace(int32_t cp) {
    return (cp >= 0x1C && cp <= 0x1F) || (ts_uni_class(cp) & TS_UNI_SPACE);
}

static int in_chars(int32_t cp, const jj_str *chars) {
    for (size_t i = 0; i < chars->len;) {
        size_t n;
        if (cp_at(chars, i, &n) == cp) return 1;
        i += n;
    }
    return 0;
}

/* which: 1 left, 2 right, 3 both; chars NULL for whitespace */
static jv strip(jj_ctx *c, jv s, const jj_str *chars, int which) {
    const jj_str *t = s.u.s;
    size_t b = 0, e = t->len;
    if (which & 1)
        while (b < e) {
            size_t n;
            int32_t cp = cp_at(t, b, &n);
            if (chars ? !in_chars(cp, chars) : !py_isspace(cp)) break;
            b += n;
        }
    if (which & 2)
        while (e > b) {
            size_t k = e - 1;
            while (k > b && ((unsigned char)t->data[k] & 0xC0) == 0x80) k--;
            size_t n;
            int32_t cp = cp_at(t, k, &n);
            if (chars ? !in_chars(cp, chars) : !py_isspace(cp)) break;
            e = k;
        }
    return str_from_buf(c, t->data + b, e - b);
}

typedef int32_t (*cp_map)(int32_t);
static int32_t to_upper(int32_t cp) { return utf8proc_toupper(cp); }
static int32_t to_lower(int32_t cp) { return utf8proc_tolower(cp); }

static jv map_case(jj_ctx *c, jv s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title */
    const jj_str *t = s.u.s;
    char *out = jj_alloc(A, F, t->len * 3 + 1);
    size_t o = 0;
    int prev_cased = 0, first = 1;
    for (size_t i = 0; i < t->len;) {
        size_t n;
        int32_t cp = cp_at(t, i, &n);
        cp_map fn;
        if (mode == 0) fn = to_lower;
        else if (mode == 1) fn = to_upper;
        else if (mode == 2) fn = first ? to_upper : to_lower;
        else fn = prev_cased ? to_lower : to_upper;
        int32_t m = fn(cp);
        o += (size_t)ts_utf8_encode(m, out + o);
        prev_cased = (ts_uni_class(cp) & TS_UNI_LETTER) != 0;
        first = 0;
        i += n;
    }
    return str_from_buf(c, out, o);
}

static jv replace(jj_ctx *c, const jj_node *at, jv s, jv old, jv new_, int64_t count) {
    need_str(c, at, old, "replace");
    need_str(c, at, new_, "replace");
    const jj_str *t = s.u.s, *o = old.u.s, *nw = new_.u.s;
    c->scratch.len = 0;
    jj_buf *out = &c->scratch;
    int64_t done = 0;
    if (!o->len) { /* Python inserts between characters */
        for (size_t i = 0; i <= t->len;) {
            if (count < 0 || done < count) { jj_buf_put(out, F, nw->data, nw->len); done++; }
            if (i == t->len) break;
            size_t n;
            cp_at(t, i, &n);
            jj_buf_put(out, F, t->data + i, n);
            i += n;
        }
    } else {
        size_t i = 0;
        while (i < t->len) {
            const char *hit = (count < 0 || done < count) ? memmem(t->data + i, t->len - i, o->data, o->len) : NULL;
            if (!hit) break;
            size_t k = (size_t)(hit - t->data);
            jj_buf_put(out, F, t->data + i, k - i);
            jj_buf_put(out, F, nw->data, nw->len);
            i = k + o->len;
            done++;
        }
        jj_buf_put(out, F, t->data + i, t->len - i);
    }
    return str_from_buf(c, out->data ? out->data : "", out->len);
}

static jv split(jj_ctx *c, const jj_node *at, jv s, jv sep, int64_t maxsplit) {
    const jj_str *t = s.u.s;
    jv out = jv_list_new(A, F, 0);
    int64_t done = 0;
    if (sep.type == JV_NONE || sep.type == JV_UNDEF) {
        size_t i = 0;
        for (;;) {
            while (i < t->len) {
                size_t n;
                if (!py_isspace(cp_at(t, i, &n))) break;
                i += n;
            }
            if (i >= t->len) break;
            if (maxsplit >= 0 && done >= maxsplit) {
                jv rest = strip(c, str_from_buf(c, t->data + i, t->len - i), NULL, 2);
                jv_list_push(A, F, out, rest);
                break;
            }
            size_t j = i;
            while (j < t->len) {
                size_t n;
                if (py_isspace(cp_at(t, j, &n))) break;
                j += n;
            }
            jv_list_push(A, F, out, str_from_buf(c, t->data + i, j - i));
            done++;
            i = j;
        }
        return out;
    }
    need_str(c, at, sep, "split");
    const jj_str *p = sep.u.s;
    if (!p->len) fail(c, at, "split: empty separator%s%s", "", NULL);
    size_t i = 0;
    for (;;) {
        const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(t->data + i, t->len - i, p->data, p->len) : NULL;
        if (!hit) {
            jv_list_push(A, F, out, str_from_buf(c, t->data + i, t->len - i));
            break;
        }
        size_t k = (size_t)(hit - t->data);
        jv_list_push(A, F, out, str_from_buf(c, t->data + i, k - i));
        i = k + p->len;
        done++;
    }
    return out;
}

static int affix(jj_ctx *c, const jj_node *at, jv s, jv arg, int suffix) {
    if (arg.type == JV_LIST) {
        for (size_t i = 0; i < arg.u.l->n; i++)
            if (affix(c, at, s, arg.u.l->items[i], suffix)) return 1;
        return 0;
    }
    need_str(c, at, arg, suffix ? "endswith" : "startswith");
    const jj_str *t = s.u.s, *p = arg.u.s;
    if (p->len > t->len) return 0;
    return !memcmp(t->data + (suffix ? t->len - p->len : 0), p->data, p->len);
}

static int64_t cp_index_of_byte(const jj_str *s, size_t byte) {
    return (int64_t)ts_utf8_count(s->data, byte);
}

/* ---- tests ---- */

static int test_by_name(jj_ctx *c, const jj_node *at, const char *name, jv v, const jv *args, size_t nargs) {
    jv arg = nargs ? args[0] : jv_undef("argument");
    if (!strcmp(name, "defined")) return v.type != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v.type == JV_UNDEF;
    if (!strcmp(name, "none")) return v.type == JV_NONE;
    if (!strcmp(name, "string")) return v.type == JV_STR;
    if (!strcmp(name, "mapping")) return v.type == JV_DICT;
    if (!strcmp(name, "iterable")) return v.type == JV_LIST || v.type == JV_DICT || v.type == JV_STR || v.type == JV_UNDEF;
    if (!strcmp(name, "sequence")) return v.type == JV_LIST || v.type == JV_DICT || v.type == JV_STR;
    if (!strcmp(name, "number")) return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL;
    if (!strcmp(name, "integer")) return v.type == JV_INT;
    if (!strcmp(name, "float")) return v.type == JV_FLOAT;
    if (!strcmp(name, "boolean")) return v.type == JV_BOOL;
    if (!strcmp(name, "true")) return v.type == JV_BOOL && v.u.b;
    if (!strcmp(name, "false")) return v.type == JV_BOOL && !v.u.b;
    if (!strcmp(name, "callable")) return v.type == JV_MACRO || v.type == JV_FUNC;
    if (!strcmp(name, "sameas")) {
        if (v.type != arg.type) return 0;
        if (v.type == JV_NONE || v.type == JV_UNDEF) return 1;
        if (v.type == JV_BOOL) return v.u.b == arg.u.b;
        if (v.type == JV_LIST) return v.u.l == arg.u.l;
        if (v.type == JV_DICT) return v.u.d == arg.u.d;
        return jv_equal(v, arg, &c->steps);
    }
    /* comparisons count their work; the caller (jj_apply_test) checks the step limit afterwards */
    if (!strcmp(name, "eq") || !strcmp(name, "equalto")) return jv_equal(v, arg, &c->steps);
    if (!strcmp(name, "ne")) return !jv_equal(v, arg, &c->steps);
    if (!strcmp(name, "lt") || !strcmp(name, "lessthan")) return jv_compare(F, at->line, at->col, v, arg, &c->steps) < 0;
    if (!strcmp(name, "le")) return jv_compare(F, at->line, at->col, v, arg, &c->steps) <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, "greaterthan")) return jv_compare(F, at->line, at->col, v, arg, &c->steps) > 0;
    if (!strcmp(name, "ge")) return jv_compare(F, at->line, at->col, v, arg, &c->steps) >= 0;
    if (!strcmp(name, "in")) {
        jj_charge(c, at, jv_scan_cost(arg));
        if (arg.type == JV_STR && v.type == JV_STR) return memmem(arg.u.s->data, arg.u.s->len, v.u.s->data, v.u.s->len) != NULL || !v.u.s->len;
        if (arg.type == JV_LIST) {
            for (size_t i = 0; i < arg.u.l->n; i++)
                if (jv_equal(v, arg.u.l->items[i], &c->steps)) return 1;
            return 0;
        }
        if (arg.type == JV_DICT && v.type == JV_STR) {
            jv unused;
            return jv_dict_get(arg, v.u.s->data, v.u.s->len, &unused);
        }
        return 0;
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.type != JV_INT) fail(c, at, "test '%s' expects an integer, found %s", name, jv_type_name(v));
        if (name[0] == 'o') return (v.u.i % 2) != 0;
        if (name[0] == 'e') return (v.u.i % 2) == 0;
        if (arg.type != JV_INT || arg.u.i == 0) fail(c, at, "divisibleby needs a non-zero integer%s%s", "", NULL);
        return v.u.i % arg.u.i == 0;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.type != JV_STR) return 0;
        jv m = map_case(c, v, name[0] == 'u');
        return jv_equal(m, v, &c->steps);
    }
    fail(c, at, "unsupported test '%s'%s", name, NULL);
}

int jj_apply_test(jj_ctx *c, jj_frame *fr, const jj_node *n, jv value) {
    jj_args args;
    jj_eval_args(c, fr, n, &args, 1);
    jj_charge(c, n, jv_scan_cost(value));
    int r = test_by_name(c, n, n->name, value, args.pos, args.n_pos);
    jj_charge(c, n, 0);
    return r;
}

/* ---- filters ---- */

static jv filter_by_name(jj_ctx *c, const jj_node *at, const char *name, jv v, jj_args *args);

static jv attribute_of(jv item, jv attr) {
    if (attr.type == JV_INT && item.type == JV_LIST) {
        int64_t i = attr.u.i < 0 ? attr.u.i + (int64_t)item.u.l->n : attr.u.i;
        return i >= 0 && i < (int64_t)item.u.l->n ? item.u.l->items[i] : jv_undef("index out of range");
    }
    if (attr.type != JV_STR || item.type != JV_DICT) return jv_undef("attribute");
    /* dotted paths ("function.name") walk nested mappings */
    const char *p = attr.u.s->data;
    jv cur = item;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        jv next;
        if (cur.type != JV_DICT || !jv_dict_get(cur, p, n, &next)) return jv_undef("attribute");
        cur = next;
        if (!dot) return cur;
        p = dot + 1;
    }
}

static jv arg_or(const jj_args *a, size_t pos, const char *kw, jv dflt) {
    jv v;
    if (pos < a->n_pos) return a->pos[pos];
    if (kw && jj_kwarg(a, kw, &v)) return v;
    return dflt;
}

static jv as_list(jj_ctx *c, const jj_node *at, jv v) {
    jv items;
    jj_iterate(c, at, v, &items);
    return items;
}

static int sort_less(jj_ctx *c, const jj_node *at, jv a, jv b, jv attr, int case_sensitive) {
    if (attr.type != JV_NONE && attr.type != JV_UNDEF) {
        a = attribute_of(a, attr);
        b = attribute_of(b, attr);
    }
    if (!case_sensitive && a.type == JV_STR && b.type == JV_STR) {
        a = map_case(c, a, 0);
        b = map_case(c, b, 0);
    }
    return jv_compare(F, at->line, at->col, a, b, &c->steps) < 0;
}

static jv sorted_copy(jj_ctx *c, const jj_node *at, jv list, int reverse, int case_sensitive, jv attr) {
    size_t n = list.u.l->n;
    jv out = jv_list_new(A, F, n);
    for (size_t i = 0; i < n; i++) jv_list_push(A, F, out, list.u.l->items[i]);
    jv *v = out.u.l->items;
    /* insertion sort: stable, and chat template lists are short */
    for (size_t i = 1; i < n; i++) {
        jv x = v[i];
        size_t j = i;
        while (j > 0 && (reverse ? sort_less(c, at, v[j - 1], x, attr, case_sensitive)
                                 : sort_less(c, at, x, v[j - 1], attr, case_sensitive))) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
        jj_charge(c, at, 0); /* the comparisons counted themselves; insertion sort is quadratic */
    }
    return out;
}

static jv select_items(jj_ctx *c, const jj_node *at, jv v, jj_args *args, int by_attr, int keep) {
    jv items = as_list(c, at, v);
    size_t first = 0;
    jv attr = jv_none();
    if (by_attr) {
        if (!args->n_pos) fail(c, at, "%s needs an attribute name%s", keep ? "selectattr" : "rejectattr", NULL);
        attr = args->pos[0];
        first = 1;
    }
    const char *test = NULL;
    if (args->n_pos > first) {
        if (args->pos[first].type != JV_STR) fail(c, at, "the test name must be a string%s%s", "", NULL);
        test = args->pos[first].u.s->data;
        if (!jj_test_exists(test)) fail(c, at, "unsupported test '%s'%s", test, NULL);
    }
    jv out = jv_list_new(A, F, 0);
    for (size_t i = 0; i < items.u.l->n; i++) {
        jv item = items.u.l->items[i];
        jv subject = by_attr ? attribute_of(item, attr) : item;
        int ok = test ? test_by_name(c, at, test, subject, args->pos + first + 1, args->n_pos - first - 1)
                      : jv_truthy(subject);
        if (ok == keep) jv_list_push(A, F, out, item);
    }
    return out;
}

static jv to_json(jj_ctx *c, const jj_node *at, jv v, jj_args *args) {
    jv indent = arg_or(args, 0, "indent", jv_none());
    jv ensure_ascii = arg_or(args, 1, "ensure_ascii", jv_bool(0));
    jv sort_keys = jv_bool(0), separators = jv_none();
    jj_kwarg(args, "sort_keys", &sort_keys);
    jj_kwarg(args, "separators", &separators);
    int ind = -1;
    if (indent.type == JV_INT) ind = indent.u.i < 0 ? 0 : indent.u.i > 64 ? 64 : (int)indent.u.i;
    else if (indent.type != JV_NONE) fail(c, at, "tojson: indent must be an integer%s%s", "", NULL);
    const char *item_sep = ind >= 0 ? "," : ", ", *key_sep = ": ";
    if (separators.type == JV_LIST) {
        if (separators.u.l->n != 2 || separators.u.l->items[0].type != JV_STR || separators.u.l->items[1].type != JV_STR)
            fail(c, at, "tojson: separators must be two strings%s%s", "", NULL);
        item_sep = separators.u.l->items[0].u.s->data;
        key_sep = separators.u.l->items[1].u.s->data;
    }
    c->scratch.len = 0;
    jv_write_json(&c->scratch, F, v, ind, jv_truthy(ensure_ascii), jv_truthy(sort_keys), item_sep, key_sep, 0, at->line, at->col);
    return str_from_buf(c, c->scratch.data ? c->scratch.data : "", c->scratch.len);
}

static jv join(jj_ctx *c, const jj_node *at, jv v, jj_args *args) {
    jv items = as_list(c, at, v);
    jv sep = arg_or(args, 0, "d", jv_undef(NULL)), attr = arg_or(args, 1, "attribute", jv_none());
    if (sep.type == JV_UNDEF) sep = str_from_buf(c, "", 0);
    need_str(c, at, sep, "join");
    /* str() of each item may use the scratch buffer, so collect the pieces first */
    jv *parts = jj_alloc(A, F, (items.u.l->n + 1) * sizeof(jv));
    for (size_t i = 0; i < items.u.l->n; i++) {
        jv item = items.u.l->items[i];
        if (attr.type != JV_NONE) item = attribute_of(item, attr);
        parts[i] = jv_to_string(A, F, &c->scratch, item);
    }
    size_t total = 0;
    for (size_t i = 0; i < items.u.l->n; i++) total += parts[i].u.s->len + sep.u.s->len;
    char *out = jj_alloc(A, F, total + 1);
    size_t o = 0;
    for (size_t i = 0; i < items.u.l->n; i++) {
        if (i) { memcpy(out + o, sep.u.s->data, sep.u.s->len); o += sep.u.s->len; }
        memcpy(out + o, parts[i].u.s->data, parts[i].u.s->len);
        o += parts[i].u.s->len;
    }
    return str_from_buf(c, out, o);
}

static jv indent_text(jj_ctx *c, const jj_node *at, jv v, jj_args *args) {
    need_str(c, at, v, "indent");
    jv width = arg_or(args, 0, "width", jv_int(4)), first = arg_or(args, 1, "first", jv_bool(0));
    jv blank = arg_or(args, 2, "blank", jv_bool(0));
    jv pad;
    if (width.type == JV_STR) pad = width;
    else if (width.type == JV_INT && width.u.i >= 0 && width.u.i <= 256) {
        char spaces[257];
        memset(spaces, ' ', (size_t)width.u.i);
        pad = str_from_buf(c, spaces, (size_t)width.u.i);
    } else
        fail(c, at, "indent: width must be a small integer or a string%s%s", "", NULL);
    c->scratch.len = 0;
    const jj_str *t = v.u.s;
    size_t i = 0;
    int line_no = 0;
    while (i <= t->len) {
        const char *nl = memchr(t->data + i, '\n', t->len - i);
        size_t e = nl ? (size_t)(nl - t->data) : t->len;
        int is_blank = e == i;
        if ((line_no > 0 || jv_truthy(first)) && (!is_blank || jv_truthy(blank)))
            jj_buf_put(&c->scratch, F, pad.u.s->data, pad.u.s->len);
        jj_buf_put(&c->scratch, F, t->data + i, e - i);
        if (!nl) break;
        jj_buf_put(&c->scratch, F, "\n", 1);
        i = e + 1;
        line_no++;
    }
    return str_from_buf(c, c->scratch.data ? c->scratch.data : "", c->scratch.len);
}

static jv to_int(jv v, jv dflt) {
    switch (v.type) {
    case JV_INT: return v;
    case JV_BOOL: return jv_int(v.u.b);
    case JV_FLOAT: return isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? jv_int((int64_t)v.u.f) : dflt;
    case JV_STR: {
        char *end;
        const char *s = v.u.s->data;
        long long x = strtoll(s, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (end != s && !*end) return jv_int(x);
        double d = strtod(s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (end != s && !*end && isfinite(d) && fabs(d) < 9.2e18) return jv_int((int64_t)d);
        return dflt;
    }
    default: return dflt;
    }
}

static jv filter_by_name(jj_ctx *c, const jj_node *at, const char *name, jv v, jj_args *args) {
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv dflt = arg_or(args, 0, "default_value", str_from_buf(c, "", 0));
        jv boolean = arg_or(args, 1, "boolean", jv_bool(0));
        if (v.type == JV_UNDEF || (jv_truthy(boolean) && !jv_truthy(v))) return dflt;
        return v;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v.type) {
        case JV_STR: return jv_int((int64_t)ts_utf8_count(v.u.s->data, v.u.s->len));
        case JV_LIST: return jv_int((int64_t)v.u.l->n);
        case JV_DICT: return jv_int((int64_t)v.u.d->n);
        case JV_UNDEF: return jv_int(0);
        default: fail(c, at, "object of type '%s' has no len()%s", jv_type_name(v), NULL);
        }
    }
    if (!strcmp(name, "string")) return jv_to_string(A, F, &c->scratch, v);
    if (!strcmp(name, "tojson")) return to_json(c, at, v, args);
    if (!strcmp(name, "join")) return join(c, at, v, args);
    if (!strcmp(name, "list")) {
        jv items = as_list(c, at, v), out = jv_list_new(A, F, items.u.l->n);
        for (size_t i = 0; i < items.u.l->n; i++) jv_list_push(A, F, out, items.u.l->items[i]);
        return out;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jv items = as_list(c, at, v);
        if (!items.u.l->n) return jv_undef("no first/last item of an empty sequence");
        return items.u.l->items[name[0] == 'f' ? 0 : items.u.l->n - 1];
    }
    if (!strcmp(name, "items")) {
        if (v.type == JV_UNDEF) return jv_list_new(A, F, 0);
        if (v.type != JV_DICT) fail(c, at, "items expects a mapping, found %s%s", jv_type_name(v), NULL);
        jv out = jv_list_new(A, F, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv pair = jv_list_new(A, F, 2), k;
            pair.u.l->tuple = 1;
            k.type = JV_STR;
            k.u.s = v.u.d->keys[i];
            jv_list_push(A, F, pair, k);
            jv_list_push(A, F, pair, v.u.d->vals[i]);
            jv_list_push(A, F, out, pair);
        }
        return out;
    }
    if (!strcmp(name, "int")) return to_int(v, arg_or(args, 0, "default", jv_int(0)));
    if (!strcmp(name, "float")) {
        if (v.type == JV_FLOAT) return v;
        if (v.type == JV_INT || v.type == JV_BOOL) return jv_float(v.type == JV_INT ? (double)v.u.i : v.u.b);
        if (v.type == JV_STR) {
            char *end;
            double d = strtod(v.u.s->data, &end);
            if (end != v.u.s->data && !*end) return jv_float(d);
        }
        return arg_or(args, 0, "default", jv_float(0.0));
    }
    if (!strcmp(name, "abs")) {
        if (v.type == JV_INT) return jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        if (v.type == JV_FLOAT) return jv_float(fabs(v.u.f));
        fail(c, at, "abs expects a number, found %s%s", jv_type_name(v), NULL);
    }
    if (!strcmp(name, "round")) {
        jv prec = arg_or(args, 0, "precision", jv_int(0)), method = arg_or(args, 1, "method", jv_none());
        if (v.type != JV_INT && v.type != JV_FLOAT) fail(c, at, "round expects a number, found %s%s", jv_type_name(v), NULL);
        double x = v.type == JV_INT ? (double)v.u.i : v.u.f, scale = pow(10, prec.type == JV_INT ? (double)prec.u.i : 0);
        const char *m = method.type == JV_STR ? method.u.s->data : "common";
        /* "common" is Python's round(): halves go to the even neighbour */
        double r = !strcmp(m, "floor") ? floor(x * scale) / scale : !strcmp(m, "ceil") ? ceil(x * scale) / scale
                                                                                       : nearbyint(x * scale) / scale;
        return jv_float(r);
    }
    if (!strcmp(name, "trim")) {
        jv chars = arg_or(args, 0, "chars", jv_none());
        return strip(c, need_str(c, at, v, "trim"), chars.type == JV_STR ? chars.u.s : NULL, 3);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        jv s = jv_to_string(A, F, &c->scratch, v);
        return map_case(c, s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3);
    }
    if (!strcmp(name, "replace")) {
        jv s = jv_to_string(A, F, &c->scratch, v);
        jv count = arg_or(args, 2, "count", jv_none());
        if (args->n_pos < 2) fail(c, at, "replace needs the old and the new string%s%s", "", NULL);
        return replace(c, at, s, args->pos[0], args->pos[1], count.type == JV_INT ? count.u.i : -1);
    }
    if (!strcmp(name, "reverse")) {
        if (v.type == JV_STR) {
            jv items = as_list(c, at, v);
            char *out = jj_alloc(A, F, v.u.s->len + 1);
            size_t o = 0;
            for (size_t i = items.u.l->n; i-- > 0;) {
                memcpy(out + o, items.u.l->items[i].u.s->data, items.u.l->items[i].u.s->len);
                o += items.u.l->items[i].u.s->len;
            }
            return str_from_buf(c, out, o);
        }
        jv items = as_list(c, at, v), out = jv_list_new(A, F, items.u.l->n);
        for (size_t i = items.u.l->n; i-- > 0;) jv_list_push(A, F, out, items.u.l->items[i]);
        return out;
    }
    if (!strcmp(name, "sort")) {
        jv rev = arg_or(args, 0, "reverse", jv_bool(0)), cs = arg_or(args, 1, "case_sensitive", jv_bool(0));
        jv attr = arg_or(args, 2, "attribute", jv_none());
        return sorted_copy(c, at, as_list(c, at, v), jv_truthy(rev), jv_truthy(cs), attr);
    }
    if (!strcmp(name, "unique")) {
        jv items = as_list(c, at, v), out = jv_list_new(A, F, 0);
        jv cs = arg_or(args, 0, "case_sensitive", jv_bool(0));
        for (size_t i = 0; i < items.u.l->n; i++) {
            jv x = items.u.l->items[i];
            jv key = (!jv_truthy(cs) && x.type == JV_STR) ? map_case(c, x, 0) : x;
            int seen = 0;
            for (size_t k = 0; k < out.u.l->n && !seen; k++) {
                jv y = out.u.l->items[k];
                seen = jv_equal(key, (!jv_truthy(cs) && y.type == JV_STR) ? map_case(c, y, 0) : y, &c->steps);
            }
            jj_charge(c, at, 0); /* quadratic in the number of distinct items */
            if (!seen) jv_list_push(A, F, out, x);
        }
        return out;
    }
    if (!strcmp(name, "sum")) {
        jv attr = arg_or(args, 0, "attribute", jv_none()), total = arg_or(args, 1, "start", jv_int(0));
        jv items = as_list(c, at, v);
        for (size_t i = 0; i < items.u.l->n; i++) {
            jv x = attr.type == JV_NONE ? items.u.l->items[i] : attribute_of(items.u.l->items[i], attr);
            if ((x.type != JV_INT && x.type != JV_FLOAT) || (total.type != JV_INT && total.type != JV_FLOAT))
                fail(c, at, "sum expects numbers, found %s%s", jv_type_name(x), NULL);
            if (x.type == JV_INT && total.type == JV_INT) {
                int64_t r;
                if (__builtin_add_overflow(total.u.i, x.u.i, &r)) fail(c, at, "integer overflow%s%s", "", NULL);
                total = jv_int(r);
            } else
                total = jv_float((total.type == JV_INT ? (double)total.u.i : total.u.f) + (x.type == JV_INT ? (double)x.u.i : x.u.f));
        }
        return total;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        jv cs = arg_or(args, 0, "case_sensitive", jv_bool(0)), attr = arg_or(args, 1, "attribute", jv_none());
        jv items = as_list(c, at, v);
        if (!items.u.l->n) return jv_undef("no min/max of an empty sequence");
        jv best = items.u.l->items[0];
        for (size_t i = 1; i < items.u.l->n; i++) {
            jv x = items.u.l->items[i];
            int less = sort_less(c, at, x, best, attr, jv_truthy(cs));
            if (name[1] == 'i' ? less : sort_less(c, at, best, x, attr, jv_truthy(cs))) best = x;
        }
        return best;
    }
    if (!strcmp(name, "selectattr")) return select_items(c, at, v, args, 1, 1);
    if (!strcmp(name, "rejectattr")) return select_items(c, at, v, args, 1, 0);
    if (!strcmp(name, "select")) return select_items(c, at, v, args, 0, 1);
    if (!strcmp(name, "reject")) return select_items(c, at, v, args, 0, 0);
    if (!strcmp(name, "map")) {
        jv items = as_list(c, at, v), out = jv_list_new(A, F, items.u.l->n);
        jv attr;
        if (jj_kwarg(args, "attribute", &attr)) {
            jv dflt = jv_undef("attribute");
            jj_kwarg(args, "default", &dflt);
            for (size_t i = 0; i < items.u.l->n; i++) {
                jv x = attribute_of(items.u.l->items[i], attr);
                jv_list_push(A, F, out, x.type == JV_UNDEF ? dflt : x);
            }
            return out;
        }
        if (!args->n_pos || args->pos[0].type != JV_STR) fail(c, at, "map needs a filter name or attribute=%s%s", "", NULL);
        const char *fname = args->pos[0].u.s->data;
        if (!jj_filter_exists(fname) || !strcmp(fname, "map")) fail(c, at, "unsupported filter '%s'%s", fname, NULL);
        jj_args rest = *args;
        memmove(rest.pos, rest.pos + 1, (rest.n_pos - 1) * sizeof(jv));
        rest.n_pos--;
        for (size_t i = 0; i < items.u.l->n; i++) jv_list_push(A, F, out, filter_by_name(c, at, fname, items.u.l->items[i], &rest));
        return out;
    }
    if (!strcmp(name, "indent")) return indent_text(c, at, v, args);
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        jv s = jv_to_string(A, F, &c->scratch, v);
        c->scratch.len = 0;
        for (size_t i = 0; i < s.u.s->len; i++) {
            char ch = s.u.s->data[i];
            const char *rep = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&#34;" : ch == '\'' ? "&#39;" : NULL;
            if (rep) jj_buf_puts(&c->scratch, F, rep);
            else jj_buf_put(&c->scratch, F, &ch, 1);
        }
        return str_from_buf(c, c->scratch.data ? c->scratch.data : "", c->scratch.len);
    }
    if (!strcmp(name, "attr")) { /* Python attributes only, never items: none of our values has one */
        if (!args->n_pos) fail(c, at, "attr needs a name%s%s", "", NULL);
        return jv_undef("attribute");
    }
    if (!strcmp(name, "wordcount")) {
        jv words = split(c, at, jv_to_string(A, F, &c->scratch, v), jv_none(), -1);
        return jv_int((int64_t)words.u.l->n);
    }
    fail(c, at, "unsupported filter '%s'%s", name, NULL);
}

jv jj_apply_filter(jj_ctx *c, jj_frame *fr, const jj_node *n, jv value) {
    jj_args args;
    jj_eval_args(c, fr, n, &args, 1);
    jj_charge(c, n, jv_scan_cost(value)); /* every filter passes over its operand at least once */
    jv r = filter_by_name(c, n, n->name, value, &args);
    jj_charge(c, n, 0);
    return r;
}

/* ---- methods ---- */

int jj_call_method(jj_ctx *c, jj_frame *fr, const jj_node *call, jv obj, const char *name, jv *out) {
    jj_charge(c, call, jv_scan_cost(obj)); /* string and list methods pass over their object */
    if (obj.type == JV_STR) {
        static const char *const methods[] = {"startswith", "endswith", "split", "strip", "lstrip", "rstrip", "upper",
                                              "lower", "title", "capitalize", "replace", "find", "count", "join",
                                              "isdigit", "isspace", "isalpha", "isalnum", "format", "rsplit", NULL};
        if (!in_table(methods, name)) return 0;
        jj_args args;
        jj_eval_args(c, fr, call, &args, 0);
        jv a0 = arg_or(&args, 0, NULL, jv_none());
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) *out = jv_bool(affix(c, call, obj, a0, name[0] == 'e'));
        else if (!strcmp(name, "split")) {
            jv sep = arg_or(&args, 0, "sep", jv_none()), maxsplit = arg_or(&args, 1, "maxsplit", jv_int(-1));
            *out = split(c, call, obj, sep, maxsplit.type == JV_INT ? maxsplit.u.i : -1);
        } else if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            const jj_str *chars = a0.type == JV_STR ? a0.u.s : NULL;
            *out = strip(c, obj, chars, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
        } else if (!strcmp(name, "upper")) *out = map_case(c, obj, 1);
        else if (!strcmp(name, "lower")) *out = map_case(c, obj, 0);
        else if (!strcmp(name, "capitalize")) *out = map_case(c, obj, 2);
        else if (!strcmp(name, "title")) *out = map_case(c, obj, 3);
        else if (!strcmp(name, "replace")) {
            if (args.n_pos < 2) fail(c, call, "replace needs the old and the new string%s%s", "", NULL);
            jv count = arg_or(&args, 2, "count", jv_int(-1));
            *out = replace(c, call, obj, args.pos[0], args.pos[1], count.type == JV_INT ? count.u.i : -1);
        } else if (!strcmp(name, "find") || !strcmp(name, "count")) {
            need_str(c, call, a0, name);
            const jj_str *t = obj.u.s, *p = a0.u.s;
            if (name[0] == 'f') {
                const char *hit = p->len ? memmem(t->data, t->len, p->data, p->len) : t->data;
                *out = jv_int(hit ? cp_index_of_byte(t, (size_t)(hit - t->data)) : -1);
            } else {
                int64_t n = 0;
                if (!p->len) n = (int64_t)ts_utf8_count(t->data, t->len) + 1;
                else
                    for (const char *q = t->data; (q = memmem(q, t->len - (size_t)(q - t->data), p->data, p->len)); q += p->len) n++;
                *out = jv_int(n);
            }
        } else if (!strcmp(name, "join")) {
            jj_args jargs;
            memset(&jargs, 0, sizeof jargs);
            jargs.pos[0] = obj;
            jargs.n_pos = 1;
            jv items = as_list(c, call, a0);
            for (size_t i = 0; i < items.u.l->n; i++)
                if (items.u.l->items[i].type != JV_STR)
                    fail(c, call, "join: sequence item is %s, expected str%s", jv_type_name(items.u.l->items[i]), NULL);
            *out = join(c, call, items, &jargs);
        } else if (!strncmp(name, "is", 2)) {
            int all = obj.u.s->len > 0;
            for (size_t i = 0; i < obj.u.s->len && all;) {
                size_t n;
                int32_t cp = cp_at(obj.u.s, i, &n);
                unsigned cls = ts_uni_class(cp);
                if (!strcmp(name, "isdigit")) all = utf8proc_category(cp) == UTF8PROC_CATEGORY_ND;
                else if (!strcmp(name, "isspace")) all = py_isspace(cp);
                else if (!strcmp(name, "isalpha")) all = (cls & TS_UNI_LETTER) != 0;
                else all = (cls & (TS_UNI_LETTER | TS_UNI_NUMBER)) != 0;
                i += n;
            }
            *out = jv_bool(all);
        } else
            fail(c, call, "unsupported construct: str.%s()%s", name, NULL);
        return 1;
    }
    if (obj.type == JV_DICT) {
        if (obj.u.d->kind == JJ_DICT_LOOP && !strcmp(name, "cycle")) {
            jj_args args;
            jj_eval_args(c, fr, call, &args, 0);
            if (!args.n_pos) fail(c, call, "loop.cycle needs at least one value%s%s", "", NULL);
            jv index0;
            jv_dict_get(obj, "index0", 6, &index0);
            *out = args.pos[(size_t)index0.u.i % args.n_pos];
            return 1;
        }
        if (obj.u.d->kind != JJ_DICT_PLAIN) return 0;
        if (strcmp(name, "items") && strcmp(name, "keys") && strcmp(name, "values") && strcmp(name, "get")) return 0;
        jj_args args;
        jj_eval_args(c, fr, call, &args, 0);
        if (!strcmp(name, "items")) {
            *out = filter_by_name(c, call, "items", obj, &args);
        } else if (!strcmp(name, "get")) {
            jv key = arg_or(&args, 0, NULL, jv_none()), dflt = arg_or(&args, 1, NULL, jv_none());
            jv v;
            *out = key.type == JV_STR && jv_dict_get(obj, key.u.s->data, key.u.s->len, &v) ? v : dflt;
        } else {
            jv l = jv_list_new(A, F, obj.u.d->n);
            for (size_t i = 0; i < obj.u.d->n; i++) {
                jv k;
                k.type = JV_STR;
                k.u.s = obj.u.d->keys[i];
                jv_list_push(A, F, l, name[0] == 'k' ? k : obj.u.d->vals[i]);
            }
            *out = l;
        }
        return 1;
    }
    if (obj.type == JV_LIST && (!strcmp(name, "append") || !strcmp(name, "pop") || !strcmp(name, "extend") ||
                                !strcmp(name, "insert") || !strcmp(name, "remove") || !strcmp(name, "clear")))
        fail(c, call, "unsupported construct: list.%s() (the sandbox forbids modifying lists)%s", name, NULL);
    return 0;
}

/* ---- global functions ---- */

jv jj_call_global(jj_ctx *c, jj_frame *fr, const jj_node *call, int fn) {
    jj_args args;
    jj_eval_args(c, fr, call, &args, 0);
    switch (fn) {
    case JJ_FN_RANGE: {
        int64_t start = 0, stop, stepv = 1;
        for (size_t i = 0; i < args.n_pos; i++)
            if (args.pos[i].type != JV_INT) fail(c, call, "range expects integers, found %s%s", jv_type_name(args.pos[i]), NULL);
        if (args.n_pos == 1) stop = args.pos[0].u.i;
        else if (args.n_pos == 2 || args.n_pos == 3) {
            start = args.pos[0].u.i;
            stop = args.pos[1].u.i;
            if (args.n_pos == 3) stepv = args.pos[2].u.i;
        } else
            fail(c, call, "range takes 1 to 3 arguments%s%s", "", NULL);
        if (stepv == 0) fail(c, call, "range step cannot be zero%s%s", "", NULL);
        double count = ceil(((double)stop - (double)start) / (double)stepv);
        if (count > 1e7) fail(c, call, "range of more than 10 million items%s%s", "", NULL);
        jv out = jv_list_new(A, F, count > 0 ? (size_t)count : 0);
        for (int64_t i = start; stepv > 0 ? i < stop : i > stop; i += stepv) jv_list_push(A, F, out, jv_int(i));
        return out;
    }
    case JJ_FN_NAMESPACE: case JJ_FN_DICT: {
        jv d = jv_dict_new(A, F, fn == JJ_FN_NAMESPACE ? JJ_DICT_NAMESPACE : JJ_DICT_PLAIN);
        for (size_t i = 0; i < args.n_pos; i++) {
            if (args.pos[i].type != JV_DICT) fail(c, call, "%s() takes mappings or keyword arguments%s", fn == JJ_FN_DICT ? "dict" : "namespace", NULL);
            for (size_t k = 0; k < args.pos[i].u.d->n; k++) jv_dict_set(A, F, d, args.pos[i].u.d->keys[k], args.pos[i].u.d->vals[k]);
        }
        for (size_t i = 0; i < args.n_kw; i++)
            jv_dict_set(A, F, d, jj_str_new(A, F, args.kw_names[i], strlen(args.kw_names[i])), args.kw[i]);
        return d;
    }
    case JJ_FN_RAISE: {
        jv msg = args.n_pos ? jv_to_string(A, F, &c->scratch, args.pos[0]) : str_from_buf(c, "", 0);
        jj_raise(F, call->line, call->col, "template error: %s", msg.u.s->data);
    }
    case JJ_FN_STRFTIME: {
        if (!args.n_pos || args.pos[0].type != JV_STR) fail(c, call, "strftime_now needs a format string%s%s", "", NULL);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[256];
        size_t n = strftime(buf, sizeof buf, args.pos[0].u.s->data, &tm);
        return str_from_buf(c, buf, n);
    }
    default: fail(c, call, "unknown function%s%s", "", NULL);
    }
}
