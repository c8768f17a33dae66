/* The CUDA backend: device memory, the stream and cuBLAS handle, the KV store, per-step metadata
 * uploads, and the operation table. Kernels live in cuda_ops.cu, cuda_matmul.cu, cuda_attention.cu
 * and cuda_moe.cu. All work is queued on one stream; to_host synchronises it. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

void cuda_log(cuda_impl *im, int level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (im && im->opt.log) im->opt.log(level, msg);
    else fprintf(stderr, "tessera cuda: %s\n", msg);
}

int cuda_check(cuda_impl *im, cudaError_t err, const char *what) {
    if (err == cudaSuccess) return 0;
    snprintf(im->last_error, sizeof im->last_error, "%s: %s", what, cudaGetErrorString(err));
    cuda_log(im, 0, "%s", im->last_error);
    return 1;
}

void *cuda_scratch(cuda_impl *im, void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return *buf;
    im->mem_generation++;
    /* kernels already recorded in a capture may point at the old buffer: keep it until the capture ends */
    if (*buf && im->capturing && im->n_deferred < 8) im->deferred_free[im->n_deferred++] = *buf;
    else if (*buf) cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    size_t want = need + need / 4;
    if (cuda_check(im, cudaMalloc(buf, want), "scratch allocation")) return NULL;
    *cap = want;
    return *buf;
}

unsigned *cuda_counters(cuda_impl *im, void **buf, size_t *cap, size_t count) {
    const size_t old_cap = *cap;
    unsigned *c = (unsigned *)cuda_scratch(im, buf, cap, count * sizeof(unsigned));
    if (c && *cap != old_cap) {
        cudaMemsetAsync(c, 0, *cap, im->stream);
        cuda_queued_copy(im);
    }
    return c;
}

static void *cu_alloc(ts_backend *be, size_t bytes, ts_error *err) {
    cuda_impl *im = cuda_of(be);
    void *p = NULL;
    size_t rounded = bytes ? bytes : 16;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e != cudaSuccess) {
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        snprintf(err->message, sizeof err->message, "cuda: cannot allocate %zu bytes (%zu of %zu free): %s", bytes,
                 free_b, total, cudaGetErrorString(e));
        return NULL;
    }
    cudaMemsetAsync(p, 0, rounded, im->stream);
    cuda_queued_copy(im);
    im->buffer_bytes += rounded;
    return p;
}

static void cu_free(ts_backend *be, void *p) {
    cuda_settle_due(cuda_of(be));
    cuda_of(be)->mem_generation++;
    if (p) cudaFree(p);
}

static void graph_end(cuda_impl *im);
void cuda_graph_finish(cuda_impl *im) { graph_end(im); }

/* A measurement switch set to exactly "0" (TESSERA_CUDA_STAGE=0 and the like). */
static int switched_off(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "0") == 0;
}

static void cu_to_host(ts_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_impl *im = cuda_of(be);
    graph_end(im);
    cuda_qact_materialize(im, (const float *)src);
    cuda_check(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, im->stream), "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
}

static void cu_from_host(ts_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_impl *im = cuda_of(be);
    cuda_settle_due(im);
    im->qact.src = NULL; /* dst may hold activations a producer quantized */
    cuda_check(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, im->stream), "copy to device");
    /* the host buffer may be freed right after: wait for the copy */
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
}

static ts_kv_store *cu_kv_create(ts_backend *be, const ts_kv_layout *l, ts_error *err) {
    cuda_impl *im = cuda_of(be);
    ts_kv_store *kv = (ts_kv_store *)calloc(1, sizeof *kv);
    kv->layout = *l;
    kv->half = im->opt.precision != TS_PRECISION_FP32;
    kv->layer_elems = (size_t)l->num_blocks * l->block_tokens * l->num_kv_heads * l->head_dim;
    size_t bytes = kv->layer_elems * l->num_layers * (kv->half ? 2 : 4);
    /* batches of decode tokens: as many splits of their attention as fill one wave of blocks (more waves
     * of shorter splits measured slower: their merge is the extra work) */
    if (l->num_kv_heads > 0) im->att_batch_pairs = cuda_attention_batch_slots(im, kv->half, l->head_dim) / l->num_kv_heads;
    kv->k = cu_alloc(be, bytes, err);
    kv->v = kv->k ? cu_alloc(be, bytes, err) : NULL;
    if (!kv->v) {
        if (kv->k) cudaFree(kv->k);
        free(kv);
        return NULL;
    }
    return kv;
}

static void cu_kv_destroy(ts_backend *be, ts_kv_store *kv) {
    cuda_of(be)->mem_generation++;
    if (!kv) return;
    cudaFree(kv->k);
    cudaFree(kv->v);
    free(kv);
}

