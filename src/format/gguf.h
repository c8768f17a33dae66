/* GGUF reader (versions 2 and 3): parses a file image held in memory, every metadata value type
 * including nested arrays, tensor infos and the aligned data section, with strict bounds checks: a
 * malformed file gets an error naming the file, the byte offset and the field, never a crash or an
 * allocation larger than the bytes present justify. Values are not copied out of the image (keys and
 * tensor names are, NUL-terminated); tensors can be added to a ts_tensor_table as views into the
 * memory-mapped file. The writer is in gguf_writer.h, the model mapping in gguf_model.h. */
#ifndef TS_FORMAT_GGUF_H
#define TS_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/files.h"
#include "format/tensor_table.h"

#define TS_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define TS_GGUF_DEFAULT_ALIGNMENT 32
#define TS_GGUF_MAX_NAME 64        /* tensor names, per the GGUF specification */
#define TS_GGUF_MAX_ARRAY_DEPTH 8  /* arrays of arrays nested deeper than this are refused */

typedef enum ts_gguf_type {
    TS_GGUF_U8 = 0,
    TS_GGUF_I8 = 1,
    TS_GGUF_U16 = 2,
    TS_GGUF_I16 = 3,
    TS_GGUF_U32 = 4,
    TS_GGUF_I32 = 5,
    TS_GGUF_F32 = 6,
    TS_GGUF_BOOL = 7,
    TS_GGUF_STRING = 8,
    TS_GGUF_ARRAY = 9,
    TS_GGUF_U64 = 10,
    TS_GGUF_I64 = 11,
    TS_GGUF_F64 = 12,
    TS_GGUF_TYPE_COUNT
} ts_gguf_type;

const char *ts_gguf_type_name(ts_gguf_type t);
/* Bytes of one value of a fixed-size type; 0 for string and array. */
size_t ts_gguf_type_size(ts_gguf_type t);

/* A string inside the image: not NUL-terminated. */
typedef struct ts_gguf_str {
    const char *ptr;
    uint64_t len;
} ts_gguf_str;

/* One metadata value: where its payload lies in the image. For arrays, `elem_type` and `count`
 * describe the elements and `offset` points at the first one. */
typedef struct ts_gguf_value {
    ts_gguf_type type;
    ts_gguf_type elem_type;
    uint64_t count;
    size_t offset;
    size_t size; /* bytes of the payload */
} ts_gguf_value;

typedef struct ts_gguf_kv {
    char *key;
    ts_gguf_value value;
    size_t key_offset; /* where the key's length field starts, for messages */
} ts_gguf_kv;

typedef struct ts_gguf_ggml_type_info {
    const char *name; /* as ggml spells it: "F32", "Q4_K", "IQ2_XXS" ... */
    int block_size;
    int block_bytes;
} ts_gguf_ggml_type_info;

/* Every ggml type id a GGUF file may hold; NULL for ids no ggml version defines. */
const ts_gguf_ggml_type_info *ts_gguf_ggml_type(int ggml_type);

typedef struct ts_gguf_tensor_info {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];   /* GGUF order: ne[0] is the innermost (contiguous) dimension; unused are 1 */
    int ggml_type;
    uint64_t offset; /* from the start of the data section */
    size_t nbytes;
    size_t info_offset; /* where this tensor's info starts in the file */
} ts_gguf_tensor_info;

typedef struct ts_gguf {
    const uint8_t *data;
    size_t size;
    char source[512]; /* file name used in messages */
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv;
    int64_t n_tensors;
    ts_gguf_kv *kvs;
    ts_gguf_tensor_info *tensors;
    size_t data_offset; /* start of the tensor data section */
    ts_mapped_file mapping; /* held when opened from a path and not yet handed to a table */
    int owns_mapping;
} ts_gguf;

/* Parses an image in memory (not copied: it must outlive `out`). `source` names it in errors. */
int ts_gguf_parse(const uint8_t *data, size_t size, const char *source, ts_gguf *out, ts_error *err);
/* Maps the file and parses it. */
int ts_gguf_open(const char *path, ts_gguf *out, ts_error *err);
void ts_gguf_free(ts_gguf *g);

const ts_gguf_kv *ts_gguf_find(const ts_gguf *g, const char *key);
const ts_gguf_tensor_info *ts_gguf_find_tensor(const ts_gguf *g, const char *name);

/* Typed getters. Return 0 when found and of a compatible type, 1 when the key is absent (err left
 * alone), -1 (err filled, naming file and key) when it has an incompatible type or value.
 * get_uint accepts any integer type whose value is >= 0; get_int any integer type; get_float f32,
 * f64 and integers; get_bool only bool. */
int ts_gguf_get_uint(const ts_gguf *g, const char *key, uint64_t *out, ts_error *err);
int ts_gguf_get_int(const ts_gguf *g, const char *key, int64_t *out, ts_error *err);
int ts_gguf_get_float(const ts_gguf *g, const char *key, double *out, ts_error *err);
int ts_gguf_get_bool(const ts_gguf *g, const char *key, int *out, ts_error *err);
int ts_gguf_get_string(const ts_gguf *g, const char *key, ts_gguf_str *out, ts_error *err);
/* An array; when want_elem != TS_GGUF_TYPE_COUNT its element type must be that one. */
int ts_gguf_get_array(const ts_gguf *g, const char *key, ts_gguf_type want_elem, ts_gguf_value *out, ts_error *err);

/* Reads scalar element i of a numeric/bool array as int64 / double (no range surprises: u64 values
 * above INT64_MAX fail). Strings of a string array are walked with ts_gguf_array_strings. */
int ts_gguf_array_int(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, int64_t *out, ts_error *err);
int ts_gguf_array_float(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, double *out, ts_error *err);
/* Fills views[0..count) of a string array (views sized by the caller from arr->count, which the
 * parser has already bounded by the bytes present). */
int ts_gguf_array_strings(const ts_gguf *g, const ts_gguf_value *arr, ts_gguf_str *views, ts_error *err);
/* Element i of an array of arrays, or of any array, as a value (walks the preceding elements). */
int ts_gguf_array_elem(const ts_gguf *g, const ts_gguf_value *arr, uint64_t i, ts_gguf_value *out, ts_error *err);
/* Scalar value at `v` (not an array or string) as int64 / double. */
int ts_gguf_value_int(const ts_gguf *g, const ts_gguf_value *v, int64_t *out);
double ts_gguf_value_float(const ts_gguf *g, const ts_gguf_value *v);
ts_gguf_str ts_gguf_value_str(const ts_gguf *g, const ts_gguf_value *v);

/* Copies a string view into a NUL-terminated heap string (NULL when out of memory). */
char *ts_gguf_strdup(ts_gguf_str s);

/* Adds every tensor to the table under its GGUF name with row-major shapes (shape[0] = ne[n-1]).
 * Types tessera computes with get their ts_dtype; others get TS_DTYPE_COUNT and file_dtype set to
 * the ggml name. When g owns its mapping (ts_gguf_open), ownership passes to the table: g's data
 * stays readable until the table is freed. */
int ts_gguf_add_to_table(ts_gguf *g, ts_tensor_table *table, ts_error *err);

/* Row-major shape of a tensor info. */
void ts_gguf_tensor_shape(const ts_gguf_tensor_info *t, int64_t shape[4], int *ndim);

#endif
