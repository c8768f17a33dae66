/* Greedy decoding on the device: the index of each logit row's largest value. A batch of 32 rows of a
 * 152k vocabulary is 19 MB of logits; the token ids are 128 bytes. */
#include "backend/cuda/cuda_common.cuh"

#define ARGMAX_THREADS 512
#define ARGMAX_PER_THREAD 8 /* elements each thread scans: a 152k row spreads over 38 blocks */

/* (value, index) pairs compare by value, then by the lower index, as the CPU's ts_argmax does. */
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

/* A (value, index) pair as one integer whose order is the pairs' order: the float's bits made
 * monotonic in the high half, the complemented index (lower wins) in the low half. Zero is below
 * every real pair, so rows start at zero and blocks merge with atomicMax. */
__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
    unsigned u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned)~(unsigned)i;
}

/* Block (row, slice) finds the best pair of its slice and merges it into keys[row]. */
__global__ void argmax_rows_kernel(const float *__restrict__ x, int dim, int slice, unsigned long long *__restrict__ keys) {
    pdl_wait();
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    const float *row = x + (size_t)blockIdx.x * dim;
    int end = min(dim, (int)(blockIdx.y + 1) * slice);
    float bv = -INFINITY;
    int bi = dim; /* no candidate yet: loses every comparison with a real one */
    for (int i = blockIdx.y * slice + threadIdx.x; i < end; i += blockDim.x) {
        float v = row[i];
        if (better(v, i, bv, bi) || bi == dim) {
            bv = v;
            bi = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi < dim && (bi == dim || better(ov, oi, bv, bi))) {
            bv = ov;
            bi = oi;
        }
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++)
            if (si[w] < dim && (bi == dim || better(sv[w], si[w], bv, bi))) {
                bv = sv[w];
                bi = si[w];
            }
        if (bi < dim) atomicMax(keys + blockIdx.x, argmax_key(bv, bi));
    }
}

void cuda_argmax_rows(ts_backend *be, const float *x, int rows, int dim, int32_t *out_host) {
    cuda_impl *im = cuda_of(be);
    /* After the step's recorded graph (if any): the same graph then serves steps that want logits. */
    cuda_graph_finish(im);
    if (rows <= 0) return;
    size_t bytes = (size_t)rows * sizeof(unsigned long long);
    unsigned long long *d = (unsigned long long *)cuda_scratch(im, &im->argmax_scratch, &im->argmax_scratch_bytes, bytes);
    if (!d) return;
    int slice = ARGMAX_THREADS * ARGMAX_PER_THREAD;
    unsigned slices = (unsigned)((dim + slice - 1) / slice);
    cuda_check(im, cudaMemsetAsync(d, 0, bytes, im->stream), "argmax reset");
    cuda_queued_copy(im);
    cuda_launch(im, argmax_rows_kernel, dim3((unsigned)rows, slices), dim3(ARGMAX_THREADS), 0, x, dim, slice, d);
    if (CUDA_CHECK_LAUNCH(im, "argmax")) return;
    unsigned long long keys[64], *kh = rows <= 64 ? keys : (unsigned long long *)malloc(bytes);
    if (!kh) return;
    cuda_check(im, cudaMemcpyAsync(kh, d, bytes, cudaMemcpyDeviceToHost, im->stream), "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
    for (int r = 0; r < rows; r++) out_host[r] = kh[r] ? (int32_t)~(uint32_t)kh[r] : 0;
    if (kh != keys) free(kh);
}
