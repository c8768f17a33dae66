#include "runtime/kv_cache.h"

#include <stdlib.h>
#include <string.h>

int ts_kv_cache_init(ts_kv_cache *c, ts_backend *be, const ts_kv_layout *layout, ts_error *err) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->layout = *layout;
    if (layout->num_blocks <= 0 || layout->block_tokens <= 0)
        return ts_fail(err, "KV cache needs at least one block of at least one token");
    c->free_blocks = malloc((size_t)layout->num_blocks * sizeof(int32_t));
    if (!c->free_blocks) return ts_fail(err, "out of memory");
    c->store = be->ops->kv_create(be, layout, err);
    if (!c->store) {
        free(c->free_blocks);
        c->free_blocks = NULL;
        return -1;
    }
    /* Lowest ids are handed out first (popped from the end). */
    for (int32_t i = 0; i < layout->num_blocks; i++) c->free_blocks[i] = layout->num_blocks - 1 - i;
    c->num_free = layout->num_blocks;
    pthread_mutex_init(&c->lock, NULL);
    return 0;
}

int ts_kv_cache_add_host(ts_kv_cache *c, ts_backend *host_be, const ts_kv_layout *host_layout, ts_error *err) {
    if (host_layout->num_blocks != c->layout.num_blocks || host_layout->block_tokens != c->layout.block_tokens)
        return ts_fail(err, "the host KV store must have the device store's blocks (%d of %d tokens)",
                       c->layout.num_blocks, c->layout.block_tokens);
    c->host_store = host_be->ops->kv_create(host_be, host_layout, err);
    if (!c->host_store) return -1;
    c->host_be = host_be;
    return 0;
}

void ts_kv_cache_destroy(ts_kv_cache *c) {
    if (!c->free_blocks) return;
    c->be->ops->kv_destroy(c->be, c->store);
    if (c->host_store) c->host_be->ops->kv_destroy(c->host_be, c->host_store);
    free(c->free_blocks);
    pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof *c);
}

int32_t ts_kv_cache_free_count(ts_kv_cache *c) {
    pthread_mutex_lock(&c->lock);
    int32_t n = c->num_free;
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t ts_kv_cache_bytes_per_block(const ts_kv_layout *l) {
    return 2u * (size_t)l->num_layers * (size_t)l->block_tokens * (size_t)l->num_kv_heads * (size_t)l->head_dim *
           sizeof(float);
}

void ts_kv_seq_init(ts_kv_seq *s) { memset(s, 0, sizeof *s); }

int32_t ts_kv_blocks_for(const ts_kv_cache *c, int32_t tokens) {
    return (tokens + c->layout.block_tokens - 1) / c->layout.block_tokens;
}

int ts_kv_seq_reserve(ts_kv_cache *c, ts_kv_seq *s, int32_t tokens, ts_error *err) {
    int32_t need = ts_kv_blocks_for(c, tokens);
    if (need <= s->num_blocks) return 0;
    if (need > s->capacity) {
        int32_t cap = s->capacity ? s->capacity : 8;
        while (cap < need) cap *= 2;
        int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof(int32_t));
        if (!nb) return ts_fail(err, "out of memory");
        s->blocks = nb;
        s->capacity = cap;
    }
    pthread_mutex_lock(&c->lock);
    int32_t more = need - s->num_blocks;
    if (more > c->num_free) {
        int32_t free_now = c->num_free;
        pthread_mutex_unlock(&c->lock);
        return ts_fail(err, "KV cache full: %d more blocks of %d tokens needed, %d free", more, c->layout.block_tokens,
                       free_now);
    }
    for (int32_t i = 0; i < more; i++) s->blocks[s->num_blocks++] = c->free_blocks[--c->num_free];
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void ts_kv_seq_release(ts_kv_cache *c, ts_kv_seq *s) {
    pthread_mutex_lock(&c->lock);
    for (int32_t i = s->num_blocks - 1; i >= 0; i--) c->free_blocks[c->num_free++] = s->blocks[i];
    pthread_mutex_unlock(&c->lock);
    free(s->blocks);
    ts_kv_seq_init(s);
}
