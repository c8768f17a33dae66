/* Greedy decoding on the device: the index of each logit row's largest value. A batch of 32 rows of a
 * 152k vocabulary is 19 MB of logits; the token ids are 128 bytes. */
#include "backend/cuda/cuda_common.cuh"

#define ARGMAX_THREADS 1024

/* (value, index) pairs compare by value, then by the lower index, as the CPU's ts_argmax does. */
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

__global__ void argmax_rows_kernel(const float *__restrict__ x, int dim, int32_t *__restrict__ out) {
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    const float *row = x + (size_t)blockIdx.x * dim;
    float bv = -INFINITY;
    int bi = dim; /* no candidate yet: loses every comparison with a real one */
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
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
        out[blockIdx.x] = bi < dim ? bi : 0;
    }
}

void cuda_argmax_rows(ts_backend *be, const float *x, int rows, int dim, int32_t *out_host) {
    cuda_impl *im = cuda_of(be);
    /* After the step's recorded graph (if any): the same graph then serves steps that want logits. */
    cuda_graph_finish(im);
    if (rows <= 0) return;
    int32_t *d = (int32_t *)cuda_scratch(im, &im->argmax_scratch, &im->argmax_scratch_bytes, (size_t)rows * sizeof(int32_t));
    if (!d) return;
    argmax_rows_kernel<<<rows, ARGMAX_THREADS, 0, im->stream>>>(x, dim, d);
    if (CUDA_CHECK_LAUNCH(im, "argmax")) return;
    cuda_check(im, cudaMemcpyAsync(out_host, d, (size_t)rows * sizeof(int32_t), cudaMemcpyDeviceToHost, im->stream),
               "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
}
