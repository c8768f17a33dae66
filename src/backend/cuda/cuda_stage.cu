/* Weights dequantized ahead of their products. A prefill-sized product of a quantized weight runs
 * through cuBLAS on a 16-bit copy that a dequantization kernel writes first (cuda_matmul.cu): about a
 * quarter of an 8B prefill of 512 tokens on an H200, all of it memory traffic. The attention between the
 * q/k/v products and the output projection is bound by latency and leaves most of the memory bandwidth
 * and room on every multiprocessor, so the model names the products that follow it (stage_products)
 * and their weights are dequantized on a second stream meanwhile, each into its own slot. The product
 * that reads a slot waits for the slot's `ready` event; the next dequantization into the slot waits for
 * its `done` event, recorded after that product. Dequantizing on a second stream while cuBLAS runs
 * measured slower, both in panels of one weight (fourth session) and as whole weights (the down projection
 * staged during gate/up, the next layer's q/k/v during down: 8B prefill-512 28.1k -> 27.7k tok/s): cuBLAS
 * wants all of the SMs. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

/* The most device memory the slots may hold together: beyond it a weight is dequantized where its
 * product runs, as without staging (the planner's CUDA reserve holds the slots and the GEMM panel). */
#define STAGE_MAX_BYTES (320u << 20)
/* Device memory a slot leaves free: the step's scratch buffers still grow after the slots are taken */
#define STAGE_HEADROOM ((size_t)1 << 30)

static int stage_ready(cuda_impl *im) {
    if (im->stage_stream) return 1;
    int lo = 0, hi = 0;
    cudaDeviceGetStreamPriorityRange(&lo, &hi);
    if (cudaStreamCreateWithPriority(&im->stage_stream, cudaStreamNonBlocking, lo) != cudaSuccess) {
        im->stage_stream = NULL;
        return 0;
    }
    if (cudaEventCreateWithFlags(&im->stage_go, cudaEventDisableTiming) != cudaSuccess) return 0;
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
        if (cudaEventCreateWithFlags(&im->stage[i].ready, cudaEventDisableTiming) != cudaSuccess ||
            cudaEventCreateWithFlags(&im->stage[i].done, cudaEventDisableTiming) != cudaSuccess)
            return 0;
    return 1;
}

static cuda_stage_slot *slot_holding(cuda_impl *im, const cuda_weight *cw) {
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
        if (im->stage[i].w == cw) return &im->stage[i];
    return NULL;
}

static size_t slot_bytes(const cuda_impl *im, const cuda_stage_slot *except) {
    size_t total = 0;
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++)
        if (&im->stage[i] != except) total += im->stage[i].bytes;
    return total;
}

/* Room for `need` bytes in a slot: a grown slot waits for the product reading its old contents. */
static int slot_fit(cuda_impl *im, cuda_stage_slot *s, size_t need) {
    if (s->bytes >= need) return 1;
    if (slot_bytes(im, s) + need > STAGE_MAX_BYTES) return 0;
    if (s->buf) {
        cudaEventSynchronize(s->done);
        cudaFree(s->buf);
        s->buf = NULL;
        s->bytes = 0;
    }
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess || free_bytes < need + STAGE_HEADROOM) return 0;
    if (cudaMalloc(&s->buf, need) != cudaSuccess) {
        cudaGetLastError();
        s->buf = NULL;
        return 0;
    }
    s->bytes = need;
    return 1;
}

/* A slot for `need` bytes: the smallest free one that holds them, else the largest free one (grown),
 * else the next in turn (its staged weight unused). Free slots that fit keep a layer's weights in the
 * same slots step after step, so slots are rarely grown. */
static cuda_stage_slot *slot_for(cuda_impl *im, size_t need) {
    cuda_stage_slot *fit = NULL, *largest = NULL;
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++) {
        cuda_stage_slot *s = &im->stage[i];
        if (s->w) continue;
        if (s->bytes >= need && (!fit || s->bytes < fit->bytes)) fit = s;
        if (!largest || s->bytes > largest->bytes) largest = s;
    }
    if (fit) return fit;
    if (largest) return largest;
    cuda_stage_slot *s = &im->stage[im->stage_next];
    im->stage_next = (im->stage_next + 1) % CUDA_STAGE_SLOTS;
    return s;
}

void cuda_stage_products(ts_backend *be, int count, const ts_weight *const *ws, int n) {
    cuda_impl *im = cuda_of(be);
    if (im->stage_off || im->capturing || im->replaying || n <= DP4A_MAX_TOKENS || im->opt.precision == TS_PRECISION_FP32)
        return;
    const int kind = cuda_gemm_kind(im, 0);
    int started = 0;
    for (int k = 0; k < count && k < CUDA_STAGE_SLOTS; k++) {
        const cuda_weight *cw = ws[k] && ws[k]->prepared_by == be ? (const cuda_weight *)ws[k]->prepared : NULL;
        /* only weights that gemm_path would dequantize */
        if (!cw || !cw->gpu_supported || cuda_gemm_reads_stored(cw, kind) || slot_holding(im, cw))
            continue;
        if (!started) {
            if (!stage_ready(im)) {
                cuda_log(im, 1, "cuda: no second stream for dequantizing ahead; prefill dequantizes in line");
                im->stage_off = 1;
                return;
            }
            /* the slots are written after everything queued so far (the q/k/v products read x) */
            cudaEventRecord(im->stage_go, im->stream);
            cudaStreamWaitEvent(im->stage_stream, im->stage_go, 0);
            started = 1;
        }
        const size_t need = (size_t)cw->rows * (size_t)cw->cols * 2;
        cuda_stage_slot *s = slot_for(im, need);
        s->w = NULL;
        if (!slot_fit(im, s, need)) continue;
        cudaStreamWaitEvent(im->stage_stream, s->done, 0); /* its last reader (never recorded: no wait) */
        cuda_dequantize(cw, s->buf, kind, im->stage_stream);
        cudaEventRecord(s->ready, im->stage_stream);
        s->w = cw;
    }
    CUDA_CHECK_LAUNCH(im, "stage_products");
}

const void *cuda_staged_take(cuda_impl *im, const cuda_weight *cw) {
    cuda_stage_slot *s = cw ? slot_holding(im, cw) : NULL;
    if (!s) return NULL;
    cudaStreamWaitEvent(im->stream, s->ready, 0);
    return s->buf;
}

void cuda_staged_release(cuda_impl *im, const cuda_weight *cw) {
    cuda_stage_slot *s = slot_holding(im, cw);
    if (!s) return;
    cudaEventRecord(s->done, im->stream);
    s->w = NULL;
}

void cuda_stage_forget(cuda_impl *im, const cuda_weight *cw) {
    cuda_stage_slot *s = slot_holding(im, cw);
    if (!s) return;
    cudaEventSynchronize(s->ready); /* the dequantization reads the weight being released */
    s->w = NULL;
}

void cuda_stage_destroy(cuda_impl *im) {
    if (im->stage_stream) cudaStreamSynchronize(im->stage_stream);
    for (int i = 0; i < CUDA_STAGE_SLOTS; i++) {
        cuda_stage_slot *s = &im->stage[i];
        if (s->buf) cudaFree(s->buf);
        if (s->ready) cudaEventDestroy(s->ready);
        if (s->done) cudaEventDestroy(s->done);
        memset(s, 0, sizeof *s);
    }
    if (im->stage_go) cudaEventDestroy(im->stage_go);
    if (im->stage_stream) cudaStreamDestroy(im->stage_stream);
    im->stage_go = NULL;
    im->stage_stream = NULL;
}
