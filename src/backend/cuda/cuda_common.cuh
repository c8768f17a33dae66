/* Shared state and helpers of the CUDA backend: the backend's private struct, device copies of the
 * current step, prepared weights, error checks that turn CUDA failures into logged messages. */
#ifndef TS_BACKEND_CUDA_COMMON_CUH
#define TS_BACKEND_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda_module.h"

/* A weight as the GPU keeps it. Q4_0, Q4_1 and Q8_0 are repacked into quants in natural element order
 * (4-bit: byte k holds elements 2k and 2k + 1) with scales (and minimums) per 32 elements, so
 * that rows start aligned and lanes can read neighbouring elements; Q4_K and IQ4_XS the same way with their
 * super-block's fp16 factors once per 8 groups and each group's codes for them; Q5_K and Q6_K keep GGUF's block
 * layout; floats stay as they are. dtype is the layout the kernels see. */
struct cuda_weight {
    ts_dtype dtype;
    int64_t rows, cols;
    uint8_t *q;      /* quants or raw blocks or float data */
    void *scale;     /* [rows][cols / 32]: __half for Q4_0, Q8_0 and IQ4_NL, __half2 (d, m) for Q4_1 (their GGUF
                        factors, exactly); per 8 groups for Q4_K and IQ4_XS (below); see group_scale_min */
    int8_t *sub_scale; /* IQ4_XS: [rows][cols / 32] signed 6-bit sub-scales; scale then holds one __half d
                          per 8 groups (the file's super-block), so the GPU keeps its 4.25 bits + 1/4 */
    uint8_t *k_codes;  /* Q4_K: [rows][cols / 32][2] its 6-bit scale and minimum codes; scale then holds a
                          __half2 (d, dmin) per 8 groups: 4.625 bits a weight */
    size_t q_row_bytes;
    size_t bytes;    /* device (or mapped host) bytes held */
    int host_mapped; /* q/scale live in pinned host memory (unified memory mode) */
    void *dense;     /* optional bf16/fp16 copy for cuBLAS (dense_cache) */
    int gpu_supported;
};

/* Whether a layout's 4-bit codes index IQ4_NL's grid (IQ4_NL, and IQ4_XS repacked to the same codes). */
__host__ __device__ constexpr bool grid4(int dt) { return dt == TS_DTYPE_IQ4_NL || dt == TS_DTYPE_IQ4_XS; }

/* The scale of group si of a repacked Q4_0, Q8_0, IQ4_NL or IQ4_XS weight (the types without a minimum; those
 * with one take group_scale_min). Half scales keep Q4_0 at 4.5 bits a weight on the GPU as in the file (float
 * scales made decode read 11 % more bytes). */
template <int DT>
__device__ __forceinline__ float group_scale(const cuda_weight &w, size_t si) {
    if (DT == TS_DTYPE_IQ4_XS) return __half2float(__ldg((const __half *)w.scale + (si >> 3))) * (float)__ldg(w.sub_scale + si);
    return __half2float(__ldg((const __half *)w.scale + si));
}

/* Layouts whose groups have a minimum term: value = scale * code + minimum. */
__host__ __device__ constexpr bool has_min(int dt) { return dt == TS_DTYPE_Q4_1 || dt == TS_DTYPE_Q4_K; }

/* The scale and minimum term of group si: Q4_1's fp16 pair in one load; Q4_K's pair of factors (d, dmin)
 * and pair of codes in one load each, formed into d * sc and -(dmin * m), exact in float as the CPU decodes
 * them; Q4_0's minimum is -8 d, the others have none. */
template <int DT>
__device__ __forceinline__ void group_scale_min(const cuda_weight &w, size_t si, float *d, float *m) {
    if (DT == TS_DTYPE_Q4_1) {
        const float2 f = __half22float2(__ldg((const __half2 *)w.scale + si));
        *d = f.x;
        *m = f.y;
        return;
    }
    if (DT == TS_DTYPE_Q4_K) {
        const float2 f = __half22float2(__ldg((const __half2 *)w.scale + (si >> 3)));
        const unsigned c = __ldg((const unsigned short *)w.k_codes + si); /* low byte the scale's code */
        *d = f.x * (float)(c & 0xffu);
        *m = -(f.y * (float)(c >> 8));
        return;
    }
    *d = group_scale<DT>(w, si);
    *m = DT == TS_DTYPE_Q4_0 ? -8.0f * *d : 0.0f;
}

