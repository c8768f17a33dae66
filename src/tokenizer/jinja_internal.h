/* Private to the Jinja interpreter: values, syntax tree, arena and the evaluation context. Errors
 * inside the lexer, parser and evaluator unwind with longjmp to the entry point; everything they
 * allocate lives in an arena, so unwinding leaks nothing. */
#ifndef TS_TOKENIZER_JINJA_INTERNAL_H
#define TS_TOKENIZER_JINJA_INTERNAL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "tokenizer/jinja.h"

/* ---- arena ---- */
typedef struct jj_chunk jj_chunk;
typedef struct jj_arena {
    jj_chunk *head;
    size_t used, limit;
} jj_arena;

/* ---- errors ---- */
typedef struct jj_fail {
    jmp_buf jb;
    ts_error *err;
    const char *name; /* template name for messages */
} jj_fail;

_Noreturn void jj_raise(jj_fail *f, uint32_t line, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void *jj_alloc(jj_arena *a, jj_fail *f, size_t n);
void jj_arena_free(jj_arena *a);

/* ---- values ---- */
typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_MACRO, JV_FUNC
} jv_type;

typedef struct jj_str {
    size_t len;
    char data[]; /* NUL terminated */
} jj_str;

typedef struct jv jv;
typedef struct jj_list jj_list;
typedef struct jj_dict jj_dict;
typedef struct jj_node jj_node;

struct jv {
    uint8_t type;
    union {
        int b;
        int64_t i;
        double f;
        jj_str *s;
        jj_list *l;
        jj_dict *d;
        const jj_node *macro;
        int func;              /* jj_global_fn */
        const char *undef;     /* what was undefined, for messages */
    } u;
};

struct jj_list {
    size_t n, cap;
    jv *items;
    int tuple; /* shown as (a, b) */
};

enum { JJ_DICT_PLAIN = 0, JJ_DICT_NAMESPACE = 1, JJ_DICT_LOOP = 2 };
struct jj_dict {
    size_t n, cap;
    jj_str **keys;
    jv *vals;
    int kind;
};

typedef enum { JJ_FN_RANGE, JJ_FN_NAMESPACE, JJ_FN_RAISE, JJ_FN_STRFTIME, JJ_FN_DICT } jj_global_fn;

/* ---- syntax tree ---- */
typedef enum {
    /* expressions */
    JN_LITERAL, JN_NAME, JN_GETATTR, JN_GETITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST, JN_NEG, JN_POS, JN_NOT,
    JN_BINOP, JN_AND, JN_OR, JN_COND, JN_LIST, JN_DICT, JN_TUPLE,
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_ATTR, JN_SET_BLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE,
    JN_FILTER_BLOCK
} jj_node_kind;

typedef enum {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOT_IN
} jj_op;

struct jj_node {
    uint16_t kind;
    uint16_t op;       /* jj_op, or a negation flag for tests */
    uint32_t line, col;
    const char *name;  /* identifier, attribute, filter/test name, set target */
    jv value;          /* literal */
    jj_node *a, *b, *c;
    jj_node **items;   /* arguments, list items, body, if conditions */
    size_t n_items;
    jj_node **items2;  /* keyword values, dict values, else body, if bodies */
    size_t n_items2;
    const char **names; /* keyword names, for targets, macro parameters */
    size_t n_names;
    jj_node **bodies;  /* if: one body per condition; stored as JN_TUPLE nodes */
};

struct ts_jinja_template {
    jj_arena arena;
    jj_node *root; /* a JN_TUPLE whose items are the top-level statements */
    char *name;
};

/* ---- lexer ---- */
typedef enum {
    JT_DATA, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END, JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP,
    JT_EOF
} jj_tok_kind;

typedef struct jj_token {
    uint8_t kind;
    uint32_t line, col;
    const char *s; /* name, operator, data or decoded string (NUL terminated) */
    size_t len;
    int64_t i;
    double f;
} jj_token;

/* Splits the source into tokens (arena allocated); raises on malformed input. */
jj_token *jj_lex(const char *src, size_t len, jj_arena *a, jj_fail *f, size_t *n_tokens);

/* Parses tokens into a tree. */
jj_node *jj_parse(jj_token *toks, size_t n, jj_arena *a, jj_fail *f);

/* ---- values (jinja_value.c) ---- */
typedef struct jj_buf {
    char *data;
    size_t len, cap, limit;
} jj_buf;
void jj_buf_put(jj_buf *b, jj_fail *f, const char *s, size_t n);
static inline void jj_buf_puts(jj_buf *b, jj_fail *f, const char *s);

