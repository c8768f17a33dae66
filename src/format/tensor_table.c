#include "format/tensor_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_tensor_table_init(ts_tensor_table *t) { memset(t, 0, sizeof *t); }

void ts_tensor_table_free(ts_tensor_table *t) {
    for (int i = 0; i < t->count; i++) free(t->items[i].name);
    free(t->items);
    for (int i = 0; i < t->num_files; i++) ts_unmap_file(&t->files[i]);
    free(t->files);
    free(t->hash_slots);
    for (int i = 0; i < t->num_owned; i++) free(t->owned[i]);
    free(t->owned);
    memset(t, 0, sizeof *t);
}

int ts_tensor_table_own(ts_tensor_table *t, void *buffer, ts_error *err) {
    void **no = realloc(t->owned, (size_t)(t->num_owned + 1) * sizeof *no);
    if (!no) {
        free(buffer);
        return ts_fail(err, "out of memory");
    }
    t->owned = no;
    t->owned[t->num_owned++] = buffer;
    return 0;
}

int ts_tensor_table_add_file(ts_tensor_table *t, const ts_mapped_file *mf, ts_error *err) {
    ts_mapped_file *nf = realloc(t->files, (size_t)(t->num_files + 1) * sizeof *nf);
    if (!nf) return ts_fail(err, "out of memory");
    t->files = nf;
    t->files[t->num_files] = *mf;
    return t->num_files++;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) {
        h ^= (uint8_t)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static int rehash(ts_tensor_table *t, int cap) {
    int32_t *slots = malloc((size_t)cap * sizeof(int32_t));
    if (!slots) return -1;
    for (int i = 0; i < cap; i++) slots[i] = -1;
    for (int i = 0; i < t->count; i++) {
        uint64_t h = hash_name(t->items[i].name) & (uint64_t)(cap - 1);
        while (slots[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        slots[h] = i;
    }
    free(t->hash_slots);
    t->hash_slots = slots;
    t->hash_cap = cap;
    return 0;
}

const ts_tensor_desc *ts_tensor_table_find(const ts_tensor_table *t, const char *name) {
    if (!t->hash_cap) return NULL;
    uint64_t h = hash_name(name) & (uint64_t)(t->hash_cap - 1);
    while (t->hash_slots[h] >= 0) {
        const ts_tensor_desc *d = &t->items[t->hash_slots[h]];
        if (!strcmp(d->name, name)) return d;
        h = (h + 1) & (uint64_t)(t->hash_cap - 1);
    }
    return NULL;
}

int ts_tensor_table_add(ts_tensor_table *t, const ts_tensor_desc *d, ts_error *err) {
    if (ts_tensor_table_find(t, d->name)) return ts_fail(err, "tensor \"%s\" appears twice", d->name);
    if (t->count == t->capacity) {
        int cap = t->capacity ? t->capacity * 2 : 256;
        ts_tensor_desc *ni = realloc(t->items, (size_t)cap * sizeof *ni);
        if (!ni) return ts_fail(err, "out of memory");
        t->items = ni;
        t->capacity = cap;
    }
    ts_tensor_desc *slot = &t->items[t->count];
    *slot = *d;
    slot->name = strdup(d->name);
    if (!slot->name) return ts_fail(err, "out of memory");
    t->count++;
    if (t->count * 2 > t->hash_cap) {
        int cap = t->hash_cap ? t->hash_cap : 512;
        while (t->count * 2 > cap) cap *= 2;
        if (rehash(t, cap) != 0) return ts_fail(err, "out of memory");
    } else {
        uint64_t h = hash_name(slot->name) & (uint64_t)(t->hash_cap - 1);
        while (t->hash_slots[h] >= 0) h = (h + 1) & (uint64_t)(t->hash_cap - 1);
        t->hash_slots[h] = t->count - 1;
    }
    return 0;
}

int64_t ts_tensor_numel(const ts_tensor_desc *d) {
    int64_t n = 1;
    for (int i = 0; i < d->ndim; i++) n *= d->shape[i];
    return n;
}

const char *ts_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "[");
    for (int i = 0; i < ndim && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < cap) snprintf(buf + off, cap - off, "]");
    return buf;
}

const char *ts_tensor_file(const ts_tensor_table *t, const ts_tensor_desc *d) {
    return d->file_index >= 0 && d->file_index < t->num_files ? t->files[d->file_index].path : "?";
}