struct cuda_step {
    int n_tokens, n_seqs, n_logits;
    int32_t *tokens, *positions, *token_seq, *logit_rows; /* device */
    int32_t *seq_first, *seq_len, *seq_start, *seq_block_off; /* device, per sequence */
    int32_t *block_table; /* device, all sequences' blocks concatenated */
    int max_pos;          /* largest position + 1 in the step */
    /* attention work lists: decode tokens (sequences with one token in the step) go to the split-K
     * kernel; prefill sequences are cut into query tiles for the tiled kernel */
    int32_t *decode_tokens; /* device, n_decode entries */
    int32_t *tile_seq, *tile_token; /* device, n_tiles entries: sequence index, first token of the tile */
    int n_decode, n_tiles, tile_tokens; /* tile_tokens: query tokens per tile for this model's head grouping */
    int tile_group;                     /* query heads per KV head the tiles were cut for */
    int capacity_tokens, capacity_seqs, capacity_blocks;
    const ts_step *host;  /* the step the device copies describe */
};

/* Activations already quantized to int8 groups by the kernel that produced them (RMSNorm, SiLU-gate,
 * attention), for the integer matrix-vector product that reads them next: the product skips its own
 * quantization launch when x, the row count and the width match. Every other operation forgets it. */
struct cuda_qact {
    const float *src; /* the float activations quantized; NULL: nothing pending */
    int rows;
    int64_t cols;
    int nibbles;      /* element order for 4-bit layouts (see qact_store_group) */
    int8_t *xq;       /* [rows][cols] */
    float2 *xs;       /* [rows][cols / 32]: group scale, sum of the group's int8 values */
    void *buffer;     /* the scratch buffer they live in (stale once it is replaced) */
    /* Wider products (cuBLAS) read bf16/fp16 activations instead, and the tensor-core batch kernel reads
     * them in its fragment order: the producer then writes that copy (see qact_store_dense). */
    void *dense;      /* elements of dense_kind (1: bf16, 2: fp16, 3/4: the same in fragment order); NULL: int8 form */
    int dense_kind;
    /* src itself was never written, only dense (the SwiGLU output, which only the next product reads: see
     * ts_backend_ops.gate_up_silu); a reader of the floats gets them from dense (cuda_qact_materialize) */
    int src_unwritten;
};

/* A registration of 16-bit activations of src (rows x cols, kind as in qact_store_dense) held in buf. */
static inline cuda_qact cuda_qact_dense(const float *src, int rows, int64_t cols, void *buf, int kind) {
    cuda_qact q;
    memset(&q, 0, sizeof q);
    q.src = src;
    q.rows = rows;
    q.cols = cols;
    q.dense = buf;
    q.dense_kind = kind;
    q.buffer = buf;
    return q;
}

/* An output projection fused with the residual add and the next RMSNorm (cuda_matmul_add_rmsnorm)
 * cannot write the norm's output itself: 1/rms needs the whole residual row, which is spread over all
 * of its blocks. Each block instead adds its 32 rows to the residual, writes their sum of squares and
 * the int8 groups of weight * residual, which is the norm's output up to the factor 1/rms shared by the
 * whole row (int8 groups scale with it). The product that reads the output next applies 1/rms to its
 * results and writes the float output as a side job; any other operation first runs the norm
 * (cuda_settle_norm). So a due norm lives from the projection to the next operation, no longer. */
struct cuda_norm_due {
    float *out;           /* NULL: nothing is due */
    float *x;             /* the residual, already updated */
    const float *weight;  /* the norm's */
    float eps;
    int rows, dim;
    int nibbles;          /* element order of xq (as the int8 form of cuda_qact) */
    int8_t *xq;           /* [rows][dim] groups of weight * x (the integer kernel's producer), or NULL */
    float2 *xs;
    void *dense;          /* or weight * x in 16 bits, the batch kernel's fragment order (cuda_batch16.cu) */
    int dense_kind;       /* as cuda_qact's */
    const float *partials; /* [rows][dim / 32] */
};

/* A weight dequantized ahead of its product (cuda_stage.cu): ready when the second stream has written
 * it, free again once the product that read it has run. */
#define CUDA_STAGE_SLOTS 3
struct cuda_stage_slot {
    void *buf;
    size_t bytes;
    const struct cuda_weight *w; /* the weight it holds, or NULL */
    cudaEvent_t ready, done;
};

/* A (value, index) pair as one integer whose order is the pairs' order: the float's bits made monotonic in
 * the high half, the complemented index (lower wins) in the low half. Zero is below every real pair, so
 * keys start at zero and merge with atomicMax. */
__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
    unsigned u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned)~(unsigned)i;
}
/* The index an argmax_key holds (0 for the zero key: no pair merged). */
__host__ __device__ __forceinline__ int32_t argmax_key_index(unsigned long long key) {
    return key ? (int32_t)~(uint32_t)key : 0;
}

/* The greedy token of a one-token head product, chosen by the product's own blocks (argmax_fold in
 * cuda_matmul.cu): each block merges its best key into one of ARGMAX_SLOTS slots, so that thousands of
 * blocks do not queue on one address, and the block that completes the count folds the slots into best
 * and zeroes them and the count. Nothing needs a reset between launches, so a recorded graph replays as is. */