jj_str *jj_str_new(jj_arena *a, jj_fail *f, const char *s, size_t len);
jv jv_str(jj_arena *a, jj_fail *f, const char *s, size_t len);
jv jv_cstr(jj_arena *a, jj_fail *f, const char *s);
static inline jv jv_undef(const char *what) { jv v; v.type = JV_UNDEF; v.u.undef = what; return v; }
static inline jv jv_none(void) { jv v; v.type = JV_NONE; v.u.i = 0; return v; }
static inline jv jv_bool(int b) { jv v; v.type = JV_BOOL; v.u.b = b != 0; return v; }
static inline jv jv_int(int64_t i) { jv v; v.type = JV_INT; v.u.i = i; return v; }
static inline jv jv_float(double d) { jv v; v.type = JV_FLOAT; v.u.f = d; return v; }
jv jv_list_new(jj_arena *a, jj_fail *f, size_t cap);
void jv_list_push(jj_arena *a, jj_fail *f, jv list, jv item);
jv jv_dict_new(jj_arena *a, jj_fail *f, int kind);
void jv_dict_set(jj_arena *a, jj_fail *f, jv dict, jj_str *key, jv value);
int jv_dict_get(jv dict, const char *key, size_t len, jv *out);

jv jv_from_json(jj_arena *a, jj_fail *f, const json_t *j, int depth);
const char *jv_type_name(jv v);
int jv_truthy(jv v);
/* Both add the number of values they visit to *work, so that comparing large (or nested) lists is
 * counted against the evaluation-step limit (see jj_charge). */
int jv_equal(jv a, jv b, uint64_t *work);
/* <0, 0, >0; raises for values Python cannot order */
int jv_compare(jj_fail *f, uint32_t line, uint32_t col, jv a, jv b, uint64_t *work);
/* Python str() and repr() */
void jv_write_str(jj_buf *b, jj_fail *f, jv v);
void jv_write_repr(jj_buf *b, jj_fail *f, jv v);
/* json.dumps(v, ensure_ascii=..., indent=..., sort_keys=...); indent < 0 for none */
void jv_write_json(jj_buf *b, jj_fail *f, jv v, int indent, int ensure_ascii, int sort_keys, const char *item_sep,
                   const char *key_sep, int depth, uint32_t line, uint32_t col);
void jj_write_float(jj_buf *b, jj_fail *f, double d);
jv jv_to_string(jj_arena *a, jj_fail *f, jj_buf *scratch, jv v);

static inline void jj_buf_puts(jj_buf *b, jj_fail *f, const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    jj_buf_put(b, f, s, n);
}

/* ---- evaluation (jinja_eval.c) and builtins (jinja_builtins.c) ---- */
typedef struct jj_frame jj_frame;
struct jj_frame {
    jj_frame *parent;
    jv vars; /* JV_DICT */
};

typedef struct jj_ctx {
    jj_arena arena;
    jj_fail fail;
    jj_buf out;
    jj_buf scratch; /* for str() conversions; copied to the arena at once */
    uint64_t steps, max_steps;
    int depth, max_depth;
    jj_frame *globals;
} jj_ctx;

jv jj_eval(jj_ctx *c, jj_frame *fr, const jj_node *n);
/* Counts `units` more evaluation steps (0 only checks the limit): work inside one step that grows with its
 * operands (scanning or comparing lists, dicts and strings) must count, or a short template could loop
 * over large values for hours within the step limit. Raises when the limit is exceeded. */
void jj_charge(jj_ctx *c, const jj_node *at, uint64_t units);
/* The work of one pass over v: items of a list or dict, 64-byte chunks of a string. */
uint64_t jv_scan_cost(jv v);
jv jj_call_macro(jj_ctx *c, jj_frame *fr, const jj_node *call, jv macro);
/* Filters, tests, methods and global functions; args are evaluated, names from the call site. */
int jj_filter_exists(const char *name);
int jj_test_exists(const char *name);
jv jj_apply_filter(jj_ctx *c, jj_frame *fr, const jj_node *n, jv value);
int jj_apply_test(jj_ctx *c, jj_frame *fr, const jj_node *n, jv value);
/* Returns 1 and sets *out when obj has a method `name`. */
int jj_call_method(jj_ctx *c, jj_frame *fr, const jj_node *call, jv obj, const char *name, jv *out);
jv jj_call_global(jj_ctx *c, jj_frame *fr, const jj_node *call, int fn);
/* Evaluated positional and keyword arguments of a call-like node. */
typedef struct jj_args {
    jv pos[8];
    size_t n_pos;
    const char *kw_names[8];
    jv kw[8];
    size_t n_kw;
} jj_args;
void jj_eval_args(jj_ctx *c, jj_frame *fr, const jj_node *n, jj_args *args, size_t skip_items);
int jj_kwarg(const jj_args *a, const char *name, jv *out);
void jj_iterate(jj_ctx *c, const jj_node *at, jv v, jv *list_out);

#endif
