/* Jinja evaluation: expressions with Python semantics, statements writing to the output buffer, scopes
 * (a for loop iteration and a macro call get their own; if does not), loop controls, and the public
 * parse/render entry points with their limits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"
#include "tokenizer/unicode_text.h"

enum { FLOW_NORMAL = 0, FLOW_BREAK = 1, FLOW_CONTINUE = 2 };

ts_jinja_limits ts_jinja_default_limits(void) {
    ts_jinja_limits l = {(size_t)1 << 20, (size_t)64 << 20, 10000000, 64};
    return l;
}

void jj_charge(jj_ctx *c, const jj_node *at, uint64_t units) {
    c->steps += units;
    if (c->steps > c->max_steps)
        jj_raise(&c->fail, at->line, at->col, "template exceeded %llu evaluation steps", (unsigned long long)c->max_steps);
}

uint64_t jv_scan_cost(jv v) {
    switch (v.type) {
    case JV_LIST: return v.u.l->n;
    case JV_DICT: return v.u.d->n;
    case JV_STR: return v.u.s->len / 64;
    default: return 0;
    }
}

static void step(jj_ctx *c, const jj_node *n) { jj_charge(c, n, 1); }

static jj_frame *frame_new(jj_ctx *c, jj_frame *parent) {
    jj_frame *fr = jj_alloc(&c->arena, &c->fail, sizeof *fr);
    fr->parent = parent;
    fr->vars = jv_dict_new(&c->arena, &c->fail, JJ_DICT_PLAIN);
    return fr;
}

static void frame_set(jj_ctx *c, jj_frame *fr, const char *name, jv v) {
    jj_dict *d = fr->vars.u.d;
    size_t len = strlen(name);
    for (size_t i = 0; i <= d->n && i < d->cap; i++) {
        /* i == n: a slot left by a scope reset may still hold this name */
        if (d->keys[i] && d->keys[i]->len == len && !memcmp(d->keys[i]->data, name, len)) {
            d->vals[i] = v;
            if (i == d->n) d->n++;
            return;
        }
    }
    jv_dict_set(&c->arena, &c->fail, fr->vars, jj_str_new(&c->arena, &c->fail, name, len), v);
}

static int lookup(jj_frame *fr, const char *name, jv *out) {
    size_t len = strlen(name);
    for (; fr; fr = fr->parent)
        if (jv_dict_get(fr->vars, name, len, out)) return 1;
    return 0;
}