#define ARGMAX_SLOTS 128
struct argmax_sink {
    unsigned long long *slots; /* [ARGMAX_SLOTS], zero between launches */
    unsigned long long *best;  /* the last launch's key */
    unsigned *count;           /* blocks finished, zero between launches */
};

/* A captured decode step, replayed whenever a step of the same shape comes again. */
struct cuda_graph_entry {
    int n_tokens, n_seqs, n_logits, splits;
    int seen;
    int argmax_fused; /* its head product picks the greedy token (cuda_matmul_argmax) */
    unsigned long generation; /* mem_generation when captured */
    cudaGraphExec_t exec;
};
#define CUDA_GRAPH_CACHE 32

struct cuda_impl {
    ts_cuda_options opt;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaDeviceProp prop;
    cuda_step step;
    /* scratch for the dequantized weights of a GEMM and for bf16 activations */
    void *gemm_scratch;
    size_t gemm_scratch_bytes;
    void *act_scratch;
    size_t act_scratch_bytes;
    void *xq_scratch; /* int8 activations and their group scales for the integer matrix-vector kernel */
    size_t xq_scratch_bytes;
    cuda_qact qact;
    int qact_nibbles; /* element order the last integer product used: what producers write */
    int qact_frag;    /* the last product of a batch was the 16-bit tensor-core kernel: producers write its order */
    int code_arch;    /* __CUDA_ARCH__ of the device code running (running_code_arch) */
    int pdl;          /* launch with programmatic dependencies (see cuda_launch) */
    int mma_min_tokens; /* products of at least this many tokens use the tensor-core 4-bit kernel */
    int pdl_now;      /* ... in this step: decode-sized steps only (prefill measured slower with it) */
    int pdl_fence;    /* a copy or memset was queued since the last launch: the next kernel waits for it fully */
    void *argmax_scratch;
    size_t argmax_scratch_bytes;
    int argmax_half; /* the half of argmax_scratch the next argmax launch merges into */
    argmax_sink head_argmax; /* where a greedy step's head product leaves its token (cuda_matmul_argmax) */
    int head_argmax_want;    /* the product being launched may pick the token ... */
    int head_argmax_used;    /* ... and did */
    int head_argmax_off;     /* TESSERA_CUDA_HEAD_ARGMAX=0: the product, then the argmax launch */
    int embed_norm_off;      /* TESSERA_CUDA_EMBED_NORM=0: the embedding, then the first norm's launch */
    void *draw_scratch; /* the step's draws and chosen tokens (cuda_sample_rows) */
    size_t draw_scratch_bytes;
    int float_gemv;   /* TESSERA_CUDA_GEMV=float: decode products in float arithmetic even under bf16/fp16 */
    void *attn_scratch; /* split-K partial results */
    size_t attn_scratch_bytes;
    void *attn_done;    /* per (token, head) count of finished splits; the last one merges them */
    size_t attn_done_bytes;
    /* the bf16/fp16 tensor-core batch kernel (cuda_batch16.cu): fragment-ordered activations, partial
     * sums of K parts, per row block count of finished parts */
    void *batch16_act, *batch16_part, *batch16_done;
    void *swiglu_act;       /* the paired gate/up launch's output in the fragment order (cuda_batch16_swiglu) */
    size_t swiglu_act_bytes;
    int fuse_silu_off;      /* TESSERA_CUDA_FUSE_SILU=0: gate/up products and silu_mul apart */
    size_t batch16_act_bytes, batch16_part_bytes, batch16_done_bytes;
    int batch16_off; /* TESSERA_CUDA_BATCH16=0 */
    int batch16_kparts; /* TESSERA_CUDA_BW_KPARTS: K parts of every product, 0 = chosen per product */
    int batch16_cluster; /* K parts merge inside a thread block cluster (sm_90; TESSERA_CUDA_BW_CLUSTER=0: through
                            global memory, as on earlier GPUs) */
    int batch16_min_tokens; /* its smallest batch: below, the int8 kernels (measured on an H100, 8B Q4_0: +30 % at 8
                               tokens, +9 % at 6, even at 5, slower below) */
    int gqa_off;     /* TESSERA_CUDA_GQA=0: batches' decode attention per query head (attn_partial) */
    int att_mma_off; /* TESSERA_CUDA_ATT_MMA=0: batches' decode attention on the float cores (attn_decode_gqa) */
    float *inv_freq;          /* device copy of the model's RoPE frequencies */
    const float *inv_freq_host;
    int inv_freq_n;
    size_t weight_bytes, buffer_bytes;
    int warned_fallback[16];
    /* CUDA graphs of decode steps */
    cuda_graph_entry graphs[CUDA_GRAPH_CACHE];
    int n_graphs;
    int graphs_disabled; /* a step needed a host round trip (MoE routing, CPU fallback) */
    int capturing;       /* the current step's operations are being recorded */
    int replaying;       /* the current step is a replay, launched at begin_step: operations are skipped until to_host */
    cuda_graph_entry *current;
    void *blas_workspace;
    /* bumped whenever device memory a graph may reference is freed or moved */
    unsigned long mem_generation;
    void *deferred_free[8]; /* buffers replaced during a capture, freed once it ends */
    int n_deferred;
    char last_error[512];
    cuda_norm_due norm_due; /* a norm output that a fused output projection left to its reader */
    void *norm_xq;          /* that output's int8 form: apart from xq_scratch, which the projection reads */
    size_t norm_xq_bytes;
    void *norm_dense;       /* or its 16-bit form, apart from batch16_act */
    size_t norm_dense_bytes;
    float *norm_partials;   /* its sums of squares, one per 32 rows of the residual and token */
    size_t norm_partials_bytes;
    int fuse_norm_off;      /* TESSERA_CUDA_FUSE_NORM=0: output projections, residual adds and norms apart */
    int att_split_work;     /* tokens x splits at most (TESSERA_CUDA_ATT_SPLIT_WORK; 0: as below) */
    int att_heads;      /* query heads of the last attention launched: the split count's floor (cuda_attention_splits) */
    int att_batch_pairs;    /* tokens x splits of a batch whose attn_decode_mma blocks fill one wave (set with the cache) */
    int att_fill_positions; /* a short context's splits hold this many positions (TESSERA_CUDA_ATT_FILL) */
    int att_cluster; /* decode steps of up to this many tokens merge their attention splits through a
                        cluster's shared memory (sm_90; TESSERA_CUDA_ATT_CLUSTER=N, 0 turns it off) */
    int fuse_max_tokens;    /* steps of at most this many tokens fuse (TESSERA_CUDA_FUSE_MAX_TOKENS, 1-8) */
    /* weights dequantized on a second stream while the attention runs (cuda_stage.cu) */
    cudaStream_t stage_stream;
    cudaEvent_t stage_go;
    struct cuda_stage_slot stage[CUDA_STAGE_SLOTS];
    int stage_next;
    int stage_off; /* TESSERA_CUDA_STAGE=0, or staging failed to get memory or events */
    int concat_off; /* TESSERA_CUDA_CONCAT=0: q/k/v as separate cuBLAS products at prefill sizes */
    int swiglu16_off; /* TESSERA_CUDA_SWIGLU16=0: float32 gate/up products and SiLU output at prefill sizes */
};

