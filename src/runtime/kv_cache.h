/* The paged KV cache: a backend KV store divided into fixed-size blocks, handed to sequences on
 * demand. Sequences own block tables; blocks return to the free list when a sequence ends. The
 * allocator is thread-safe (the server's request threads release, the engine thread reserves). */
#ifndef TS_RUNTIME_KV_CACHE_H
#define TS_RUNTIME_KV_CACHE_H

#include <pthread.h>

#include "backend/backend.h"

typedef struct ts_kv_cache {
    ts_backend *be;
    ts_kv_store *store;
    ts_kv_layout layout;
    /* A split model's (--gpu-layers) layers past the split keep their entries here, on the host
     * backend, under the same block ids; NULL otherwise. */
    ts_backend *host_be;
    ts_kv_store *host_store;
    int32_t *free_blocks;
    int32_t num_free;
    pthread_mutex_t lock;
} ts_kv_cache;

typedef struct ts_kv_seq {
    int32_t *blocks;
    int32_t num_blocks;
    int32_t capacity;
    int32_t num_tokens; /* positions already written in the cache */
} ts_kv_seq;

int ts_kv_cache_init(ts_kv_cache *c, ts_backend *be, const ts_kv_layout *layout, ts_error *err);
/* Adds the host-side store of a split model (layout: its host layers, the same block geometry). */
int ts_kv_cache_add_host(ts_kv_cache *c, ts_backend *host_be, const ts_kv_layout *host_layout, ts_error *err);
void ts_kv_cache_destroy(ts_kv_cache *c);
int32_t ts_kv_cache_free_count(ts_kv_cache *c);
size_t ts_kv_cache_bytes_per_block(const ts_kv_layout *l);

void ts_kv_seq_init(ts_kv_seq *s);
/* Blocks a sequence needs to hold `tokens` positions. */
int32_t ts_kv_blocks_for(const ts_kv_cache *c, int32_t tokens);
/* Grows the sequence's block table to cover `tokens` positions; fails (without partial allocation)
 * when too few blocks are free. */
int ts_kv_seq_reserve(ts_kv_cache *c, ts_kv_seq *s, int32_t tokens, ts_error *err);
/* Returns all of the sequence's blocks and empties it. */
void ts_kv_seq_release(ts_kv_cache *c, ts_kv_seq *s);

#endif
