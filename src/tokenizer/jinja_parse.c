/* Jinja parser: tokens to a syntax tree, with Jinja2's operator precedence (or, and, not, comparisons,
 * + -, ~, * / // %, **, unary, then postfix . [] () and the | filter / is test chain). Statements: if,
 * for (with else, filter condition, loop controls), set (name, namespace attribute, tuple, block),
 * macro, filter blocks and transformers' generation block. Anything else is an error naming it. */
#include <stdio.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

#define MAX_NESTING 200

typedef struct parser {
    jj_token *t;
    size_t n, pos;
    jj_arena *a;
    jj_fail *f;
    int depth;
} parser;

static jj_token *cur(parser *P) { return &P->t[P->pos]; }
static jj_token *peek(parser *P, size_t k) { return &P->t[P->pos + k < P->n ? P->pos + k : P->n - 1]; }
static int is_op(const jj_token *t, const char *op) { return t->kind == JT_OP && !strcmp(t->s, op); }
static int is_name(const jj_token *t, const char *name) { return t->kind == JT_NAME && !strcmp(t->s, name); }

static const char *describe(const jj_token *t) {
    switch (t->kind) {
    case JT_DATA: return "template text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "a string";
    case JT_INT: case JT_FLOAT: return "a number";
    case JT_EOF: return "the end of the template";
    default: return t->s;
    }
}

static _Noreturn void fail_at(parser *P, const jj_token *t, const char *what) {
    jj_raise(P->f, t->line, t->col, "expected %s, found %s", what, describe(t));
}

static jj_token *next(parser *P) {
    jj_token *t = cur(P);
    if (P->pos + 1 < P->n) P->pos++;
    return t;
}

static void expect_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) {
        char what[16];
        snprintf(what, sizeof what, "'%s'", op);
        fail_at(P, cur(P), what);
    }
    next(P);
}

static const char *expect_name(parser *P, const char *what) {
    if (cur(P)->kind != JT_NAME) fail_at(P, cur(P), what);
    return next(P)->s;
}

static void expect_block_end(parser *P) {
    if (cur(P)->kind != JT_BLOCK_END) fail_at(P, cur(P), "'%}'");
    next(P);
}