/* What cuBLAS multiplies in for prefill-sized products: 0 float32, 1 bf16, 2 fp16. */
static inline int cuda_gemm_kind(const cuda_impl *im, int force_fp32) {
    return im->opt.precision == TS_PRECISION_FP32 || force_fp32 ? 0 : im->opt.precision == TS_PRECISION_BF16 ? 1 : 2;
}

/* Whether cuBLAS reads w as it is stored at that kind (a dense copy, or 16-bit weights under the same
 * precision): nothing to dequantize or stage for it. */
static inline int cuda_gemm_reads_stored(const cuda_weight *w, int kind) {
    return w->dense || (kind == 1 && w->dtype == TS_DTYPE_BF16) || (kind == 2 && w->dtype == TS_DTYPE_F16);
}

struct ts_kv_store {
    ts_kv_layout layout;
    int half; /* 1: __half elements, 0: float */
    void *k, *v;
    size_t layer_elems; /* elements per layer */
};

static inline cuda_impl *cuda_of(ts_backend *be) { return (cuda_impl *)be->impl; }

void cuda_log(cuda_impl *im, int level, const char *fmt, ...);
/* Records and logs a CUDA error; returns nonzero when err != cudaSuccess. */
int cuda_check(cuda_impl *im, cudaError_t err, const char *what);
#define CUDA_CHECK_LAUNCH(im, what) cuda_check((im), cudaGetLastError(), (what))

/* Grows a scratch buffer; returns NULL (logged) on failure. */
void *cuda_scratch(cuda_impl *im, void **buf, size_t *cap, size_t need);
/* Grows a buffer of `count` zeroed counters for kernels whose last block to finish a unit of work (told
 * by an atomic count) completes it and resets its counter. A grown buffer is told by its size, not its
 * address: the allocator may hand back the freed address with garbage in the new tail, and a count that
 * never completes leaves an output unwritten. */
unsigned *cuda_counters(cuda_impl *im, void **buf, size_t *cap, size_t count);