static int grow_i32(cuda_impl *im, int32_t **p, int *cap, int need) {
    if (need <= *cap) return 0;
    im->mem_generation++;
    int n = need < 64 ? 64 : need * 2;
    if (*p) cudaFree(*p);
    *p = NULL;
    *cap = 0;
    if (cuda_check(im, cudaMalloc((void **)p, (size_t)n * sizeof(int32_t)), "step metadata")) return -1;
    *cap = n;
    return 0;
}


/* Decode steps (one token per sequence) are recorded as a CUDA graph the second time their shape is
 * seen and replayed from then on; launch overhead dominates small models otherwise. */
static void graph_begin(cuda_impl *im, const ts_step *step) {
    im->capturing = im->replaying = 0;
    im->current = NULL;
    if (!im->opt.use_graphs || im->graphs_disabled || step->n_tokens != step->n_seqs || step->n_logits > step->n_tokens)
        return;
    int splits = cuda_attention_splits(im, im->step.max_pos, im->step.n_tokens);
    cuda_graph_entry *e = NULL;
    for (int i = 0; i < im->n_graphs; i++) {
        cuda_graph_entry *g = &im->graphs[i];
        if (g->n_tokens == step->n_tokens && g->n_seqs == step->n_seqs && g->n_logits == step->n_logits && g->splits == splits)
            e = g;
    }
    if (!e) {
        if (im->n_graphs == CUDA_GRAPH_CACHE) return;
        e = &im->graphs[im->n_graphs++];
        memset(e, 0, sizeof *e);
        e->n_tokens = step->n_tokens;
        e->n_seqs = step->n_seqs;
        e->n_logits = step->n_logits;
        e->splits = splits;
    }
    im->current = e;
    if (e->generation != im->mem_generation) {
        /* memory a recorded graph points into was freed or moved since (or this is another model):
         * forget it and count this shape as seen for the first time */
        if (e->exec) cudaGraphExecDestroy(e->exec);
        e->exec = NULL;
        e->seen = 0;
        e->generation = im->mem_generation;
    }
    if (e->exec) {
        /* launched now, not where the step's results are read (graph_end): the host's walk through the
         * step's operations, all skipped in a replay, then overlaps the GPU's work instead of preceding it */
        im->replaying = 1;
        cuda_check(im, cudaGraphLaunch(e->exec, im->stream), "graph launch");
    } else if (e->seen++ >= 1) {
        e->generation = im->mem_generation;
        e->argmax_fused = 0; /* until the capture's head product picks the token */
        if (cudaStreamBeginCapture(im->stream, cudaStreamCaptureModeRelaxed) == cudaSuccess) im->capturing = 1;
    }
}

/* An operation that needs the host arrived while recording: run what was recorded so far (the step's
 * earlier operations must still happen), then continue without graphs for good. */
void cuda_graph_abort(cuda_impl *im, const char *why) {
    if (!im->capturing) return;
    cudaGraph_t g = NULL;
    im->capturing = 0;
    im->graphs_disabled = 1;
    if (cudaStreamEndCapture(im->stream, &g) == cudaSuccess && g) {
        cudaGraphExec_t exec = NULL;
        if (cudaGraphInstantiate(&exec, g, 0) == cudaSuccess) {
            cudaGraphLaunch(exec, im->stream);
            cudaStreamSynchronize(im->stream);
            cudaGraphExecDestroy(exec);
        }
        cudaGraphDestroy(g);
    }
    cudaGetLastError();
    cuda_log(im, 2, "cuda: %s; CUDA graphs are off from here on", why);
}

/* Ends a capture (instantiating it) or launches the replay, before the step's results are read. */
static void graph_end(cuda_impl *im) {
    cuda_settle_due(im); /* the host may read the norm's output */
    if (im->capturing) {
        cudaGraph_t g = NULL;
        im->capturing = 0;
        if (cuda_check(im, cudaStreamEndCapture(im->stream, &g), "graph capture") == 0 && g) {
            if (cuda_check(im, cudaGraphInstantiate(&im->current->exec, g, 0), "graph instantiate") == 0)
                cuda_check(im, cudaGraphLaunch(im->current->exec, im->stream), "graph launch");
            cudaGraphDestroy(g);
        }
        if (!im->current->exec) im->graphs_disabled = 1;
        /* if memory moved during the capture, the graph ran once but must not be replayed */
        if (im->current->generation != im->mem_generation) im->current->generation = ~0ul;
        if (im->n_deferred) {
            cudaStreamSynchronize(im->stream);
            for (int i = 0; i < im->n_deferred; i++) cudaFree(im->deferred_free[i]);
            im->n_deferred = 0;
        }
    } else if (im->replaying) {
        im->replaying = 0; /* launched by graph_begin */
    }
}

