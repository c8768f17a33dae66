/* GGUF writer (version 3): metadata of every value type, including arrays of strings and nested
 * arrays, and tensors laid out with the file's alignment in the order they were added (the layout
 * llama.cpp requires: each tensor's offset is the previous one's end, padded). The file is written
 * through ts_atomic_* so a failure leaves nothing half-written at the destination. Tensor data is
 * not copied: the caller keeps it alive until ts_gguf_writer_write returns. */
#ifndef TS_FORMAT_GGUF_WRITER_H
#define TS_FORMAT_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"

typedef struct ts_gguf_writer ts_gguf_writer;

ts_gguf_writer *ts_gguf_writer_new(void);
void ts_gguf_writer_free(ts_gguf_writer *w);

/* Setting a key that exists replaces its value (keeping its position). */
int ts_gguf_writer_set_u8(ts_gguf_writer *w, const char *key, uint8_t v, ts_error *err);
int ts_gguf_writer_set_i8(ts_gguf_writer *w, const char *key, int8_t v, ts_error *err);
int ts_gguf_writer_set_u16(ts_gguf_writer *w, const char *key, uint16_t v, ts_error *err);
int ts_gguf_writer_set_i16(ts_gguf_writer *w, const char *key, int16_t v, ts_error *err);
int ts_gguf_writer_set_u32(ts_gguf_writer *w, const char *key, uint32_t v, ts_error *err);
int ts_gguf_writer_set_i32(ts_gguf_writer *w, const char *key, int32_t v, ts_error *err);
int ts_gguf_writer_set_f32(ts_gguf_writer *w, const char *key, float v, ts_error *err);
int ts_gguf_writer_set_bool(ts_gguf_writer *w, const char *key, int v, ts_error *err);
int ts_gguf_writer_set_string(ts_gguf_writer *w, const char *key, const char *v, ts_error *err);
int ts_gguf_writer_set_u64(ts_gguf_writer *w, const char *key, uint64_t v, ts_error *err);
int ts_gguf_writer_set_i64(ts_gguf_writer *w, const char *key, int64_t v, ts_error *err);
int ts_gguf_writer_set_f64(ts_gguf_writer *w, const char *key, double v, ts_error *err);
/* An array of n fixed-size values of elem_type (u8 ... f64, bool), packed little-endian. */
int ts_gguf_writer_set_array(ts_gguf_writer *w, const char *key, ts_gguf_type elem_type, const void *values,
                             uint64_t n, ts_error *err);
int ts_gguf_writer_set_string_array(ts_gguf_writer *w, const char *key, const char *const *values, uint64_t n,
                                    ts_error *err);
/* Any value given in its GGUF encoding (e.g. an array of arrays); the encoding is validated. */
int ts_gguf_writer_set_encoded(ts_gguf_writer *w, const char *key, ts_gguf_type type, const void *encoded,
                               size_t n, ts_error *err);

/* A tensor with a row-major shape (shape[ndim-1] contiguous); data holds exactly the bytes the type
 * and shape need. */
int ts_gguf_writer_add_tensor(ts_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                              const void *data, size_t nbytes, ts_error *err);
/* The same, its bytes the concatenation of several buffers (e.g. experts merged into one tensor). */
int ts_gguf_writer_add_tensor_parts(ts_gguf_writer *w, const char *name, int ggml_type, int ndim,
                                    const int64_t *shape, const void *const *parts, const size_t *part_bytes,
                                    int nparts, ts_error *err);
/* Hands a malloc'ed buffer to the writer, freed with it (for converted tensor data). */
int ts_gguf_writer_own(ts_gguf_writer *w, void *buffer, ts_error *err);

int ts_gguf_writer_write(ts_gguf_writer *w, const char *path, ts_error *err);

#endif