/* Operations implemented in the other .cu files. */
void cuda_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias);
void cuda_matmul_fp32(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias);
int cuda_prepare_weight(ts_backend *be, ts_weight *w, ts_error *err);
void cuda_release_weight(ts_backend *be, ts_weight *w);
void cuda_embed(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, float *out);
void cuda_embed_add(ts_backend *be, const ts_weight *table, const int32_t *ids, int n, float *x);
void cuda_rmsnorm(ts_backend *be, const float *x, const float *w, int rows, int dim, float eps, float *out);
void cuda_layernorm(ts_backend *be, const float *x, const float *w, const float *b, int rows, int dim, float eps,
                    float *out);
void cuda_rope(ts_backend *be, float *x, int n, int heads, int stride, const int32_t *positions, const ts_rope *rope);
void cuda_silu_mul(ts_backend *be, const float *gate, const float *up, int rows, int inner, int in_stride, float *out);
void cuda_gelu(ts_backend *be, float *x, size_t count, int tanh_approx);
void cuda_add(ts_backend *be, float *x, const float *y, size_t count);
void cuda_gather_rows(ts_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);
void cuda_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q, int q_stride,
                    const float *k, const float *v, int kv_stride, int n_heads, float scale, float *out);
void cuda_moe(ts_backend *be, const ts_moe *moe, const float *x, int n, float *out);
/* a = silu(x . gate^T) * (x . up^T); b: scratch for x . up^T (ts_backend_ops.gate_up_silu). */
void cuda_gate_up_silu(ts_backend *be, const ts_weight *gate, const ts_weight *up, const float *x, int n, float *a,
                       float *b);
void cuda_matmul_many(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n, float *const *ys,
                      const float *const *biases);
int cuda_matmul_concat(ts_backend *be, int count, const ts_weight *const *ws, const float *x, int n, float *y,
                       const float *const *biases);
void cuda_add_rmsnorm(ts_backend *be, float *x, const float *y, const float *w, int rows, int dim, float eps,
                      float *out);
void cuda_sample_rows(ts_backend *be, float *x, int rows, int dim, const ts_draw *draws, const ts_penalty *penalties,
                      int n_penalties, int32_t *out_host);
void cuda_qk_norm_rope(ts_backend *be, const ts_rope_heads *q, const ts_rope_heads *k, int n, float eps,
                       const int32_t *positions, const ts_rope *rope);
void cuda_argmax_rows(ts_backend *be, const float *x, int rows, int dim, int32_t *out_host);
void cuda_matmul_argmax(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, int32_t *out_host);
void cuda_embed_rmsnorm(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, const float *weight,
                        float eps, float *x, float *out);
void cuda_matmul_add_rmsnorm(ts_backend *be, const ts_weight *w, const float *in, int n, const float *bias, float *x,
                             const float *norm_weight, float eps, float *out, float *proj);
void cuda_rope_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const ts_rope_heads *q,
                         const ts_rope_heads *k, const float *v, int n_heads, float scale, float eps,
                         const int32_t *positions, const ts_rope *rope, float *out);
/* The model's RoPE frequencies on the device (uploaded when they change). */
const float *cuda_device_inv_freq(cuda_impl *im, const ts_rope *rope);
/* Staging (cuda_stage.cu): ts_backend_ops.stage_products; a staged weight's dense copy, the main stream
 * made to wait for it (NULL where none is staged); after its product, the slot freed for reuse. */
void cuda_stage_products(ts_backend *be, int count, const ts_weight *const *ws, int n);
/* silu(gate) * up of bf16 products [rows, inner] into out's 16-bit copy for the next product (cuda_qact),
 * out itself left unwritten where that copy has room (cuda_ops.cu); inner a multiple of 8. */
void cuda_silu_mul_bf16(cuda_impl *im, const __nv_bfloat16 *gate, const __nv_bfloat16 *up, int rows, int inner, float *out);
/* The floats of the activations holding x where their 16-bit copy is all that was written of them
 * (cuda_qact.src_unwritten): widened from that copy before a reader of the floats. */
void cuda_qact_materialize(cuda_impl *im, const float *x);
const void *cuda_staged_take(cuda_impl *im, const struct cuda_weight *cw);
void cuda_staged_release(cuda_impl *im, const struct cuda_weight *cw);
void cuda_stage_forget(cuda_impl *im, const struct cuda_weight *cw);
void cuda_stage_destroy(cuda_impl *im);
/* Rows [0, rows) of a weight into dense 16-bit elements (kind 1 bf16, 2 fp16) on the given stream. */
void cuda_dequantize(const struct cuda_weight *w, void *out, int kind, cudaStream_t stream);
/* Cuts the current step's prefill tiles again for step.tile_tokens and uploads them. */
void cuda_recut_tiles(cuda_impl *im);
/* Runs the norm that a fused output projection left due (see cuda_norm_due). */
void cuda_settle_norm(cuda_impl *im);
/* What every producer of a due norm records (its form, xq/xs or dense, is the caller's to add); the
 * producer then leaves it with cuda_leave_norm_due. */