void jj_iterate(jj_ctx *c, const jj_node *at, jv v, jv *list_out) {
    switch (v.type) {
    case JV_LIST: *list_out = v; return;
    case JV_UNDEF: *list_out = jv_list_new(&c->arena, &c->fail, 0); return;
    case JV_DICT: {
        jv l = jv_list_new(&c->arena, &c->fail, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv k;
            k.type = JV_STR;
            k.u.s = v.u.d->keys[i];
            jv_list_push(&c->arena, &c->fail, l, k);
        }
        *list_out = l;
        return;
    }
    case JV_STR: {
        jv l = jv_list_new(&c->arena, &c->fail, 0);
        const jj_str *s = v.u.s;
        for (size_t i = 0; i < s->len;) {
            size_t n = 1;
            while (i + n < s->len && ((unsigned char)s->data[i + n] & 0xC0) == 0x80) n++;
            jv_list_push(&c->arena, &c->fail, l, jv_str(&c->arena, &c->fail, s->data + i, n));
            i += n;
        }
        *list_out = l;
        return;
    }
    default:
        jj_raise(&c->fail, at->line, at->col, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- arithmetic ---- */

static int is_num(jv v) { return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL; }
static double num_d(jv v) { return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : v.u.b; }
static int64_t num_i(jv v) { return v.type == JV_INT ? v.u.i : v.u.b; }

static jv concat_strings(jj_ctx *c, jv a, jv b) {
    size_t n = a.u.s->len + b.u.s->len;
    jj_str *s = jj_alloc(&c->arena, &c->fail, sizeof *s + n + 1);
    memcpy(s->data, a.u.s->data, a.u.s->len);
    memcpy(s->data + a.u.s->len, b.u.s->data, b.u.s->len);
    s->data[n] = '\0';
    s->len = n;
    jv v;
    v.type = JV_STR;
    v.u.s = s;
    return v;
}

static jv repeat(jj_ctx *c, const jj_node *n, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.type == JV_STR) {
        size_t len = seq.u.s->len;
        if (!len) times = 0; /* the result is empty at any count: no loop of 2 ** 36 empty copies */
        if (len && (uint64_t)times > c->arena.limit / len)
            jj_raise(&c->fail, n->line, n->col, "string repetition exceeds the memory limit");
        jj_str *s = jj_alloc(&c->arena, &c->fail, sizeof *s + len * (size_t)times + 1);
        for (int64_t i = 0; i < times; i++) memcpy(s->data + (size_t)i * len, seq.u.s->data, len);
        s->len = len * (size_t)times;
        s->data[s->len] = '\0';
        jv v;
        v.type = JV_STR;
        v.u.s = s;
        return v;
    }
    size_t len = seq.u.l->n;
    if (!len) times = 0;
    if (len && (uint64_t)times > c->arena.limit / (len * sizeof(jv)))
        jj_raise(&c->fail, n->line, n->col, "list repetition exceeds the memory limit");
    jv out = jv_list_new(&c->arena, &c->fail, len * (size_t)times);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < len; k++) jv_list_push(&c->arena, &c->fail, out, seq.u.l->items[k]);
    return out;
}

static jv arith(jj_ctx *c, const jj_node *n, int op, jv a, jv b) {
    jj_fail *f = &c->fail;
    if (op == JOP_ADD) {
        if (a.type == JV_STR && b.type == JV_STR) return concat_strings(c, a, b);
        if (a.type == JV_LIST && b.type == JV_LIST) {
            jv out = jv_list_new(&c->arena, f, a.u.l->n + b.u.l->n);
            for (size_t i = 0; i < a.u.l->n; i++) jv_list_push(&c->arena, f, out, a.u.l->items[i]);
            for (size_t i = 0; i < b.u.l->n; i++) jv_list_push(&c->arena, f, out, b.u.l->items[i]);
            return out;
        }
    }
    if (op == JOP_MUL) {
        if ((a.type == JV_STR || a.type == JV_LIST) && (b.type == JV_INT || b.type == JV_BOOL)) return repeat(c, n, a, num_i(b));
        if ((b.type == JV_STR || b.type == JV_LIST) && (a.type == JV_INT || a.type == JV_BOOL)) return repeat(c, n, b, num_i(a));
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *const names[] = {"+", "-", "*", "/", "//", "%", "**"};
        if (a.type == JV_UNDEF || b.type == JV_UNDEF)
            jj_raise(f, n->line, n->col, "'%s' is undefined", a.type == JV_UNDEF ? (a.u.undef ? a.u.undef : "value")
                                                                              : (b.u.undef ? b.u.undef : "value"));
        if (op == JOP_MOD && a.type == JV_STR)
            jj_raise(f, n->line, n->col, "unsupported construct: %%-formatting of strings");
        jj_raise(f, n->line, n->col, "unsupported operand types for %s: '%s' and '%s'", names[op], jv_type_name(a),
                 jv_type_name(b));
    }
    int floating = a.type == JV_FLOAT || b.type == JV_FLOAT;
    if (op == JOP_DIV) {
        if (num_d(b) == 0) jj_raise(f, n->line, n->col, "division by zero");
        return jv_float(num_d(a) / num_d(b));
    }
    if (floating) {
        double x = num_d(a), y = num_d(b);
        switch (op) {
        case JOP_ADD: return jv_float(x + y);
        case JOP_SUB: return jv_float(x - y);
        case JOP_MUL: return jv_float(x * y);
        case JOP_FLOORDIV:
            if (y == 0) jj_raise(f, n->line, n->col, "division by zero");
            return jv_float(floor(x / y));
        case JOP_MOD: {
            if (y == 0) jj_raise(f, n->line, n->col, "modulo by zero");
            double r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return jv_float(r);
        }
        default: return jv_float(pow(x, y));
        }
    }
    int64_t x = num_i(a), y = num_i(b), r;
    switch (op) {
    case JOP_ADD: if (__builtin_add_overflow(x, y, &r)) goto overflow; return jv_int(r);
    case JOP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto overflow; return jv_int(r);
    case JOP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto overflow; return jv_int(r);
    case JOP_FLOORDIV:
    case JOP_MOD: {
        if (y == 0) jj_raise(f, n->line, n->col, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) goto overflow;
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
        return jv_int(op == JOP_FLOORDIV ? q : m);
    }
    default: {
        if (y < 0) return jv_float(pow((double)x, (double)y));
        int64_t result = 1, base = x;
        for (int64_t e = y; e > 0; e >>= 1) {
            if ((e & 1) && __builtin_mul_overflow(result, base, &result)) goto overflow;
            if (e > 1 && __builtin_mul_overflow(base, base, &base)) goto overflow;
        }
        return jv_int(result);
    }
    }
overflow:
    jj_raise(f, n->line, n->col, "integer overflow");
}

static int contains(jj_ctx *c, const jj_node *n, jv needle, jv hay) {
    switch (hay.type) {
    case JV_STR:
        if (needle.type != JV_STR)
            jj_raise(&c->fail, n->line, n->col, "'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        if (!needle.u.s->len) return 1;
        jj_charge(c, n, jv_scan_cost(hay));
        return memmem(hay.u.s->data, hay.u.s->len, needle.u.s->data, needle.u.s->len) != NULL;
    case JV_LIST: {
        int found = 0;
        for (size_t i = 0; i < hay.u.l->n && !found; i++) found = jv_equal(needle, hay.u.l->items[i], &c->steps);
        jj_charge(c, n, 0);
        return found;
    }
    case JV_DICT: {
        if (needle.type != JV_STR) return 0;
        jv unused;
        jj_charge(c, n, jv_scan_cost(hay));
        return jv_dict_get(hay, needle.u.s->data, needle.u.s->len, &unused);
    }
    case JV_UNDEF: return 0;
    default: jj_raise(&c->fail, n->line, n->col, "argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

/* ---- attribute and item access ---- */

static jv undefined_access(jj_ctx *c, const jj_node *n, jv obj) {
    jj_raise(&c->fail, n->line, n->col, "'%s' is undefined", obj.u.undef ? obj.u.undef : "value");
}

static jv get_attr(jj_ctx *c, const jj_node *n, jv obj, const char *name) {
    if (obj.type == JV_UNDEF) undefined_access(c, n->a ? n->a : n, obj);
    if (obj.type == JV_DICT) {
        jv v;
        if (jv_dict_get(obj, name, strlen(name), &v)) return v;
    }
    /* Jinja yields an undefined value; using it further names what was missing */
    size_t need = strlen(name) + 64;
    char *what = jj_alloc(&c->arena, &c->fail, need);
    snprintf(what, need, "'%s object' has no attribute '%s'", jv_type_name(obj), name);
    return jv_undef(what);
}

static int64_t normalize_index(int64_t i, int64_t len) { return i < 0 ? i + len : i; }

static jv str_char_at(jj_ctx *c, jv s, int64_t idx, int *ok) {
    int64_t k = 0;
    for (size_t i = 0; i < s.u.s->len;) {
        size_t n = 1;
        while (i + n < s.u.s->len && ((unsigned char)s.u.s->data[i + n] & 0xC0) == 0x80) n++;
        if (k == idx) { *ok = 1; return jv_str(&c->arena, &c->fail, s.u.s->data + i, n); }
        k++;
        i += n;
    }
    *ok = 0;
    return jv_undef(NULL);
}

static jv get_item(jj_ctx *c, const jj_node *n, jv obj, jv key) {
    if (obj.type == JV_UNDEF) undefined_access(c, n->a ? n->a : n, obj);
    if (obj.type == JV_DICT && key.type == JV_STR) {
        jv v;
        if (jv_dict_get(obj, key.u.s->data, key.u.s->len, &v)) return v;
        size_t need = key.u.s->len + 64;
        char *what = jj_alloc(&c->arena, &c->fail, need);
        snprintf(what, need, "'dict object' has no attribute '%s'", key.u.s->data);
        return jv_undef(what);
    }
    if ((obj.type == JV_LIST || obj.type == JV_STR) && (key.type == JV_INT || key.type == JV_BOOL)) {
        if (obj.type == JV_LIST) {
            int64_t i = normalize_index(num_i(key), (int64_t)obj.u.l->n);
            if (i >= 0 && i < (int64_t)obj.u.l->n) return obj.u.l->items[i];
        } else {
            int64_t len = (int64_t)ts_utf8_count(obj.u.s->data, obj.u.s->len);
            int ok;
            jv ch = str_char_at(c, obj, normalize_index(num_i(key), len), &ok);
            if (ok) return ch;
        }
        return jv_undef("index out of range");
    }
    return jv_undef("item not found");
}

static int64_t slice_bound(jj_ctx *c, jj_frame *fr, const jj_node *e, int64_t len, int64_t dflt, int step_neg) {
    if (!e) return dflt;
    jv v = jj_eval(c, fr, e);
    if (v.type == JV_NONE) return dflt;
    if (v.type != JV_INT && v.type != JV_BOOL)
        jj_raise(&c->fail, e->line, e->col, "slice indices must be integers, not %s", jv_type_name(v));
    int64_t i = num_i(v);
    if (i < 0) {
        i += len;
        if (i < 0) i = step_neg ? -1 : 0;
    } else if (i >= len)
        i = step_neg ? len - 1 : len;
    return i;
}

static jv eval_slice(jj_ctx *c, jj_frame *fr, const jj_node *n) {
    jv obj = jj_eval(c, fr, n->a);
    int64_t step = 1;
    if (n->items[0]) {
        jv s = jj_eval(c, fr, n->items[0]);
        if (s.type != JV_NONE) {
            if (s.type != JV_INT) jj_raise(&c->fail, n->line, n->col, "slice step must be an integer");
            step = s.u.i;
        }
        if (step == 0) jj_raise(&c->fail, n->line, n->col, "slice step cannot be zero");
    }
    jv items;
    int is_str = obj.type == JV_STR;
    if (is_str) jj_iterate(c, n, obj, &items);
    else if (obj.type == JV_LIST) items = obj;
    else jj_raise(&c->fail, n->line, n->col, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t len = (int64_t)items.u.l->n;
    int64_t start = slice_bound(c, fr, n->b, len, step > 0 ? 0 : len - 1, step < 0);
    int64_t stop = slice_bound(c, fr, n->c, len, step > 0 ? len : -1, step < 0);
    jv out = jv_list_new(&c->arena, &c->fail, 0);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) jv_list_push(&c->arena, &c->fail, out, items.u.l->items[i]);
    if (!is_str) return out;
    size_t total = 0;
    for (size_t i = 0; i < out.u.l->n; i++) total += out.u.l->items[i].u.s->len;
    jj_str *s = jj_alloc(&c->arena, &c->fail, sizeof *s + total + 1);
    s->len = 0;
    for (size_t i = 0; i < out.u.l->n; i++) {
        memcpy(s->data + s->len, out.u.l->items[i].u.s->data, out.u.l->items[i].u.s->len);
        s->len += out.u.l->items[i].u.s->len;
    }
    s->data[s->len] = '\0';
    jv r;
    r.type = JV_STR;
    r.u.s = s;
    return r;
}

/* ---- calls ---- */

void jj_eval_args(jj_ctx *c, jj_frame *fr, const jj_node *n, jj_args *args, size_t skip_items) {
    memset(args, 0, sizeof *args);
    for (size_t i = skip_items; i < n->n_items; i++) args->pos[args->n_pos++] = jj_eval(c, fr, n->items[i]);
    for (size_t i = 0; i < n->n_items2; i++) {
        args->kw_names[args->n_kw] = n->names[i];
        args->kw[args->n_kw++] = jj_eval(c, fr, n->items2[i]);
    }
}

int jj_kwarg(const jj_args *a, const char *name, jv *out) {
    for (size_t i = 0; i < a->n_kw; i++)
        if (!strcmp(a->kw_names[i], name)) {
            *out = a->kw[i];
            return 1;
        }
    return 0;
}

static void exec_body(jj_ctx *c, jj_frame *fr, const jj_node *body, int *flow);

jv jj_call_macro(jj_ctx *c, jj_frame *fr, const jj_node *call, jv macro) {
    const jj_node *m = macro.u.macro;
    if (++c->depth > c->max_depth)
        jj_raise(&c->fail, call->line, call->col, "macro calls nest deeper than %d", c->max_depth);
    jj_args args;
    jj_eval_args(c, fr, call, &args, 0);
    if (args.n_pos > m->n_names)
        jj_raise(&c->fail, call->line, call->col, "macro '%s' takes %zu arguments, %zu given", m->name, m->n_names, args.n_pos);
    jj_frame *local = frame_new(c, c->globals);
    for (size_t i = 0; i < m->n_names; i++) {
        jv v;
        if (i < args.n_pos) v = args.pos[i];
        else if (jj_kwarg(&args, m->names[i], &v)) {
        } else if (m->items2[i]) v = jj_eval(c, local, m->items2[i]);
        else v = jv_undef(m->names[i]);
        frame_set(c, local, m->names[i], v);
    }
    for (size_t k = 0; k < args.n_kw; k++) {
        int known = 0;
        for (size_t i = 0; i < m->n_names; i++) known |= !strcmp(m->names[i], args.kw_names[k]);
        if (!known)
            jj_raise(&c->fail, call->line, call->col, "macro '%s' has no parameter '%s'", m->name, args.kw_names[k]);
    }
    /* the macro's text, written after the output so far, becomes its return value */
    size_t mark = c->out.len;
    int flow = FLOW_NORMAL;
    exec_body(c, local, m->a, &flow);
    jv result = jv_str(&c->arena, &c->fail, c->out.data ? c->out.data + mark : "", c->out.len - mark);
    c->out.len = mark;
    c->depth--;
    return result;
}

static jv eval_call(jj_ctx *c, jj_frame *fr, const jj_node *n) {
    if (n->a->kind == JN_GETATTR) {
        jv obj = jj_eval(c, fr, n->a->a);
        jv result;
        if (jj_call_method(c, fr, n, obj, n->a->name, &result)) return result;
        jv target = get_attr(c, n->a, obj, n->a->name);
        if (target.type == JV_MACRO) return jj_call_macro(c, fr, n, target);
        if (target.type == JV_FUNC) return jj_call_global(c, fr, n, target.u.func);
        jj_raise(&c->fail, n->line, n->col, "unsupported method '%s' of a %s value", n->a->name, jv_type_name(obj));
    }
    jv callee = jj_eval(c, fr, n->a);
    if (callee.type == JV_MACRO) return jj_call_macro(c, fr, n, callee);
    if (callee.type == JV_FUNC) return jj_call_global(c, fr, n, callee.u.func);
    if (callee.type == JV_UNDEF)
        jj_raise(&c->fail, n->line, n->col, "'%s' is undefined", callee.u.undef ? callee.u.undef : "function");
    jj_raise(&c->fail, n->line, n->col, "'%s' object is not callable", jv_type_name(callee));
}

jv jj_eval(jj_ctx *c, jj_frame *fr, const jj_node *n) {
    step(c, n);
    switch (n->kind) {
    case JN_LITERAL: return n->value;
    case JN_NAME: {
        jv v;
        if (lookup(fr, n->name, &v)) return v;
        return jv_undef(n->name);
    }
    case JN_GETATTR: return get_attr(c, n, jj_eval(c, fr, n->a), n->name);
    case JN_GETITEM: {
        jv obj = jj_eval(c, fr, n->a);
        return get_item(c, n, obj, jj_eval(c, fr, n->b));
    }
    case JN_SLICE: return eval_slice(c, fr, n);
    case JN_CALL: return eval_call(c, fr, n);
    case JN_FILTER: return jj_apply_filter(c, fr, n, jj_eval(c, fr, n->items[0]));
    case JN_TEST: {
        int r = jj_apply_test(c, fr, n, jj_eval(c, fr, n->items[0]));
        return jv_bool(n->op ? !r : r);
    }
    case JN_NEG: case JN_POS: {
        jv v = jj_eval(c, fr, n->a);
        if (!is_num(v)) jj_raise(&c->fail, n->line, n->col, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', jv_type_name(v));
        if (n->kind == JN_POS) return v.type == JV_BOOL ? jv_int(v.u.b) : v;
        if (v.type == JV_FLOAT) return jv_float(-v.u.f);
        if (num_i(v) == INT64_MIN) jj_raise(&c->fail, n->line, n->col, "integer overflow");
        return jv_int(-num_i(v));
    }
    case JN_NOT: return jv_bool(!jv_truthy(jj_eval(c, fr, n->a)));
    case JN_AND: {
        jv a = jj_eval(c, fr, n->a);
        return jv_truthy(a) ? jj_eval(c, fr, n->b) : a;
    }
    case JN_OR: {
        jv a = jj_eval(c, fr, n->a);
        return jv_truthy(a) ? a : jj_eval(c, fr, n->b);
    }
    case JN_COND:
        if (jv_truthy(jj_eval(c, fr, n->a))) return jj_eval(c, fr, n->b);
        return n->c ? jj_eval(c, fr, n->c) : jv_undef("conditional expression without else");
    case JN_BINOP: {
        jv a = jj_eval(c, fr, n->a), b = jj_eval(c, fr, n->b);
        switch (n->op) {
        case JOP_CONCAT: {
            jv sa = jv_to_string(&c->arena, &c->fail, &c->scratch, a);
            jv sb = jv_to_string(&c->arena, &c->fail, &c->scratch, b);
            return concat_strings(c, sa, sb);
        }
        case JOP_EQ: case JOP_NE: case JOP_LT: case JOP_LE: case JOP_GT: case JOP_GE: {
            int r = n->op == JOP_EQ || n->op == JOP_NE ? !jv_equal(a, b, &c->steps)
                                                       : jv_compare(&c->fail, n->line, n->col, a, b, &c->steps);
            jj_charge(c, n, 0);
            switch (n->op) {
            case JOP_EQ: return jv_bool(r == 0);
            case JOP_NE: return jv_bool(r != 0);
            case JOP_LT: return jv_bool(r < 0);
            case JOP_LE: return jv_bool(r <= 0);
            case JOP_GT: return jv_bool(r > 0);
            default: return jv_bool(r >= 0);
            }
        }
        case JOP_IN: return jv_bool(contains(c, n, a, b));
        case JOP_NOT_IN: return jv_bool(!contains(c, n, a, b));
        default: return arith(c, n, n->op, a, b);
        }
    }
    case JN_LIST: case JN_TUPLE: {
        jv l = jv_list_new(&c->arena, &c->fail, n->n_items);
        for (size_t i = 0; i < n->n_items; i++) jv_list_push(&c->arena, &c->fail, l, jj_eval(c, fr, n->items[i]));
        l.u.l->tuple = n->kind == JN_TUPLE;
        return l;
    }
    case JN_DICT: {
        jv d = jv_dict_new(&c->arena, &c->fail, JJ_DICT_PLAIN);
        for (size_t i = 0; i < n->n_items; i++) {
            jv k = jj_eval(c, fr, n->items[i]);
            if (k.type != JV_STR)
                jj_raise(&c->fail, n->items[i]->line, n->items[i]->col, "unsupported construct: dict keys must be strings, found %s", jv_type_name(k));
            jv_dict_set(&c->arena, &c->fail, d, k.u.s, jj_eval(c, fr, n->items2[i]));
        }
        return d;
    }
    default:
        jj_raise(&c->fail, n->line, n->col, "internal error: node %d is not an expression", n->kind);
    }
}

/* ---- statements ---- */

static void assign_targets(jj_ctx *c, jj_frame *fr, const jj_node *n, const char *const *names, size_t count, jv v) {
    if (count == 1) {
        frame_set(c, fr, names[0], v);
        return;
    }
    jv items;
    jj_iterate(c, n, v, &items);
    if (items.u.l->n != count)
        jj_raise(&c->fail, n->line, n->col, "cannot unpack %zu values into %zu names", items.u.l->n, count);
    for (size_t i = 0; i < count; i++) frame_set(c, fr, names[i], items.u.l->items[i]);
}

static const char *const k_loop_keys[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length",
                                           "depth", "depth0", "previtem", "nextitem"};
#define N_LOOP_KEYS 11

/* One loop object per for statement, updated in place each iteration. */
static jv loop_object_new(jj_ctx *c) {
    jv loop = jv_dict_new(&c->arena, &c->fail, JJ_DICT_LOOP);
    for (int k = 0; k < N_LOOP_KEYS; k++)
        jv_dict_set(&c->arena, &c->fail, loop, jj_str_new(&c->arena, &c->fail, k_loop_keys[k], strlen(k_loop_keys[k])), jv_none());
    return loop;
}

static void loop_object_update(jv loop, jv items, size_t i) {
    size_t len = items.u.l->n;
    jv vals[N_LOOP_KEYS] = {jv_int((int64_t)i + 1), jv_int((int64_t)i), jv_int((int64_t)(len - i)),
                            jv_int((int64_t)(len - i - 1)), jv_bool(i == 0), jv_bool(i + 1 == len), jv_int((int64_t)len),
                            jv_int(1), jv_int(0),
                            i > 0 ? items.u.l->items[i - 1] : jv_undef("there is no previous item"),
                            i + 1 < len ? items.u.l->items[i + 1] : jv_undef("there is no next item")};
    memcpy(loop.u.d->vals, vals, sizeof vals);
}

static void exec_for(jj_ctx *c, jj_frame *fr, const jj_node *n) {
    jv iterable = jj_eval(c, fr, n->a), items;
    jj_iterate(c, n, iterable, &items);
    if (n->b) { /* the loop filter runs before loop.length is known */
        jv kept = jv_list_new(&c->arena, &c->fail, items.u.l->n);
        jj_frame *tmp = frame_new(c, fr);
        for (size_t i = 0; i < items.u.l->n; i++) {
            step(c, n);
            tmp->vars.u.d->n = 0;
            assign_targets(c, tmp, n, n->names, n->n_names, items.u.l->items[i]);
            if (jv_truthy(jj_eval(c, tmp, n->b))) jv_list_push(&c->arena, &c->fail, kept, items.u.l->items[i]);
        }
        items = kept;
    }
    /* Each iteration starts with a fresh scope (a set inside the body does not survive it); the frame
     * and the loop object are reused so that long loops do not grow memory. */
    jj_frame *iter = frame_new(c, fr);
    jv loop = items.u.l->n ? loop_object_new(c) : jv_none();
    for (size_t i = 0; i < items.u.l->n; i++) {
        step(c, n);
        iter->vars.u.d->n = 0;
        loop_object_update(loop, items, i);
        frame_set(c, iter, "loop", loop);
        assign_targets(c, iter, n, n->names, n->n_names, items.u.l->items[i]);
        int flow = FLOW_NORMAL;
        exec_body(c, iter, n->c, &flow);
        if (flow == FLOW_BREAK) break;
    }
    if (!items.u.l->n && n->n_items2) {
        int flow = FLOW_NORMAL;
        exec_body(c, fr, n->items2[0], &flow);
    }
}

static void exec_stmt(jj_ctx *c, jj_frame *fr, const jj_node *n, int *flow) {
    step(c, n);
    switch (n->kind) {
    case JN_TEXT: jj_buf_put(&c->out, &c->fail, n->value.u.s->data, n->value.u.s->len); return;
    case JN_OUTPUT: jv_write_str(&c->out, &c->fail, jj_eval(c, fr, n->a)); return;
    case JN_TUPLE: exec_body(c, fr, n, flow); return;
    case JN_IF:
        for (size_t i = 0; i < n->n_items; i++)
            if (jv_truthy(jj_eval(c, fr, n->items[i]))) {
                exec_body(c, fr, n->items2[i], flow);
                return;
            }
        if (n->a) exec_body(c, fr, n->a, flow);
        return;
    case JN_FOR: exec_for(c, fr, n); return;
    case JN_SET: assign_targets(c, fr, n, n->names, n->n_names, jj_eval(c, fr, n->a)); return;
    case JN_SET_ATTR: {
        jv ns;
        if (!lookup(fr, n->name, &ns) || ns.type != JV_DICT || ns.u.d->kind != JJ_DICT_NAMESPACE)
            jj_raise(&c->fail, n->line, n->col, "cannot assign attribute on non-namespace object '%s'", n->name);
        jv v = jj_eval(c, fr, n->a);
        jv_dict_set(&c->arena, &c->fail, ns, jj_str_new(&c->arena, &c->fail, n->names[0], strlen(n->names[0])), v);
        return;
    }
    case JN_SET_BLOCK:
    case JN_FILTER_BLOCK: {
        size_t mark = c->out.len;
        int inner_flow = FLOW_NORMAL;
        exec_body(c, fr, n->a, &inner_flow);
        jv text = jv_str(&c->arena, &c->fail, c->out.data ? c->out.data + mark : "", c->out.len - mark);
        c->out.len = mark;
        if (n->kind == JN_SET_BLOCK) frame_set(c, fr, n->name, text);
        else jv_write_str(&c->out, &c->fail, jj_apply_filter(c, fr, n->b, text));
        return;
    }
    case JN_MACRO: {
        jv m;
        m.type = JV_MACRO;
        m.u.macro = n;
        frame_set(c, fr, n->name, m);
        return;
    }
    case JN_BREAK: *flow = FLOW_BREAK; return;
    case JN_CONTINUE: *flow = FLOW_CONTINUE; return;
    default: jj_raise(&c->fail, n->line, n->col, "internal error: node %d is not a statement", n->kind);
    }
}

static void exec_body(jj_ctx *c, jj_frame *fr, const jj_node *body, int *flow) {
    for (size_t i = 0; i < body->n_items && *flow == FLOW_NORMAL; i++) exec_stmt(c, fr, body->items[i], flow);
}

/* ---- entry points ---- */

int ts_jinja_parse(const char *source, size_t len, const char *name, ts_jinja_template **out, ts_error *err) {
    *out = NULL;
    ts_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return ts_fail(err, "out of memory");
    t->name = strdup(name ? name : "template");
    if (!t->name) {
        free(t);
        return ts_fail(err, "out of memory");
    }
    t->arena.limit = 64 * len + ((size_t)1 << 20); /* the tree of any template fits comfortably */
    jj_fail f;
    f.err = err;
    f.name = t->name;
    if (setjmp(f.jb)) {
        ts_jinja_free(t);
        return -1;
    }
    size_t n_tokens;
    jj_token *toks = jj_lex(source, len, &t->arena, &f, &n_tokens);
    t->root = jj_parse(toks, n_tokens, &t->arena, &f);
    *out = t;
    return 0;
}

void ts_jinja_free(ts_jinja_template *tpl) {
    if (!tpl) return;
    jj_arena_free(&tpl->arena);
    free(tpl->name);
    free(tpl);
}

__attribute__((noinline)) static void render_into(jj_ctx *c, const ts_jinja_template *tpl, const json_t *variables) {
    c->globals = frame_new(c, NULL);
    static const char *const fn_names[] = {"range", "namespace", "raise_exception", "strftime_now", "dict"};
    for (int k = 0; k < 5; k++) {
        jv fn;
        fn.type = JV_FUNC;
        fn.u.func = k;
        frame_set(c, c->globals, fn_names[k], fn);
    }
    if (variables) {
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)variables, key, value) frame_set(c, c->globals, key, jv_from_json(&c->arena, &c->fail, value, 0));
    }
    /* template-level statements share the globals' scope, so that macros see each other and the
     * template's variables */
    int flow = FLOW_NORMAL;
    exec_body(c, c->globals, tpl->root, &flow);
}

int ts_jinja_render(const ts_jinja_template *tpl, const json_t *variables, const ts_jinja_limits *limits, char **out,
                    size_t *out_len, ts_error *err) {
    *out = NULL;
    *out_len = 0;
    ts_jinja_limits lim = limits ? *limits : ts_jinja_default_limits();
    if (variables && !json_is_object(variables)) return ts_fail(err, "%s: template variables must be a JSON object", tpl->name);
    jj_ctx *c = calloc(1, sizeof *c);
    if (!c) return ts_fail(err, "out of memory");
    c->arena.limit = lim.max_memory;
    c->out.limit = lim.max_output;
    c->max_steps = lim.max_steps;
    c->max_depth = lim.max_depth;
    c->fail.err = err;
    c->fail.name = tpl->name;
    c->scratch.limit = lim.max_memory;
    if (setjmp(c->fail.jb)) {
        free(c->out.data);
        free(c->scratch.data);
        jj_arena_free(&c->arena);
        free(c);
        return -1;
    }
    render_into(c, tpl, variables);
    jj_buf_put(&c->out, &c->fail, "", 0);
    *out = c->out.data;
    *out_len = c->out.len;
    free(c->scratch.data);
    jj_arena_free(&c->arena);
    free(c);
    return 0;
}