/* Uploads the step's tokens, positions, per-token sequence index, per-sequence geometry and block
 * tables in one copy from a host staging area. */
/* Prefill sequences (more than one token in the step) cut into tiles of per_tile query tokens: tile i is
 * sequence tile_seq[i] from its token tile_token[i]. Returns the number of tiles (at most n_tokens). */
static int cut_tiles(const ts_step *step, int per_tile, int32_t *tile_seq, int32_t *tile_token) {
    int n_tiles = 0;
    for (int i = 0; i < step->n_seqs; i++) {
        const ts_seq_view *v = &step->seqs[i];
        if (v->n_tokens == 1) continue;
        for (int t = 0; t < v->n_tokens; t += per_tile) {
            tile_seq[n_tiles] = i;
            tile_token[n_tiles++] = v->first_token + t;
        }
    }
    return n_tiles;
}

void cuda_recut_tiles(cuda_impl *im) {
    cuda_step *st = &im->step;
    if (!st->host || st->tile_tokens < 1) return;
    int n = st->n_tokens;
    int32_t *h = (int32_t *)calloc((size_t)2 * (size_t)(n > 0 ? n : 1), sizeof(int32_t));
    if (!h) return;
    st->n_tiles = cut_tiles(st->host, st->tile_tokens, h, h + n);
    /* tile_token follows tile_seq in the step's device buffer, n entries each, as h holds them */
    cuda_check(im, cudaMemcpyAsync(st->tile_seq, h, (size_t)2 * (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice,
                                   im->stream), "tile upload");
    cuda_check(im, cudaStreamSynchronize(im->stream), "tile upload");
    cuda_queued_copy(im);
    free(h);
}

static void cu_begin_step(ts_backend *be, const ts_step *step) {
    cuda_impl *im = cuda_of(be);
    cuda_settle_due(im);
    im->qact.src = NULL;
    im->pdl_now = im->pdl && step->n_tokens <= DP4A_MAX_TOKENS;
    cuda_step *st = &im->step;
    int n = step->n_tokens, s = step->n_seqs, blocks = 0;
    for (int i = 0; i < s; i++) blocks += step->seqs[i].n_blocks;
    int need_tok = n, need_seq = s + 1, need_blk = blocks + 1;
    /* one device buffer, carved up: 4 token arrays, 4 sequence arrays, the block table, then the
     * attention work lists (decode tokens, tile sequences, tile first tokens) */
    size_t total = (size_t)4 * need_tok + (size_t)4 * need_seq + need_blk + (size_t)(step->n_logits + 1) + 3u * (size_t)n + 3;
    static __thread int32_t *staging = NULL;
    static __thread size_t staging_cap = 0;
    if (total > staging_cap) {
        free(staging);
        staging_cap = total * 2;
        staging = (int32_t *)malloc(staging_cap * 4);
    }
    int cap = st->capacity_tokens;
    if ((size_t)cap < total) {
        if (grow_i32(im, &st->tokens, &cap, (int)total)) return;
        st->capacity_tokens = cap;
    }
    int32_t *h = staging;
    int32_t *h_tokens = h, *h_pos = h + n, *h_tseq = h + 2 * n, *h_rows = h + 3 * n;
    int32_t *h_first = h + 4 * n, *h_len = h_first + need_seq, *h_start = h_len + need_seq,
            *h_boff = h_start + need_seq, *h_blocks = h_boff + need_seq;
    memcpy(h_tokens, step->tokens, (size_t)n * 4);
    memcpy(h_pos, step->positions, (size_t)n * 4);
    int off = 0, max_pos = 0;
    for (int i = 0; i < s; i++) {
        const ts_seq_view *v = &step->seqs[i];
        h_first[i] = v->first_token;
        h_len[i] = v->n_tokens;
        h_start[i] = v->start_pos;
        h_boff[i] = off;
        memcpy(h_blocks + off, v->blocks, (size_t)v->n_blocks * 4);
        off += v->n_blocks;
        for (int t = 0; t < v->n_tokens; t++) h_tseq[v->first_token + t] = i;
        if (v->start_pos + v->n_tokens > max_pos) max_pos = v->start_pos + v->n_tokens;
    }
    for (int i = 0; i < step->n_logits; i++) h_rows[i] = step->logit_rows[i];
    /* attention work lists; tiles hold TILE_ROWS query rows (tokens x query heads per KV head) */
    int32_t *h_dec = h_blocks + off, *h_tile_seq = h_dec + n, *h_ttok = h_tile_seq + n;
    int n_dec = 0;
    for (int i = 0; i < s; i++)
        if (step->seqs[i].n_tokens == 1) h_dec[n_dec++] = step->seqs[i].first_token;
    int n_tiles = cut_tiles(step, im->step.tile_tokens > 0 ? im->step.tile_tokens : 16, h_tile_seq, h_ttok);
    cuda_check(im, cudaMemcpyAsync(st->tokens, staging, total * 4, cudaMemcpyHostToDevice, im->stream), "step upload");
    cuda_check(im, cudaStreamSynchronize(im->stream), "step upload");
    int32_t *d = st->tokens;
    st->positions = d + n;
    st->token_seq = d + 2 * n;
    st->logit_rows = d + 3 * n;
    st->seq_first = d + 4 * n;
    st->seq_len = st->seq_first + need_seq;
    st->seq_start = st->seq_len + need_seq;
    st->seq_block_off = st->seq_start + need_seq;
    st->block_table = st->seq_block_off + need_seq;
    st->decode_tokens = st->block_table + off;
    st->tile_seq = st->decode_tokens + n;
    st->tile_token = st->tile_seq + n;
    st->n_decode = n_dec;
    st->n_tiles = n_tiles;
    st->n_tokens = n;
    st->n_seqs = s;
    st->n_logits = step->n_logits;
    st->max_pos = max_pos;
    st->host = step;
    graph_begin(im, step);
}

const int32_t *cuda_step_array(ts_backend *be, const int32_t *host, int n) {
    cuda_impl *im = cuda_of(be);
    cuda_step *st = &im->step;
    if (st->host) {
        /* pointers anywhere inside the step's arrays map to the same offsets of the device copies */
        if (host >= st->host->tokens && host + n <= st->host->tokens + st->n_tokens)
            return st->tokens + (host - st->host->tokens);
        if (host >= st->host->positions && host + n <= st->host->positions + st->n_tokens)
            return st->positions + (host - st->host->positions);
        if (st->host->logit_rows && host >= st->host->logit_rows && host + n <= st->host->logit_rows + st->n_logits)
            return st->logit_rows + (host - st->host->logit_rows);
    }
    cuda_graph_abort(im, "a step used host data outside its metadata");
    /* not part of the step: upload into the activation scratch tail */
    static __thread int32_t *tmp = NULL;
    static __thread int tmp_cap = 0;
    if (grow_i32(im, &tmp, &tmp_cap, n)) return NULL;
    cudaMemcpyAsync(tmp, host, (size_t)n * 4, cudaMemcpyHostToDevice, im->stream);
    cudaStreamSynchronize(im->stream);
    return tmp;
}

static void cu_sync(ts_backend *be) {
    cuda_impl *im = cuda_of(be);
    graph_end(im);
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
    im->step.host = NULL;
}

static void cu_stats(ts_backend *be, ts_backend_stats *out) {
    cuda_impl *im = cuda_of(be);
    out->weight_bytes = im->weight_bytes;
    out->buffer_bytes = im->buffer_bytes;
}

static void cu_destroy(ts_backend *be) {
    cuda_impl *im = cuda_of(be);
    cudaStreamSynchronize(im->stream);
    if (im->gemm_scratch) cudaFree(im->gemm_scratch);
    if (im->act_scratch) cudaFree(im->act_scratch);
    if (im->xq_scratch) cudaFree(im->xq_scratch);
    if (im->argmax_scratch) cudaFree(im->argmax_scratch);
    if (im->head_argmax.slots) cudaFree(im->head_argmax.slots);
    if (im->draw_scratch) cudaFree(im->draw_scratch);
    if (im->attn_scratch) cudaFree(im->attn_scratch);
    if (im->attn_done) cudaFree(im->attn_done);
    if (im->batch16_act) cudaFree(im->batch16_act);
    if (im->swiglu_act) cudaFree(im->swiglu_act);
    if (im->batch16_part) cudaFree(im->batch16_part);
    if (im->batch16_done) cudaFree(im->batch16_done);
    if (im->norm_xq) cudaFree(im->norm_xq);
    if (im->norm_partials) cudaFree(im->norm_partials);
    if (im->norm_dense) cudaFree(im->norm_dense);
    if (im->inv_freq) cudaFree(im->inv_freq);
    if (im->step.tokens) cudaFree(im->step.tokens);
    for (int i = 0; i < im->n_graphs; i++)
        if (im->graphs[i].exec) cudaGraphExecDestroy(im->graphs[i].exec);
    if (im->blas_workspace) cudaFree(im->blas_workspace);
    cuda_stage_destroy(im);
    cublasDestroy(im->blas);
    cudaStreamDestroy(im->stream);
    free(im);
    free(be);
}

static float median5(float *t) {
    for (int i = 0; i < 5; i++)
        for (int k = i + 1; k < 5; k++)
            if (t[k] < t[i]) {
                float x = t[i];
                t[i] = t[k];
                t[k] = x;
            }
    return t[2];
}

__global__ void fill_random_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16((float)(h & 0xffff) / 65536.0f - 0.5f);
}