static inline cuda_norm_due cuda_norm_due_of(float *out, float *x, const float *weight, float eps, int rows, int dim,
                                             const float *partials) {
    cuda_norm_due due;
    memset(&due, 0, sizeof due);
    due.out = out;
    due.x = x;
    due.weight = weight;
    due.eps = eps;
    due.rows = rows;
    due.dim = dim;
    due.partials = partials;
    return due;
}
/* The producer has overwritten the residual: no registered activations stay valid for it. */
static inline void cuda_leave_norm_due(cuda_impl *im, const cuda_norm_due *due) {
    im->norm_due = *due;
    im->qact.src = NULL;
}
static inline void cuda_settle_due(cuda_impl *im) {
    if (im->norm_due.out && !im->replaying) cuda_settle_norm(im);
}
/* True when the operation must not enqueue work: the current step replays a captured graph. Any
 * operation may overwrite the activations a producer quantized, so it also forgets them; producers
 * register theirs afterwards (cuda_qact_begin) and products use CUDA_PRODUCT_BEGIN, which keeps them. */
#define CUDA_PRODUCT_BEGIN(im)       \
    do {                             \
        if ((im)->replaying) return; \
    } while (0)
#define CUDA_SKIP_IF_REPLAYING(im)                  \
    do {                                            \
        if ((im)->replaying) return;                \
        cuda_settle_due(im);                        \
        (im)->qact.src = NULL;                      \
    } while (0)

/* Programmatic dependent launch (sm_90 and later): a kernel started with cuda_launch may be scheduled
 * while the kernel before it in the stream is still running, which hides most of the gap between the
 * short kernels of a decode step. Such kernels begin with pdl_wait(), which returns once everything
 * before them has finished and its writes are visible. Each kernel lets its successor be scheduled as
 * soon as all of its own blocks have started (before waiting itself), so a chain of kernels can be
 * resident at once, each loading what does not depend on its predecessors (weights, the step's tables,
 * cache rows of earlier steps) while the running one works: 8B decode 411 -> 446 tok/s on an H100
 * against letting the successor go only after the wait (docs/cuda-notes.md v10). The price is that
 * nothing before pdl_wait may read what any earlier kernel of the step writes: when a kernel starts,
 * its predecessors have only started. What precedes the chain is complete: the step's tables are
 * copied before its first kernel, and after a queued copy or memset (cuda_queued_copy) the next kernel
 * launches with full stream ordering. Nothing deadlocks: a successor is launched only once every block
 * of its predecessor is resident, so the blocks that the chain waits on never wait for room.
 * TESSERA_CUDA_PDL=0 turns it off. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static inline void cuda_queued_copy(cuda_impl *im) { im->pdl_fence = 1; }

/* Weights: read once a product, so they bypass L1 and leave it to the activations that every warp of an SM
 * reads again (the allocating __ldg evicted them). H100, against __ldg: 8B batch 1 477 -> 486 tok/s (the
 * matrix-vector kernel), batch 32 7746 -> 7912 and batch 16 4820 -> 5012 (the 16-bit batch kernel); an L1
 * evict-first hint measured the same, evict-last on the activations and 256-byte L2 fetches added nothing.
 * WEIGHT_L1_ALLOCATE=1 builds the allocating load, to measure. */
#ifndef WEIGHT_L1_ALLOCATE
#define WEIGHT_L1_ALLOCATE 0
#endif
__device__ __forceinline__ uint2 load_weight(const uint2 *p) {
#if WEIGHT_L1_ALLOCATE
    return __ldg(p);
#else
    uint2 v;
    asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
#endif
}
__device__ __forceinline__ int4 load_weight(const int4 *p) {
#if WEIGHT_L1_ALLOCATE
    return __ldg(p);
#else
    int4 v;
    asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
#endif
}

/* With more than one block in `cluster`, each cluster.x x cluster.y x cluster.z neighbouring blocks form a
 * thread block cluster (sm_90): they run at once on one GPC and can read each other's shared memory. */
