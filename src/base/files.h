/* File access: read-only memory maps for weights, bounded whole-file reads for small text files,
 * and atomic writes (temporary file + rename) so that a failed write never leaves half a file. */
#ifndef TS_BASE_FILES_H
#define TS_BASE_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ts_mapped_file {
    const uint8_t *data;
    size_t size;
    char path[4096];
    /* identity at mapping time, to notice files changed underneath the mapping */
    uint64_t dev, ino;
    int64_t mtime_ns;
} ts_mapped_file;

/* 0: unchanged; 1: modified in place (same file, other size or time: what the mapping shows may change,
 * and a truncated file faults on access); 2: replaced or removed (the mapping keeps the loaded version). */
int ts_mapped_file_changed(const ts_mapped_file *mf, char *why, size_t cap);

int ts_map_file(const char *path, ts_mapped_file *out, ts_error *err);
void ts_unmap_file(ts_mapped_file *mf);

/* Reads a whole file into a NUL-terminated heap buffer; refuses files larger than max_bytes. */
int ts_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, ts_error *err);

/* Writes via path.tmp.<pid> then rename; on failure removes the temporary and leaves path untouched. */
typedef struct ts_atomic_file ts_atomic_file;
ts_atomic_file *ts_atomic_open(const char *path, ts_error *err);
int ts_atomic_write(ts_atomic_file *f, const void *data, size_t n, ts_error *err);
int64_t ts_atomic_tell(const ts_atomic_file *f);
int ts_atomic_commit(ts_atomic_file *f, ts_error *err); /* frees f */
void ts_atomic_abort(ts_atomic_file *f);               /* frees f, removes the temporary */

int ts_file_exists(const char *path);
int ts_is_directory(const char *path);
/* Joins a directory and a name into out (size cap); returns -1 when it would not fit. */
int ts_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
