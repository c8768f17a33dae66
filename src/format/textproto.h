/* Protocol-buffers text format: a parser into a schema-free tree, and a schema check that walks the
 * tree against static message descriptors. The parser accepts the whole text-format grammar used in
 * practice (comments, nested messages with '{}' or '<>' and an optional ':', lists of scalars and of
 * messages, repeated keys, ',' or ';' separators, strings with C escapes and adjacent-literal
 * concatenation, decimal/hex/octal integers, floats with exponents, inf/nan and an 'f' suffix,
 * identifiers for enums and booleans). Scalars stay as tokens until the schema says what they are,
 * because "1" may be a bool, an enum number or an integer depending on the field.
 * Every error reads "source:line:col: what was expected, what was found". No extension fields
 * ([pkg.ext]) or Any expansions: Triton's ModelConfig uses neither. */
#ifndef TS_FORMAT_TEXTPROTO_H
#define TS_FORMAT_TEXTPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum ts_tp_kind {
    TS_TP_MESSAGE = 0, /* children are the message's fields */
    TS_TP_LIST,        /* `name: [ ... ]`; children are the elements (scalars or messages) */
    TS_TP_STRING,      /* text holds the decoded bytes (may contain NUL; text_len is exact) */
    TS_TP_NUMBER,      /* text holds the literal as written, with a leading '-' when negative */
    TS_TP_IDENT,       /* text holds the identifier, with a leading '-' for -inf / -nan */
} ts_tp_kind;

typedef struct ts_tp_node ts_tp_node;
struct ts_tp_node {
    const char *name; /* field name; list elements repeat their list's name */
    int line, col;    /* position of the field name (of the element itself inside a list) */
    int value_line, value_col;
    ts_tp_kind kind;

    const char *text;
    size_t text_len;
    /* TS_TP_NUMBER only */
    int is_float; /* has '.', an exponent or an 'f' suffix */
    int negative;
    uint64_t magnitude; /* integer literal's absolute value (when !is_float) */
    int overflow;       /* the integer literal does not fit 64 bits */
    double float_value; /* the literal's value as a double (integers too) */

    ts_tp_node *first_child, *last_child, *next;
    int num_children;
};

typedef struct ts_tp_doc ts_tp_doc;

/* Parses text (not necessarily NUL-terminated). `source` names the file in error messages.
 * Nesting deeper than TS_TP_MAX_DEPTH, or more than TS_TP_MAX_NODES fields and values (memory stays
 * proportional to a small multiple of the input), is refused. */
#define TS_TP_MAX_DEPTH 64
#define TS_TP_MAX_NODES 262144
int ts_tp_parse(const char *text, size_t len, const char *source, ts_tp_doc **out, ts_error *err);
void ts_tp_free(ts_tp_doc *doc);
const ts_tp_node *ts_tp_root(const ts_tp_doc *doc);
const char *ts_tp_source(const ts_tp_doc *doc);

/* ---- schema ---- */

typedef enum ts_tp_type {
    TS_TP_INT32 = 0,
    TS_TP_INT64,
    TS_TP_UINT32,
    TS_TP_UINT64,
    TS_TP_FLOAT,
    TS_TP_DOUBLE,
    TS_TP_BOOL,
    TS_TP_STRING_T,
    TS_TP_ENUM,
    TS_TP_MESSAGE_T,
} ts_tp_type;

typedef struct ts_tp_enum_desc {
    const char *full_name;
    const char *const *names;
    const int *numbers;
    int count;
} ts_tp_enum_desc;

typedef struct ts_tp_message_desc ts_tp_message_desc;

typedef struct ts_tp_field_desc {
    const char *name;
    ts_tp_type type;
    int repeated;                       /* maps are repeated messages of a key/value entry type, as on the wire */
    const ts_tp_message_desc *message;  /* TS_TP_MESSAGE_T */
    const ts_tp_enum_desc *enumeration; /* TS_TP_ENUM */
    const char *oneof;                  /* name of the oneof group, or NULL */
} ts_tp_field_desc;

struct ts_tp_message_desc {
    const char *full_name;
    const ts_tp_field_desc *fields;
    int num_fields;
};

const ts_tp_field_desc *ts_tp_find_field(const ts_tp_message_desc *m, const char *name);
const char *ts_tp_type_name(ts_tp_type t);

/* Checks every field of `msg` (recursively) against `desc`: unknown fields, values of the wrong type
 * or out of range, a non-repeated field given twice or as a list, two members of one oneof. Reports
 * the first problem in document order. */
int ts_tp_validate(const ts_tp_doc *doc, const ts_tp_node *msg, const ts_tp_message_desc *desc, ts_error *err);

/* ---- typed reads of validated values (they still check, so they are safe on any tree) ---- */

/* Calls fn for each value of field `name` in message `msg`, in document order, flattening lists and
 * repeated keys. Stops early and returns -1 when fn returns non-zero. */
typedef int (*ts_tp_value_fn)(const ts_tp_node *value, void *ctx);
int ts_tp_each(const ts_tp_node *msg, const char *name, ts_tp_value_fn fn, void *ctx);
/* The last value of field `name` (protobuf's rule for a scalar given more than once), or NULL. */
const ts_tp_node *ts_tp_get(const ts_tp_node *msg, const char *name);
/* Number of values of field `name` (list elements counted one by one). */
int ts_tp_count(const ts_tp_node *msg, const char *name);

int ts_tp_int(const ts_tp_doc *doc, const ts_tp_node *v, int64_t lo, int64_t hi, int64_t *out, ts_error *err);
int ts_tp_uint(const ts_tp_doc *doc, const ts_tp_node *v, uint64_t hi, uint64_t *out, ts_error *err);
int ts_tp_double(const ts_tp_doc *doc, const ts_tp_node *v, double *out, ts_error *err);
int ts_tp_bool(const ts_tp_doc *doc, const ts_tp_node *v, int *out, ts_error *err);
/* Copies a string value into buf (NUL-terminated); refuses values that do not fit or contain NUL. */
int ts_tp_string(const ts_tp_doc *doc, const ts_tp_node *v, char *buf, size_t cap, ts_error *err);
int ts_tp_enum(const ts_tp_doc *doc, const ts_tp_node *v, const ts_tp_enum_desc *e, int *out, ts_error *err);

/* Describes a value for error messages: `string "abc"`, `number 12`, `identifier KIND_CPU`,
 * `a message`, `a list`. */
void ts_tp_describe(const ts_tp_node *v, char *buf, size_t cap);

#endif