template <typename... Params, typename... Args>
static inline cudaError_t cuda_launch_ex(cuda_impl *im, dim3 cluster, void (*kernel)(Params...), dim3 grid,
                                         dim3 block, size_t smem, Args... args) {
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = im->pdl_now && !im->pdl_fence;
    im->pdl_fence = 0;
    attr[1].id = cudaLaunchAttributeClusterDimension;
    attr[1].val.clusterDim.x = cluster.x;
    attr[1].val.clusterDim.y = cluster.y;
    attr[1].val.clusterDim.z = cluster.z;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = im->stream;
    cfg.attrs = attr;
    cfg.numAttrs = cluster.x * cluster.y * cluster.z > 1 ? 2 : 1;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

template <typename... Params, typename... Args>
static inline void cuda_launch(cuda_impl *im, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                               Args... args) {
    cuda_launch_ex(im, dim3(1, 1, 1), kernel, grid, block, smem, args...);
}

/* Products of up to this many tokens are matrix-vector kernels; the integer ones (4- and 8-bit weights
 * under bf16/fp16) take batches of up to DP4A_MAX_TOKENS in passes. Larger products go to cuBLAS. */
#define GEMV_MAX_TOKENS 8
#define DP4A_MAX_TOKENS 32

/* Weights reading the same activations in one launch (q, k, v; gate, up): matmul_many's limit. */
#define MAX_PRODUCT_TARGETS 3

/* Where a kernel producing rows x cols float activations at src should also write their int8 form (up
 * to DP4A_MAX_TOKENS rows, widths in groups of 32) or their bf16/fp16 copy (more rows), or all NULL
 * under float32. A non-NULL result is registered: the next products reading src with this shape use it. */
cuda_qact cuda_qact_begin(cuda_impl *im, const float *src, int rows, int64_t cols);

/* Int8 quantization of one group of 32 activations, by the 32 lanes of a warp, lane i holding element
 * i of group g of a row-major array: scale amax / 127 and the sum of the int8 values go to xs[g]. For
 * 4-bit layouts (nibbles) each run of 8 is stored even elements first (0 2 4 6 1 3 5 7), the order in
 * which a word's low and high nibbles hold the weights. */
/* The 16-bit copy of activation (row, col) of a rows x cols array (cuda_qact.dense): row-major for cuBLAS
 * (kind 1 bf16, 2 fp16) or in the B-fragment order of the tensor-core batch kernel (3 bf16, 4 fp16; see
 * cuda_batch16.cu): chunk of 64 columns, tile of 8 rows, register half, lane, register, low/high half,
 * where lane t of a row holds columns 16t.. of the chunk and register j the pair (p, p + 4), p = (j & 3)
 * + 8 (j >> 2). */
__device__ __forceinline__ void qact_store_dense(void *dense, int kind, int64_t row, int64_t col, int64_t cols, int rows,
                                                 float v) {
    size_t i = (size_t)row * (size_t)cols + (size_t)col;
    if (kind >= 3) {
        int nt_count = (rows + 7) / 8, w64 = (int)(col % 64), tig = w64 / 16, r = w64 % 16;
        int j = (r & 3) + 4 * (r >> 3), lane = (int)(row % 8) * 4 + tig;
        size_t word = ((((size_t)(col / 64) * nt_count + (size_t)(row / 8)) * 2 + (size_t)(j >> 2)) * 32 + (size_t)lane) * 4 + (size_t)(j & 3);
        i = 2 * word + ((r & 7) >= 4);
    }
    if (kind == 1 || kind == 3) ((__nv_bfloat16 *)dense)[i] = __float2bfloat16(v);
    else ((__half *)dense)[i] = __float2half(v);
}

/* G whole groups of 32 at once, lane holding element lane of group g0 + i in v[i]: the arithmetic of G calls of
 * qact_store_group, with the G groups' reductions interleaved (a shuffle step waits one latency, not G;
 * four groups one after another took 1.5 us at the end of each batch-1 decode attention on an H200). */
template <int G>
__device__ __forceinline__ void qact_store_groups(const float (&v)[G], int64_t g0, int lane, int nibbles, int8_t *xq,
                                                  float2 *xs) {
    float amax[G];
    int q[G], sum[G];
#pragma unroll
    for (int i = 0; i < G; i++) amax[i] = fabsf(v[i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int i = 0; i < G; i++) amax[i] = fmaxf(amax[i], __shfl_xor_sync(0xffffffffu, amax[i], o));
#pragma unroll
    for (int i = 0; i < G; i++) {
        float inv = amax[i] > 0.0f ? 127.0f / amax[i] : 0.0f;
        q[i] = __float2int_rn(v[i] * inv);
        sum[i] = q[i];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int i = 0; i < G; i++) sum[i] += __shfl_xor_sync(0xffffffffu, sum[i], o);
    int e = nibbles ? (lane & ~7) | ((lane & 1) ? 4 + ((lane & 7) >> 1) : (lane & 7) >> 1) : lane;
#pragma unroll
    for (int i = 0; i < G; i++) {
        xq[(g0 + i) * 32 + e] = (int8_t)q[i];
        if (lane == 0) xs[g0 + i] = make_float2(amax[i] / 127.0f, (float)sum[i]);
    }
}

__device__ __forceinline__ void qact_store_group(float v, int64_t g, int lane, int nibbles, int8_t *xq, float2 *xs) {
    const float one[1] = {v};
    qact_store_groups<1>(one, g, lane, nibbles, xq, xs);
}

/* Split-K decode attention: positions per split aim at ATT_CHUNK, with at least a few splits once a
 * context is long enough to share, rounded to the nearest power of two (so that graph replays of growing
 * contexts keep one grid), then raised while the (token, head) blocks would leave multiprocessors idle.
 * Rounding up, as before, gave a context just past 1024 or 2048 positions twice the splits at about 65
 * positions each, and past 8 splits a merge through global memory instead of inside one cluster (H100,
 * decode tok/s after 2048-token prompts: 0.6B 1039 -> 1211, 8B 336 -> 378; after 512: 8B 431 -> 457;
 * docs/cuda-notes.md v19); each token divides its own positions evenly among the splits. A batch
 * already fills the GPU with (token, head) blocks, so tokens x splits stays within ATT_MAX_SPLIT_WORK;
 * a batch on the tensor-core kernel (attn_decode_mma) within att_batch_pairs, the splits whose blocks
 * run in one wave (8B batch 32 on an H100: one split 6755 tok/s, two 6469, four 6134; after 1024-token
 * prompts one 5170, two 4925, eight 4405).
 * ATT_CHUNK measured at 512-640 positions on an H100 (docs/cuda-notes.md): 128 beat 32, 64 and 256.
 * A short context gets one split per fill_positions (by default ATT_PASS_POSITIONS, one pass of the
 * kernel's warps, whose rows load before it waits for q; with 16, the merge of more splits cost 0.6B
 * 1565 -> 1400 tok/s after a 16-token prompt on an H100). */
#define ATT_WARPS 8 /* attn_partial's warps x rows a warp per pass = ATT_PASS_POSITIONS */
#define ATT_UNROLL 8
#define ATT_PASS_POSITIONS (ATT_WARPS * ATT_UNROLL)
#define ATT_CHUNK 128
#define ATT_MAX_SPLIT_WORK 64
#define GQA_MIN_TOKENS 8 /* batch-1 decode keeps attn_partial's (token, head) blocks: more parallelism */
static inline int cuda_attention_splits(const cuda_impl *im, int max_pos, int n_tokens) {
    const int fill_positions = im->att_fill_positions;
    const int split_work = im->att_split_work > 0                                            ? im->att_split_work
                           : n_tokens >= GQA_MIN_TOKENS && im->att_batch_pairs > 0 ? im->att_batch_pairs
                                                                                   : ATT_MAX_SPLIT_WORK;
    const int passes = (max_pos + fill_positions - 1) / fill_positions, fill = passes < 4 ? passes : 4;
    int n = (max_pos + ATT_CHUNK - 1) / ATT_CHUNK;
    if (n < fill) n = fill;
    const int tokens = n_tokens > 0 ? n_tokens : 1;
    int splits = 1; /* doubled while twice the splits is at most n times the square root of 2 */
    while (2 * (2 * splits) * (2 * splits) <= 4 * n * n && splits * 2 * tokens <= split_work) splits *= 2;
    /* and while the (token, head) blocks leave multiprocessors idle, each split keeping a pass of
     * positions: after 512-token prompts the 0.6B's 16 heads ran 1439 tok/s with 4 splits of about 140
     * positions (64 blocks) and 1583 with 8 */
    const int heads = im->att_heads > 0 ? im->att_heads : 1;
    while (splits * 2 * heads * tokens <= im->prop.multiProcessorCount && splits * 2 <= passes &&
           splits * 2 * tokens <= split_work)
        splits *= 2;
    return splits;
}
/* Blocks of the batch decode attention on the tensor cores for head_dim hd that run at once on the GPU;
 * 0 where that kernel does not apply (a float cache among others). */
int cuda_attention_batch_slots(cuda_impl *im, int half_cache, int hd);
/* Ends the step's capture (running what it recorded) or launches its replay; operations after it run
 * directly. Called where the step's results leave the device. */
void cuda_graph_finish(cuda_impl *im);
/* Runs what a capture recorded so far and turns graphs off (for operations that need the host). */
void cuda_graph_abort(cuda_impl *im, const char *why);
/* Device copy of positions/tokens for host arrays that belong to the current step (uploaded otherwise). */
const int32_t *cuda_step_array(ts_backend *be, const int32_t *host, int n);

#define CUDA_WARN_ONCE(im, slot, ...)                  \
    do {                                               \
        if (!(im)->warned_fallback[slot]) {            \
            (im)->warned_fallback[slot] = 1;           \
            cuda_log((im), 1, __VA_ARGS__);            \
        }                                              \
    } while (0)

#endif