/* A 2 GiB device-to-device copy (bytes read plus written) and an 8192^3 bf16 cuBLAS product on
 * random data, each the median of 5 timed runs after a warm-up. */
static void cu_roofline(ts_backend *be, ts_roofline *out) {
    cuda_impl *im = cuda_of(be);
    memset(out, 0, sizeof *out);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    size_t bytes = (size_t)1 << 31;
    void *src = NULL, *dst = NULL;
    float t[5];
    if (cudaMalloc(&src, bytes) == cudaSuccess && cudaMalloc(&dst, bytes) == cudaSuccess) {
        cudaMemsetAsync(src, 1, bytes, im->stream);
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream);
        for (int r = 0; r < 5; r++) {
            cudaEventRecord(a, im->stream);
            cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream);
            cudaEventRecord(b, im->stream);
            cudaEventSynchronize(b);
            cudaEventElapsedTime(&t[r], a, b);
        }
        out->read_gbps = 2.0 * (double)bytes / (median5(t) * 1e-3) / 1e9;
    }
    if (src) cudaFree(src);
    if (dst) cudaFree(dst);
    const int n = 8192;
    __nv_bfloat16 *A = NULL, *B = NULL;
    float *C = NULL;
    if (cudaMalloc((void **)&A, (size_t)n * n * 2) == cudaSuccess && cudaMalloc((void **)&B, (size_t)n * n * 2) == cudaSuccess &&
        cudaMalloc((void **)&C, (size_t)n * n * 4) == cudaSuccess) {
        size_t cnt = (size_t)n * n;
        fill_random_bf16<<<(unsigned)((cnt + 255) / 256), 256, 0, im->stream>>>(A, cnt, 1u);
        fill_random_bf16<<<(unsigned)((cnt + 255) / 256), 256, 0, im->stream>>>(B, cnt, 7u);
        const float alpha = 1.0f, beta = 0.0f;
        for (int r = -1; r < 5; r++) {
            cudaEventRecord(a, im->stream);
            cublasGemmEx(im->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n, &beta,
                         C, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(b, im->stream);
            cudaEventSynchronize(b);
            if (r >= 0) cudaEventElapsedTime(&t[r], a, b);
        }
        out->matmul_tflops = 2.0 * n * (double)n * n / (median5(t) * 1e-3) / 1e12;
    }
    if (A) cudaFree(A);
    if (B) cudaFree(B);
    if (C) cudaFree(C);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    snprintf(out->method, sizeof out->method,
             "2 GiB device-to-device copy (read + write) and 8192^3 bf16 cuBLAS product, medians of 5");
}

