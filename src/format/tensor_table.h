/* The tensors of a model as found in its files (safetensors or GGUF): names, element types, shapes
 * in row-major order (PyTorch's order: the last dimension is contiguous), and pointers into the
 * memory-mapped files that hold them. The table owns the mappings. Lookup by name is hashed, since
 * large mixture-of-experts checkpoints hold tens of thousands of tensors. */
#ifndef TS_FORMAT_TENSOR_TABLE_H
#define TS_FORMAT_TENSOR_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/files.h"
#include "quant/dtype.h"

#define TS_MAX_DIMS 4

typedef struct ts_tensor_desc {
    char *name;
    ts_dtype dtype;       /* TS_DTYPE_COUNT when the file's type is one tessera cannot compute with */
    char file_dtype[16];  /* the type as the file spells it ("BF16", "I64", "q4_K") */
    int ndim;
    int64_t shape[TS_MAX_DIMS];
    const void *data;
    size_t nbytes;
    int file_index; /* into the table's files */
} ts_tensor_desc;

typedef struct ts_tensor_table {
    ts_tensor_desc *items;
    int count;
    int capacity;
    ts_mapped_file *files;
    int num_files;
    int gguf_layout;     /* tensors follow llama.cpp's conventions (GPT-2 Conv1D already [out, in]) */
    int32_t *hash_slots; /* open addressing, -1 empty; capacity hash_cap */
    int hash_cap;
    void **owned; /* heap buffers holding tensors that had to be rewritten on load (freed with the table) */
    int num_owned;
} ts_tensor_table;

void ts_tensor_table_init(ts_tensor_table *t);
void ts_tensor_table_free(ts_tensor_table *t);

/* Takes ownership of a mapping; returns its index. */
int ts_tensor_table_add_file(ts_tensor_table *t, const ts_mapped_file *mf, ts_error *err);
/* Takes ownership of a malloc'ed buffer (freed by ts_tensor_table_free); on failure frees it. */
int ts_tensor_table_own(ts_tensor_table *t, void *buffer, ts_error *err);
/* Copies the name; rejects duplicates. */
int ts_tensor_table_add(ts_tensor_table *t, const ts_tensor_desc *d, ts_error *err);
const ts_tensor_desc *ts_tensor_table_find(const ts_tensor_table *t, const char *name);
int64_t ts_tensor_numel(const ts_tensor_desc *d);
/* "[151936, 1024]" into buf. */
const char *ts_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);
const char *ts_tensor_file(const ts_tensor_table *t, const ts_tensor_desc *d);

#endif