static jj_node *new_node(parser *P, int kind, const jj_token *at) {
    jj_node *n = jj_alloc(P->a, P->f, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = (uint16_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* Growable node-pointer array in the arena. */
typedef struct nodes {
    jj_node **v;
    size_t n, cap;
} nodes;

static void nodes_push(parser *P, nodes *l, jj_node *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jj_node **v = jj_alloc(P->a, P->f, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

typedef struct names {
    const char **v;
    size_t n, cap;
} names;

static void names_push(parser *P, names *l, const char *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        const char **v = jj_alloc(P->a, P->f, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

static void enter(parser *P, const jj_token *at) {
    if (++P->depth > MAX_NESTING) jj_raise(P->f, at->line, at->col, "template nests deeper than %d levels", MAX_NESTING);
}

static jj_node *parse_expr(parser *P, int with_cond);
static jj_node *parse_unary(parser *P, int with_filter);
static jj_node *parse_primary(parser *P);
static jj_node *parse_postfix(parser *P, jj_node *n);

/* ( args ) with positional and keyword arguments into n->items / n->names + n->items2 */
static void parse_call_args(parser *P, jj_node *n, nodes *pos, nodes *kwv, names *kwn) {
    expect_op(P, "(");
    size_t parsed = 0;
    while (!is_op(cur(P), ")")) {
        if (parsed++) expect_op(P, ",");
        if (is_op(cur(P), ")")) break; /* trailing comma */
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            jj_raise(P->f, cur(P)->line, cur(P)->col, "unsupported construct: *args / **kwargs in a call");
        if (cur(P)->kind == JT_NAME && is_op(peek(P, 1), "=")) {
            names_push(P, kwn, next(P)->s);
            next(P);
            nodes_push(P, kwv, parse_expr(P, 1));
        } else {
            if (kwv->n) jj_raise(P->f, cur(P)->line, cur(P)->col, "positional argument after a keyword argument");
            nodes_push(P, pos, parse_expr(P, 1));
        }
        if (pos->n + kwv->n > 8) jj_raise(P->f, n->line, n->col, "more than 8 arguments in a call");
    }
    expect_op(P, ")");
}

static void finish_args(jj_node *n, nodes *pos, nodes *kwv, names *kwn) {
    n->items = pos->v;
    n->n_items = pos->n;
    n->items2 = kwv->v;
    n->n_items2 = kwv->n;
    n->names = kwn->v;
    n->n_names = kwn->n;
}

static jj_node *parse_filter(parser *P, jj_node *value) {
    jj_token *at = next(P); /* | */
    const jj_token *name_tok = cur(P);
    const char *name = expect_name(P, "a filter name");
    while (is_op(cur(P), ".")) { /* dotted filter names do not exist in the builtins */
        jj_raise(P->f, name_tok->line, name_tok->col, "unsupported filter '%s.%s'", name, peek(P, 1)->s);
    }
    if (!jj_filter_exists(name)) jj_raise(P->f, name_tok->line, name_tok->col, "unsupported filter '%s'", name);
    jj_node *n = new_node(P, JN_FILTER, at);
    n->name = name;
    n->a = value;
    nodes pos = {0}, kwv = {0};
    names kwn = {0};
    nodes_push(P, &pos, value); /* items[0] is the filtered value */
    if (is_op(cur(P), "(")) parse_call_args(P, n, &pos, &kwv, &kwn);
    finish_args(n, &pos, &kwv, &kwn);
    return n;
}

static jj_node *parse_test(parser *P, jj_node *value) {
    jj_token *at = next(P); /* is */
    int negated = 0;
    if (is_name(cur(P), "not")) { next(P); negated = 1; }
    const jj_token *name_tok = cur(P);
    const char *name = expect_name(P, "a test name");
    if (!jj_test_exists(name)) jj_raise(P->f, name_tok->line, name_tok->col, "unsupported test '%s'", name);
    jj_node *n = new_node(P, JN_TEST, at);
    n->name = name;
    n->op = (uint16_t)negated;
    nodes pos = {0}, kwv = {0};
    names kwn = {0};
    nodes_push(P, &pos, value);
    const jj_token *t = cur(P);
    if (is_op(t, "(")) {
        parse_call_args(P, n, &pos, &kwv, &kwn);
    } else if ((t->kind == JT_NAME || t->kind == JT_STRING || t->kind == JT_INT || t->kind == JT_FLOAT ||
                is_op(t, "[") || is_op(t, "{")) &&
               !is_name(t, "else") && !is_name(t, "or") && !is_name(t, "and") && !is_name(t, "is") &&
               !is_name(t, "if") && !is_name(t, "in") && !is_name(t, "not")) {
        nodes_push(P, &pos, parse_postfix(P, parse_primary(P)));
    }
    finish_args(n, &pos, &kwv, &kwn);
    return n;
}

static jj_node *parse_filter_chain(parser *P, jj_node *n) {
    for (;;) {
        if (is_op(cur(P), "|")) n = parse_filter(P, n);
        else if (is_name(cur(P), "is")) n = parse_test(P, n);
        else if (is_op(cur(P), "(")) {
            jj_node *c = new_node(P, JN_CALL, cur(P));
            c->line = n->line;
            c->col = n->col;
            c->a = n;
            nodes pos = {0}, kwv = {0};
            names kwn = {0};
            parse_call_args(P, c, &pos, &kwv, &kwn);
            finish_args(c, &pos, &kwv, &kwn);
            n = c;
        } else
            return n;
    }
}

static jj_node *parse_subscript(parser *P, jj_node *obj, const jj_token *at) {
    /* [index] or [start:stop:step] */
    jj_node *parts[3] = {NULL, NULL, NULL};
    int colons = 0;
    while (!is_op(cur(P), "]")) {
        if (is_op(cur(P), ":")) {
            if (++colons > 2) fail_at(P, cur(P), "']'");
            next(P);
            continue;
        }
        if (parts[colons]) fail_at(P, cur(P), "':' or ']'");
        parts[colons] = parse_expr(P, 1);
    }
    expect_op(P, "]");
    if (!colons) {
        if (!parts[0]) jj_raise(P->f, at->line, at->col, "empty subscript");
        jj_node *n = new_node(P, JN_GETITEM, at);
        n->a = obj;
        n->b = parts[0];
        return n;
    }
    jj_node *n = new_node(P, JN_SLICE, at);
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->items = jj_alloc(P->a, P->f, sizeof(jj_node *));
    n->items[0] = parts[2];
    n->n_items = 1;
    return n;
}

static jj_node *parse_postfix(parser *P, jj_node *n) {
    for (;;) {
        jj_token *t = cur(P);
        if (is_op(t, ".")) {
            next(P);
            jj_token *attr = cur(P);
            if (attr->kind == JT_INT) {
                next(P);
                jj_node *g = new_node(P, JN_GETITEM, t);
                g->a = n;
                g->b = new_node(P, JN_LITERAL, attr);
                g->b->value = jv_int(attr->i);
                n = g;
                continue;
            }
            jj_node *g = new_node(P, JN_GETATTR, attr);
            g->a = n;
            g->name = expect_name(P, "an attribute name");
            n = g;
        } else if (is_op(t, "[")) {
            next(P);
            n = parse_subscript(P, n, t);
        } else if (is_op(t, "(")) {
            jj_node *c = new_node(P, JN_CALL, t);
            c->line = n->line;
            c->col = n->col;
            c->a = n;
            nodes pos = {0}, kwv = {0};
            names kwn = {0};
            parse_call_args(P, c, &pos, &kwv, &kwn);
            finish_args(c, &pos, &kwv, &kwn);
            n = c;
        } else
            return n;
    }
}

static jj_node *parse_primary(parser *P) {
    jj_token *t = cur(P);
    enter(P, t);
    jj_node *n;
    if (t->kind == JT_NAME) {
        next(P);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) {
            n = new_node(P, JN_LITERAL, t);
            n->value = jv_bool(1);
        } else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            n = new_node(P, JN_LITERAL, t);
            n->value = jv_bool(0);
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            n = new_node(P, JN_LITERAL, t);
            n->value = jv_none();
        } else {
            n = new_node(P, JN_NAME, t);
            n->name = t->s;
        }
    } else if (t->kind == JT_STRING) {
        /* adjacent literals concatenate */
        size_t total = 0;
        for (size_t k = P->pos; k < P->n && P->t[k].kind == JT_STRING; k++) total += P->t[k].len;
        char *s = jj_alloc(P->a, P->f, total + 1);
        size_t o = 0;
        while (cur(P)->kind == JT_STRING) {
            memcpy(s + o, cur(P)->s, cur(P)->len);
            o += cur(P)->len;
            next(P);
        }
        n = new_node(P, JN_LITERAL, t);
        n->value = jv_str(P->a, P->f, s, o);
    } else if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        next(P);
        n = new_node(P, JN_LITERAL, t);
        n->value = t->kind == JT_INT ? jv_int(t->i) : jv_float(t->f);
    } else if (is_op(t, "(")) {
        next(P);
        nodes items = {0};
        int tuple = 0;
        while (!is_op(cur(P), ")")) {
            if (items.n) {
                expect_op(P, ",");
                tuple = 1;
                if (is_op(cur(P), ")")) break;
            }
            nodes_push(P, &items, parse_expr(P, 1));
        }
        expect_op(P, ")");
        if (items.n == 1 && !tuple) n = items.v[0];
        else {
            n = new_node(P, JN_TUPLE, t);
            n->items = items.v;
            n->n_items = items.n;
        }
    } else if (is_op(t, "[")) {
        next(P);
        nodes items = {0};
        while (!is_op(cur(P), "]")) {
            if (items.n) {
                expect_op(P, ",");
                if (is_op(cur(P), "]")) break;
            }
            nodes_push(P, &items, parse_expr(P, 1));
        }
        expect_op(P, "]");
        n = new_node(P, JN_LIST, t);
        n->items = items.v;
        n->n_items = items.n;
    } else if (is_op(t, "{")) {
        next(P);
        nodes keys = {0}, vals = {0};
        while (!is_op(cur(P), "}")) {
            if (keys.n) {
                expect_op(P, ",");
                if (is_op(cur(P), "}")) break;
            }
            nodes_push(P, &keys, parse_expr(P, 1));
            expect_op(P, ":");
            nodes_push(P, &vals, parse_expr(P, 1));
        }
        expect_op(P, "}");
        n = new_node(P, JN_DICT, t);
        n->items = keys.v;
        n->n_items = keys.n;
        n->items2 = vals.v;
        n->n_items2 = vals.n;
    } else {
        fail_at(P, t, "an expression");
    }
    P->depth--;
    return n;
}

static jj_node *parse_unary(parser *P, int with_filter) {
    jj_token *t = cur(P);
    enter(P, t);
    jj_node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = new_node(P, is_op(t, "-") ? JN_NEG : JN_POS, t);
        n->a = parse_unary(P, 0);
    } else
        n = parse_primary(P);
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_chain(P, n);
    P->depth--;
    return n;
}

static jj_node *binop(parser *P, const jj_token *at, int op, jj_node *l, jj_node *r) {
    jj_node *n = new_node(P, JN_BINOP, at);
    n->op = (uint16_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jj_node *parse_pow(parser *P) {
    jj_node *n = parse_unary(P, 1);
    while (is_op(cur(P), "**")) {
        jj_token *t = next(P);
        n = binop(P, t, JOP_POW, n, parse_unary(P, 1));
    }
    return n;
}

static jj_node *parse_math2(parser *P) {
    jj_node *n = parse_pow(P);
    for (;;) {
        jj_token *t = cur(P);
        int op = is_op(t, "*") ? JOP_MUL : is_op(t, "/") ? JOP_DIV : is_op(t, "//") ? JOP_FLOORDIV
               : is_op(t, "%") ? JOP_MOD : -1;
        if (op < 0) return n;
        next(P);
        n = binop(P, t, op, n, parse_pow(P));
    }
}

static jj_node *parse_concat(parser *P) {
    jj_node *n = parse_math2(P);
    while (is_op(cur(P), "~")) {
        jj_token *t = next(P);
        n = binop(P, t, JOP_CONCAT, n, parse_math2(P));
    }
    return n;
}

static jj_node *parse_math1(parser *P) {
    jj_node *n = parse_concat(P);
    for (;;) {
        jj_token *t = cur(P);
        int op = is_op(t, "+") ? JOP_ADD : is_op(t, "-") ? JOP_SUB : -1;
        if (op < 0) return n;
        next(P);
        n = binop(P, t, op, n, parse_concat(P));
    }
}

static jj_node *parse_compare(parser *P) {
    jj_node *left = parse_math1(P), *result = NULL;
    for (;;) {
        jj_token *t = cur(P);
        int op = is_op(t, "==") ? JOP_EQ : is_op(t, "!=") ? JOP_NE : is_op(t, "<") ? JOP_LT : is_op(t, "<=") ? JOP_LE
               : is_op(t, ">") ? JOP_GT : is_op(t, ">=") ? JOP_GE : is_name(t, "in") ? JOP_IN : -1;
        if (op < 0 && is_name(t, "not") && is_name(peek(P, 1), "in")) {
            next(P);
            op = JOP_NOT_IN;
        }
        if (op < 0) return result ? result : left;
        next(P);
        jj_node *right = parse_math1(P);
        jj_node *cmp = binop(P, t, op, left, right);
        if (result) { /* a < b < c is a < b and b < c */
            jj_node *both = new_node(P, JN_AND, t);
            both->a = result;
            both->b = cmp;
            result = both;
        } else
            result = cmp;
        left = right;
    }
}

static jj_node *parse_not(parser *P) {
    if (is_name(cur(P), "not")) {
        jj_token *t = next(P);
        enter(P, t);
        jj_node *n = new_node(P, JN_NOT, t);
        n->a = parse_not(P);
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jj_node *parse_and(parser *P) {
    jj_node *n = parse_not(P);
    while (is_name(cur(P), "and")) {
        jj_token *t = next(P);
        jj_node *x = new_node(P, JN_AND, t);
        x->a = n;
        x->b = parse_not(P);
        n = x;
    }
    return n;
}

static jj_node *parse_or(parser *P) {
    jj_node *n = parse_and(P);
    while (is_name(cur(P), "or")) {
        jj_token *t = next(P);
        jj_node *x = new_node(P, JN_OR, t);
        x->a = n;
        x->b = parse_and(P);
        n = x;
    }
    return n;
}

static jj_node *parse_expr(parser *P, int with_cond) {
    enter(P, cur(P));
    jj_node *n = parse_or(P);
    while (with_cond && is_name(cur(P), "if")) {
        jj_token *t = next(P);
        jj_node *c = new_node(P, JN_COND, t);
        c->a = parse_or(P);
        c->b = n;
        if (is_name(cur(P), "else")) {
            next(P);
            c->c = parse_expr(P, 1);
        }
        n = c;
    }
    P->depth--;
    return n;
}

/* ---- statements ---- */

static jj_node *parse_body(parser *P, const char *const *ends, const jj_token *opener, const char *opener_name);

static int in_list(const char *name, const char *const *list) {
    for (; list && *list; list++)
        if (!strcmp(name, *list)) return 1;
    return 0;
}

static jj_node *parse_if(parser *P, const jj_token *at) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const end_only[] = {"endif", NULL};
    jj_node *n = new_node(P, JN_IF, at);
    nodes conds = {0}, bodies = {0};
    nodes_push(P, &conds, parse_expr(P, 1));
    expect_block_end(P);
    for (;;) {
        nodes_push(P, &bodies, parse_body(P, ends, at, "if"));
        const char *tag = next(P)->s;
        if (!strcmp(tag, "elif")) {
            nodes_push(P, &conds, parse_expr(P, 1));
            expect_block_end(P);
            continue;
        }
        if (!strcmp(tag, "else")) {
            expect_block_end(P);
            n->a = parse_body(P, end_only, at, "if");
            next(P);
        }
        expect_block_end(P);
        break;
    }
    n->items = conds.v;
    n->n_items = conds.n;
    n->items2 = bodies.v;
    n->n_items2 = bodies.n;
    return n;
}

static void parse_targets(parser *P, names *targets) {
    names_push(P, targets, expect_name(P, "a loop variable name"));
    while (is_op(cur(P), ",")) {
        next(P);
        names_push(P, targets, expect_name(P, "a variable name"));
    }
}

static jj_node *parse_for(parser *P, const jj_token *at) {
    static const char *const ends[] = {"else", "endfor", NULL};
    static const char *const end_only[] = {"endfor", NULL};
    jj_node *n = new_node(P, JN_FOR, at);
    names targets = {0};
    int paren = is_op(cur(P), "(");
    if (paren) next(P);
    parse_targets(P, &targets);
    if (paren) expect_op(P, ")");
    if (!is_name(cur(P), "in")) fail_at(P, cur(P), "'in'");
    next(P);
    n->a = parse_expr(P, 0); /* the iterable: no conditional expression, `if` filters */
    if (is_name(cur(P), "if")) {
        next(P);
        n->b = parse_expr(P, 0);
    }
    if (is_name(cur(P), "recursive"))
        jj_raise(P->f, cur(P)->line, cur(P)->col, "unsupported construct: recursive for loops");
    expect_block_end(P);
    n->names = targets.v;
    n->n_names = targets.n;
    n->c = parse_body(P, ends, at, "for");
    if (!strcmp(next(P)->s, "else")) {
        expect_block_end(P);
        jj_node *else_body = parse_body(P, end_only, at, "for");
        next(P);
        n->items2 = jj_alloc(P->a, P->f, sizeof(jj_node *));
        n->items2[0] = else_body;
        n->n_items2 = 1;
    }
    expect_block_end(P);
    return n;
}

static jj_node *parse_set(parser *P, const jj_token *at) {
    static const char *const ends[] = {"endset", NULL};
    const jj_token *target = cur(P);
    const char *name = expect_name(P, "a variable name");
    if (is_op(cur(P), ".")) {
        next(P);
        jj_node *n = new_node(P, JN_SET_ATTR, at);
        n->name = name;
        n->names = jj_alloc(P->a, P->f, sizeof(char *));
        n->names[0] = expect_name(P, "an attribute name");
        n->n_names = 1;
        expect_op(P, "=");
        n->a = parse_expr(P, 1);
        expect_block_end(P);
        return n;
    }
    if (cur(P)->kind == JT_BLOCK_END) {
        next(P);
        jj_node *n = new_node(P, JN_SET_BLOCK, at);
        n->name = name;
        n->a = parse_body(P, ends, at, "set");
        next(P);
        expect_block_end(P);
        return n;
    }
    names targets = {0};
    names_push(P, &targets, name);
    while (is_op(cur(P), ",")) {
        next(P);
        names_push(P, &targets, expect_name(P, "a variable name"));
    }
    if (!is_op(cur(P), "=")) fail_at(P, cur(P), "'='");
    next(P);
    jj_node *n = new_node(P, JN_SET, target);
    n->names = targets.v;
    n->n_names = targets.n;
    jj_node *value = parse_expr(P, 1);
    if (is_op(cur(P), ",")) { /* set x = 1, 2 makes a tuple */
        jj_node *tuple = new_node(P, JN_TUPLE, cur(P));
        nodes items = {0};
        nodes_push(P, &items, value);
        while (is_op(cur(P), ",")) {
            next(P);
            nodes_push(P, &items, parse_expr(P, 1));
        }
        tuple->items = items.v;
        tuple->n_items = items.n;
        value = tuple;
    }
    n->a = value;
    expect_block_end(P);
    return n;
}

static jj_node *parse_macro(parser *P, const jj_token *at) {
    static const char *const ends[] = {"endmacro", NULL};
    jj_node *n = new_node(P, JN_MACRO, at);
    n->name = expect_name(P, "a macro name");
    expect_op(P, "(");
    names params = {0};
    nodes defaults = {0};
    while (!is_op(cur(P), ")")) {
        if (params.n) expect_op(P, ",");
        if (is_op(cur(P), ")")) break;
        names_push(P, &params, expect_name(P, "a parameter name"));
        jj_node *def = NULL;
        if (is_op(cur(P), "=")) {
            next(P);
            def = parse_expr(P, 1);
        } else if (defaults.n && defaults.v[defaults.n - 1])
            jj_raise(P->f, at->line, at->col, "macro parameter without a default after one with a default");
        nodes_push(P, &defaults, def);
    }
    expect_op(P, ")");
    expect_block_end(P);
    n->names = params.v;
    n->n_names = params.n;
    n->items2 = defaults.v;
    n->n_items2 = defaults.n;
    n->a = parse_body(P, ends, at, "macro");
    next(P);
    expect_block_end(P);
    return n;
}

static jj_node *parse_filter_block(parser *P, const jj_token *at) {
    static const char *const ends[] = {"endfilter", NULL};
    jj_node *n = new_node(P, JN_FILTER_BLOCK, at);
    jj_node *placeholder = new_node(P, JN_LITERAL, at);
    placeholder->value = jv_none();
    /* the filter node is built as if applied to a placeholder; the body's text replaces it */
    P->pos--; /* reuse parse_filter, which consumes a '|' first: step back onto the 'filter' name */
    n->b = parse_filter(P, placeholder);
    expect_block_end(P);
    n->a = parse_body(P, ends, at, "filter");
    next(P);
    expect_block_end(P);
    return n;
}

static const char *const k_unsupported_tags[] = {"extends", "block", "include", "import", "from", "raw", "call",
                                                  "with", "autoescape", "trans", "do", "print", NULL};

static jj_node *parse_statement(parser *P, const jj_token *begin) {
    const jj_token *tag = cur(P);
    if (tag->kind != JT_NAME) fail_at(P, tag, "a tag name");
    const char *name = next(P)->s;
    if (!strcmp(name, "if")) return parse_if(P, begin);
    if (!strcmp(name, "for")) return parse_for(P, begin);
    if (!strcmp(name, "set")) return parse_set(P, begin);
    if (!strcmp(name, "macro")) return parse_macro(P, begin);
    if (!strcmp(name, "filter")) return parse_filter_block(P, begin);
    if (!strcmp(name, "break") || !strcmp(name, "continue")) {
        jj_node *n = new_node(P, name[0] == 'b' ? JN_BREAK : JN_CONTINUE, begin);
        expect_block_end(P);
        return n;
    }
    if (!strcmp(name, "generation")) { /* transformers' assistant-mask marker: renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        expect_block_end(P);
        jj_node *body = parse_body(P, ends, begin, "generation");
        next(P);
        expect_block_end(P);
        return body;
    }
    if (in_list(name, k_unsupported_tags))
        jj_raise(P->f, tag->line, tag->col, "unsupported tag '%s'", name);
    if (!strncmp(name, "end", 3) || !strcmp(name, "else") || !strcmp(name, "elif"))
        jj_raise(P->f, tag->line, tag->col, "unexpected '%s' (no open block it could close)", name);
    jj_raise(P->f, tag->line, tag->col, "unknown tag '%s'", name);
}

static const char *last_of(const char *const *list) {
    const char *last = list[0];
    for (; *list; list++) last = *list;
    return last;
}

/* Statements until one of `ends` (left as the current token, after its '{%') or the end of input. */
static jj_node *parse_body(parser *P, const char *const *ends, const jj_token *opener, const char *opener_name) {
    enter(P, opener ? opener : cur(P));
    nodes body = {0};
    const jj_token *start = cur(P);
    for (;;) {
        jj_token *t = cur(P);
        if (t->kind == JT_EOF) {
            if (ends) {
                jj_raise(P->f, opener->line, opener->col,
                         "unexpected end of template: '%s' opened here was not closed (expected {%% %s %%})",
                         opener_name, last_of(ends));
            }
            break;
        }
        if (t->kind == JT_DATA) {
            jj_node *n = new_node(P, JN_TEXT, t);
            n->value.type = JV_STR;
            n->value.u.s = jj_str_new(P->a, P->f, t->s, t->len);
            nodes_push(P, &body, n);
            next(P);
        } else if (t->kind == JT_VAR_BEGIN) {
            next(P);
            jj_node *n = new_node(P, JN_OUTPUT, t);
            n->a = parse_expr(P, 1);
            if (cur(P)->kind != JT_VAR_END) fail_at(P, cur(P), "'}}'");
            next(P);
            nodes_push(P, &body, n);
        } else if (t->kind == JT_BLOCK_BEGIN) {
            if (ends && cur(P)->kind == JT_BLOCK_BEGIN && peek(P, 1)->kind == JT_NAME && in_list(peek(P, 1)->s, ends)) {
                next(P);
                break;
            }
            next(P);
            nodes_push(P, &body, parse_statement(P, t));
        } else
            fail_at(P, t, "template text or a tag");
    }
    jj_node *n = new_node(P, JN_TUPLE, start);
    n->items = body.v;
    n->n_items = body.n;
    P->depth--;
    return n;
}

jj_node *jj_parse(jj_token *toks, size_t n, jj_arena *a, jj_fail *f) {
    parser P = {toks, n, 0, a, f, 0};
    return parse_body(&P, NULL, NULL, NULL);
}