static const ts_backend_ops g_cuda_ops = {
    cu_alloc,          cu_free,         cu_to_host,        cu_from_host,   cuda_prepare_weight, cuda_release_weight,
    cu_kv_create,      cu_kv_destroy,   cu_begin_step,     cuda_embed,     cuda_embed_add,      cuda_matmul,
    cuda_rmsnorm,      cuda_layernorm,  cuda_rope,         cuda_attention, cuda_silu_mul,       cuda_gelu,
    cuda_add,          cuda_gather_rows, cuda_moe,         cu_sync,        cu_stats,            cu_destroy,
    cu_roofline,       cuda_argmax_rows, cuda_matmul_many, cuda_add_rmsnorm, cuda_qk_norm_rope,
    cuda_sample_rows,  cuda_matmul_add_rmsnorm, cuda_rope_attention, cuda_gate_up_silu, cuda_stage_products,
    cuda_matmul_concat, cuda_matmul_argmax, cuda_embed_rmsnorm,
};

/* ---- optional per-operation timing (TESSERA_CUDA_PROFILE=1): every operation is synchronised and
 * timed with the host clock; totals are logged when the backend is destroyed. Slows everything. ---- */
enum { P_EMBED, P_MATMUL, P_RMSNORM, P_LAYERNORM, P_ROPE, P_ATTN, P_SILU, P_GELU, P_ADD, P_GATHER, P_MOE, P_STEP, P_TOHOST, P_N };
static const char *g_prof_names[P_N] = {"embed", "matmul", "rmsnorm", "layernorm", "rope", "attention", "silu_mul",
                                        "gelu", "add", "gather", "moe", "begin_step", "to_host"};
static double g_prof_s[P_N];
static long g_prof_n[P_N];
#include <time.h>
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#define PROF(id, call)                                   \
    do {                                                 \
        cudaStreamSynchronize(cuda_of(be)->stream);      \
        double t0_ = now_s();                            \
        call;                                            \
        cudaStreamSynchronize(cuda_of(be)->stream);      \
        g_prof_s[id] += now_s() - t0_;                   \
        g_prof_n[id]++;                                  \
    } while (0)
static void pf_embed(ts_backend *be, const ts_weight *t, const int32_t *ids, int n, float *o) { PROF(P_EMBED, cuda_embed(be, t, ids, n, o)); }
static void pf_embed_add(ts_backend *be, const ts_weight *t, const int32_t *ids, int n, float *o) { PROF(P_EMBED, cuda_embed_add(be, t, ids, n, o)); }
static void pf_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *b) { PROF(P_MATMUL, cuda_matmul(be, w, x, n, y, b)); }
static void pf_rmsnorm(ts_backend *be, const float *x, const float *w, int r, int d, float e, float *o) { PROF(P_RMSNORM, cuda_rmsnorm(be, x, w, r, d, e, o)); }
static void pf_layernorm(ts_backend *be, const float *x, const float *w, const float *b, int r, int d, float e, float *o) { PROF(P_LAYERNORM, cuda_layernorm(be, x, w, b, r, d, e, o)); }
static void pf_rope(ts_backend *be, float *x, int n, int h, int st, const int32_t *p, const ts_rope *r) { PROF(P_ROPE, cuda_rope(be, x, n, h, st, p, r)); }
static void pf_attention(ts_backend *be, ts_kv_store *kv, int l, const ts_step *s, const float *q, int qs, const float *k,
                         const float *v, int ks, int nh, float sc, float *o) { PROF(P_ATTN, cuda_attention(be, kv, l, s, q, qs, k, v, ks, nh, sc, o)); }
static void pf_silu(ts_backend *be, const float *g, const float *u, int r, int i, int st, float *o) { PROF(P_SILU, cuda_silu_mul(be, g, u, r, i, st, o)); }
static void pf_gelu(ts_backend *be, float *x, size_t c, int t) { PROF(P_GELU, cuda_gelu(be, x, c, t)); }
static void pf_add(ts_backend *be, float *x, const float *y, size_t c) { PROF(P_ADD, cuda_add(be, x, y, c)); }
static void pf_gather(ts_backend *be, const float *s, const int32_t *r, int n, int d, float *o) { PROF(P_GATHER, cuda_gather_rows(be, s, r, n, d, o)); }
static void pf_moe(ts_backend *be, const ts_moe *m, const float *x, int n, float *o) { PROF(P_MOE, cuda_moe(be, m, x, n, o)); }
static void pf_step(ts_backend *be, const ts_step *s) { PROF(P_STEP, cu_begin_step(be, s)); }
static void pf_to_host(ts_backend *be, void *d, const void *s, size_t b) { PROF(P_TOHOST, cu_to_host(be, d, s, b)); }
static void pf_argmax(ts_backend *be, const float *x, int r, int d, int32_t *o) { PROF(P_TOHOST, cuda_argmax_rows(be, x, r, d, o)); }
static void pf_matmul_many(ts_backend *be, int c, const ts_weight *const *w, const float *x, int n, float *const *y,
                           const float *const *b) { PROF(P_MATMUL, cuda_matmul_many(be, c, w, x, n, y, b)); }
static void pf_add_rmsnorm(ts_backend *be, float *x, const float *y, const float *w, int r, int d, float e, float *o) {
    PROF(P_RMSNORM, cuda_add_rmsnorm(be, x, y, w, r, d, e, o));
}
static void pf_qk_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float e,
                            const int32_t *p, const ts_rope *r) { PROF(P_ROPE, cuda_qk_norm_rope(be, q, k, n, e, p, r)); }
static void pf_destroy(ts_backend *be) {
    for (int i = 0; i < P_N; i++)
        if (g_prof_n[i])
            cuda_log(cuda_of(be), 2, "cuda profile: %-10s %8ld calls %10.3f ms total %8.1f us each", g_prof_names[i],
                     g_prof_n[i], g_prof_s[i] * 1e3, g_prof_s[i] * 1e6 / (double)g_prof_n[i]);
    cu_destroy(be);
}

static const ts_backend_ops g_cuda_prof_ops = {
    cu_alloc,     cu_free,      pf_to_host, cu_from_host, cuda_prepare_weight, cuda_release_weight,
    cu_kv_create, cu_kv_destroy, pf_step,   pf_embed,     pf_embed_add,        pf_matmul,
    pf_rmsnorm,   pf_layernorm, pf_rope,    pf_attention, pf_silu,             pf_gelu,
    pf_add,       pf_gather,    pf_moe,     cu_sync,      cu_stats,            pf_destroy,
    cu_roofline,  pf_argmax,    pf_matmul_many, pf_add_rmsnorm, pf_qk_norm_rope, cuda_sample_rows,
    NULL, NULL, NULL, /* the fused output projection, rope_attention and gate_up_silu: profiled as their unfused operations */
    NULL,             /* no staging: products dequantize where they are timed */
    NULL,             /* q/k/v products one by one, each timed */
    NULL,             /* the greedy head as its product and the argmax launch, each timed */
    NULL,             /* the embedding and the first norm, each timed */
};

__global__ void code_arch_kernel(int *out) {
#ifdef __CUDA_ARCH__
    *out = __CUDA_ARCH__;
#endif
}

/* The architecture the module's device code was compiled for, as it runs on this GPU (machine code for
 * it, or PTX of an older one compiled on load): kernels compiled below sm_80 / sm_90 lack the tensor-core
 * and dependent-launch paths, so the host must not choose them. 0 when it cannot be found. */
static int running_code_arch(cuda_impl *im) {
    int *d = NULL, arch = 0;
    if (cudaMalloc(&d, sizeof(int)) != cudaSuccess) return 0;
    cudaMemset(d, 0, sizeof(int));
    code_arch_kernel<<<1, 1, 0, im->stream>>>(d);
    cudaMemcpyAsync(&arch, d, sizeof(int), cudaMemcpyDeviceToHost, im->stream);
    cudaStreamSynchronize(im->stream);
    cudaFree(d);
    return arch;
}

extern "C" __attribute__((visibility("default"))) ts_backend *tessera_cuda_create(const ts_cuda_options *opt,
                                                                                  ts_error *err) {
    if (!opt || opt->abi != TS_CUDA_MODULE_ABI) {
        snprintf(err->message, sizeof err->message, "cuda module: interface version mismatch (expected %d)",
                 TS_CUDA_MODULE_ABI);
        return NULL;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(err->message, sizeof err->message, "no usable CUDA device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return NULL;
    }
    if (opt->device < 0 || opt->device >= count) {
        snprintf(err->message, sizeof err->message, "CUDA device %d requested; %d present", opt->device, count);
        return NULL;
    }
    cuda_impl *im = (cuda_impl *)calloc(1, sizeof *im);
    im->qact_nibbles = 1; /* 4-bit layouts are the common case */
    ts_backend *be = (ts_backend *)calloc(1, sizeof *be);
    im->opt = *opt;
    im->device = opt->device;
    cudaSetDevice(opt->device);
    cudaGetDeviceProperties(&im->prop, opt->device);
    if (cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&im->blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err->message, sizeof err->message, "cannot create a CUDA stream or cuBLAS handle on %s", im->prop.name);
        free(im);
        free(be);
        return NULL;
    }
    cublasSetStream(im->blas, im->stream);
    /* a fixed workspace keeps cuBLAS from allocating inside captured graphs */
    if (cudaMalloc(&im->blas_workspace, 32u << 20) == cudaSuccess) cublasSetWorkspace(im->blas, im->blas_workspace, 32u << 20);
    if (switched_off("TESSERA_CUDA_GRAPHS")) im->opt.use_graphs = 0;
    /* FP32 means float32 arithmetic: no TF32 shortcuts in cuBLAS */
    cublasSetMathMode(im->blas, opt->precision == TS_PRECISION_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);
    im->code_arch = running_code_arch(im);
    if (im->code_arch < 10 * im->prop.major && im->code_arch < 900)
        cuda_log(im, 1, "cuda: the module's device code is for sm_%d on an sm_%d%d GPU; tensor-core and dependent-launch "
                 "kernels are off (build with -DCMAKE_CUDA_ARCHITECTURES=%d%d)", im->code_arch / 10, im->prop.major,
                 im->prop.minor, im->prop.major, im->prop.minor);
    im->pdl = im->code_arch >= 900 && !switched_off("TESSERA_CUDA_PDL");
    im->pdl_now = im->pdl;
    const char *mma_env = getenv("TESSERA_CUDA_MMA_MIN_TOKENS");
    im->mma_min_tokens = mma_env && *mma_env ? atoi(mma_env) : 9;
    if (im->mma_min_tokens < 1) im->mma_min_tokens = 1;
    im->batch16_off = switched_off("TESSERA_CUDA_BATCH16");
    const char *b16_min_env = getenv("TESSERA_CUDA_BATCH16_MIN_TOKENS");
    im->batch16_min_tokens = b16_min_env && *b16_min_env ? atoi(b16_min_env) : 6;
    if (im->batch16_min_tokens < 1) im->batch16_min_tokens = 1;
    const char *b16_parts_env = getenv("TESSERA_CUDA_BW_KPARTS");
    im->batch16_kparts = b16_parts_env && *b16_parts_env ? atoi(b16_parts_env) : 0;
    const int clusters = im->code_arch >= 900 && im->prop.major >= 9; /* thread block clusters: sm_90 */
    im->batch16_cluster = clusters && !switched_off("TESSERA_CUDA_BW_CLUSTER");
    im->gqa_off = switched_off("TESSERA_CUDA_GQA");
    im->att_mma_off = switched_off("TESSERA_CUDA_ATT_MMA");
    const char *gemv_env = getenv("TESSERA_CUDA_GEMV");
    im->float_gemv = gemv_env && strcmp(gemv_env, "float") == 0;
    im->fuse_norm_off = switched_off("TESSERA_CUDA_FUSE_NORM");
    im->fuse_silu_off = switched_off("TESSERA_CUDA_FUSE_SILU");
    /* measured on an H200 (8B Q4_0, docs/cuda-notes.md v10): with successors launched early, fusing
     * steps of two tokens gains 7.6 % (0.6B 8.3 %), at four it loses 7 % (the producer's 32-row blocks
     * hold fewer loads in flight than the plain kernel's when each weight serves four tokens) */
    const char *fuse_max_env = getenv("TESSERA_CUDA_FUSE_MAX_TOKENS");
    im->fuse_max_tokens = fuse_max_env && *fuse_max_env ? atoi(fuse_max_env) : 2;
    if (im->fuse_max_tokens < 1) im->fuse_max_tokens = 1;
    if (im->fuse_max_tokens > 8) im->fuse_max_tokens = 8;
    const char *fill_env = getenv("TESSERA_CUDA_ATT_FILL");
    im->att_fill_positions = fill_env && atoi(fill_env) > 0 ? atoi(fill_env) : ATT_PASS_POSITIONS;
    const char *split_env = getenv("TESSERA_CUDA_ATT_SPLIT_WORK");
    im->att_split_work = split_env && atoi(split_env) > 0 ? atoi(split_env) : 0;
    const char *cluster_env = getenv("TESSERA_CUDA_ATT_CLUSTER");
    im->att_cluster = clusters ? (cluster_env && *cluster_env ? atoi(cluster_env) : 1) : 0;
    im->stage_off = switched_off("TESSERA_CUDA_STAGE");
    im->concat_off = switched_off("TESSERA_CUDA_CONCAT");
    im->swiglu16_off = switched_off("TESSERA_CUDA_SWIGLU16");
    im->head_argmax_off = switched_off("TESSERA_CUDA_HEAD_ARGMAX");
    im->embed_norm_off = switched_off("TESSERA_CUDA_EMBED_NORM");
    /* the greedy head's slots, best key and count (argmax_sink), zero from here on between launches */
    void *sink = NULL;
    const size_t sink_bytes = (ARGMAX_SLOTS + 1) * sizeof(unsigned long long) + sizeof(unsigned);
    if (cudaMalloc(&sink, sink_bytes) == cudaSuccess && cudaMemsetAsync(sink, 0, sink_bytes, im->stream) == cudaSuccess) {
        cuda_queued_copy(im);
        im->head_argmax.slots = (unsigned long long *)sink;
        im->head_argmax.best = im->head_argmax.slots + ARGMAX_SLOTS;
        im->head_argmax.count = (unsigned *)(im->head_argmax.best + 1);
    } else {
        if (sink) cudaFree(sink);
        (void)cudaGetLastError(); /* without it the head's product and the argmax run apart */
    }
    const char *prof = getenv("TESSERA_CUDA_PROFILE");
    be->ops = prof && *prof && *prof != '0' ? &g_cuda_prof_ops : &g_cuda_ops;
    if (be->ops == &g_cuda_prof_ops) im->opt.use_graphs = 0; /* its synchronisations cannot be captured */
    be->impl = im;
    snprintf(be->name, sizeof be->name, "cuda");
    static const char *prec[] = {"fp32", "bf16", "fp16"};
    snprintf(be->description, sizeof be->description, "cuda %s (sm_%d%d, %d SMs, %.0f GiB, %s%s)", im->prop.name,
             im->prop.major, im->prop.minor, im->prop.multiProcessorCount,
             (double)im->prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), prec[opt->precision],
             opt->unified_memory ? ", weights in mapped host memory" : "");
    return be;
}
