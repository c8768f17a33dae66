/* Choosing tokens on the device: greedy decoding (the index of each logit row's largest value) and draws
 * with temperature, top-k, top-p and min-p. A batch of 32 rows of a 152k vocabulary is 19 MB of logits;
 * the token ids are 128 bytes. */
#include "backend/cuda/cuda_common.cuh"

#define ARGMAX_THREADS 512
#define ARGMAX_PER_THREAD 8 /* elements each thread scans: a 152k row spreads over 38 blocks */

/* (value, index) pairs compare by value, then by the lower index, as the CPU's ts_argmax does. */
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

/* Block (row, slice) finds the best pair of its slice and merges it into keys[row]; block (0, 0) also zeroes
 * the next launch's keys (see launch_argmax). */
__global__ void argmax_rows_kernel(const float *__restrict__ x, int dim, int slice, unsigned long long *__restrict__ keys,
                                   unsigned long long *__restrict__ next_keys, int n_next) {
    pdl_wait(); /* whatever read the next keys (the previous launch's results) has finished */
    if (blockIdx.x == 0 && blockIdx.y == 0)
        for (int i = threadIdx.x; i < n_next; i += blockDim.x) next_keys[i] = 0;
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

/* keys[r] = argmax_key of row r's best pair, on the device; NULL on failure (logged). The keys come in two
 * halves used in turn: each launch merges into one and zeroes the other for the next launch, so that no
 * memset comes between the step's last kernel and this one (a memset ends the chain of early launches). */
static unsigned long long *launch_argmax(cuda_impl *im, const float *x, int rows, int dim) {
    const size_t key = sizeof(unsigned long long);
    size_t cap = im->argmax_scratch_bytes / (2 * key);
    if ((size_t)rows > cap) {
        if (!cuda_scratch(im, &im->argmax_scratch, &im->argmax_scratch_bytes, 2 * (size_t)rows * key)) return NULL;
        cuda_check(im, cudaMemsetAsync(im->argmax_scratch, 0, im->argmax_scratch_bytes, im->stream), "argmax reset");
        cuda_queued_copy(im);
        cap = im->argmax_scratch_bytes / (2 * key);
        im->argmax_half = 0;
    }
    unsigned long long *base = (unsigned long long *)im->argmax_scratch;
    unsigned long long *d = base + (size_t)im->argmax_half * cap, *next = base + (size_t)(1 - im->argmax_half) * cap;
    im->argmax_half ^= 1;
    int slice = ARGMAX_THREADS * ARGMAX_PER_THREAD;
    unsigned slices = (unsigned)((dim + slice - 1) / slice);
    cuda_launch(im, argmax_rows_kernel, dim3((unsigned)rows, slices), dim3(ARGMAX_THREADS), 0, x, dim, slice, d, next,
                (int)cap);
    return CUDA_CHECK_LAUNCH(im, "argmax") ? NULL : d;
}

void cuda_argmax_rows(ts_backend *be, const float *x, int rows, int dim, int32_t *out_host) {
    cuda_impl *im = cuda_of(be);
    /* After the step's recorded graph (if any): the same graph then serves steps that want logits. */
    cuda_graph_finish(im);
    if (rows <= 0) return;
    size_t bytes = (size_t)rows * sizeof(unsigned long long);
    unsigned long long *d = launch_argmax(im, x, rows, dim);
    if (!d) return;
    unsigned long long keys[64], *kh = rows <= 64 ? keys : (unsigned long long *)malloc(bytes);
    if (!kh) return;
    cuda_check(im, cudaMemcpyAsync(kh, d, bytes, cudaMemcpyDeviceToHost, im->stream), "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
    for (int r = 0; r < rows; r++) out_host[r] = argmax_key_index(kh[r]);
    if (kh != keys) free(kh);
}

/* A greedy step's head: where the product of one token runs on the integer kernel, its blocks pick the
 * token as they write the logits (argmax_fold), inside the step's graph; the argmax launch after the graph
 * goes, and with it the gap before it. A graph recorded by a step that wanted the logits has no pick: a
 * greedy step replaying it, and every other product, takes the argmax launch. */
void cuda_matmul_argmax(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, int32_t *out_host) {
    cuda_impl *im = cuda_of(be);
    int picked;
    if (im->replaying) {
        picked = im->current && im->current->argmax_fused;
    } else {
        im->head_argmax_want = !im->head_argmax_off && im->head_argmax.slots && n == 1;
        im->head_argmax_used = 0;
        cuda_matmul(be, w, x, n, y, NULL);
        im->head_argmax_want = 0;
        picked = im->head_argmax_used;
        if (picked && im->capturing && im->current) im->current->argmax_fused = 1;
    }
    if (!picked) {
        cuda_argmax_rows(be, y, n, (int)w->rows, out_host);
        return;
    }
    cuda_graph_finish(im);
    unsigned long long key = 0;
    cuda_check(im, cudaMemcpyAsync(&key, im->head_argmax.best, sizeof key, cudaMemcpyDeviceToHost, im->stream),
               "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
    out_host[0] = argmax_key_index(key);
}

/* ---- Drawing tokens (penalties, temperature, top-k, top-p, min-p) where the logits are ----
 * One block per row makes the choice ts_draw_candidates defines (runtime/sampler.c): candidates are
 * the scaled logits z within TS_DRAW_WINDOW of the best, ordered largest first, lowest index on ties;
 * each cut and the draw itself is a prefix of that order, found without sorting the row: "the element
 * where the running count (or weight) from the top reaches a target" (draw_select). Weights are expf(z)
 * in fixed point, where the host sums exp(z) in double: the same token except when u falls within
 * rounding of a boundary. */
#define DRAW_THREADS 1024
#define DRAW_WARPS (DRAW_THREADS / 32)

/* Larger key = earlier in the order; 0 = not a candidate. z <= 0 for every candidate. */
__device__ __forceinline__ uint32_t draw_key(float z) {
    return z >= -TS_DRAW_WINDOW ? 0xffffffffu - __float_as_uint(fabsf(z)) : 0u;
}
__device__ __forceinline__ float draw_key_z(uint32_t key) { return -__uint_as_float(0xffffffffu - key); }

/* Weights in fixed point (2^-44 units) so that sums are exact integer sums in any order: the same row
 * and u then give the same token (a seed gives the same tokens). The smallest candidate weight,
 * exp(-30), is 1.6 units; 152k weights of at most 2^44 stay below 2^62. */
#define DRAW_FIX 17592186044416.0f
__device__ __forceinline__ unsigned long long draw_fix(float z) { return __float2ull_rn(expf(z) * DRAW_FIX); }
#define DRAW_BINS 256   /* radix digits of 8 bits */
#define DRAW_ZBINS 512  /* z bins of the first level */
#define DRAW_COPIES 2 /* histogram copies, one per half of the warps: fewer lanes on one shared address */
#define DRAW_LIST 4096

struct draw_shared {
    unsigned cnt[DRAW_COPIES][DRAW_ZBINS]; /* DRAW_ZBINS >= DRAW_BINS: the radix passes use the same */
    unsigned long long mass[DRAW_COPIES][DRAW_ZBINS];
    unsigned long long list[DRAW_LIST]; /* gathered elements: (~key << 32 | index), sorted ascending */
    unsigned long long red_u[DRAW_WARPS];
    int red_i[DRAW_WARPS];
    float red_f[DRAW_WARPS];
    uint32_t prefix, key;
    int above_cnt, eq_cnt, bin, list_n, gathered;
    int list_eq; /* position in list of the first element equal to the selected key; -1: not listed */
    float zscale;
    unsigned long long above_mass;
};

/* Bins of z of equal width over the row's candidates (scale = bins / the widest -z), largest z in bin 0:
 * a first level that spreads a row of logits over many bins (the float bits' high digits put nearly all
 * of them in one). */
__device__ __forceinline__ int draw_zbin(float z, float scale) { return min(DRAW_ZBINS - 1, (int)(-z * scale)); }

/* The histogram copies start at zero; after the adds, copy 0 holds the totals of bins 0..bins-1. */
__device__ void draw_hist_clear(draw_shared *sh) {
    for (int i = threadIdx.x; i < DRAW_COPIES * DRAW_ZBINS; i += blockDim.x) {
        (&sh->cnt[0][0])[i] = 0;
        (&sh->mass[0][0])[i] = 0;
    }
    __syncthreads();
}

__device__ void draw_hist_merge(draw_shared *sh, int bins) {
    __syncthreads();
    for (int b = threadIdx.x; b < bins; b += blockDim.x)
        for (int k = 1; k < DRAW_COPIES; k++) {
            sh->cnt[0][b] += sh->cnt[k][b];
            sh->mass[0][b] += sh->mass[k][b];
        }
    __syncthreads();
}

__device__ unsigned long long draw_block_sum(unsigned long long v, draw_shared *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh->red_u[threadIdx.x / 32] = v;
    __syncthreads();
    unsigned long long t = 0;
    for (int w = 0; w < DRAW_WARPS; w++) t += sh->red_u[w];
    return t;
}

__device__ int draw_block_count(int v, draw_shared *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh->red_i[threadIdx.x / 32] = v;
    __syncthreads();
    int t = 0;
    for (int w = 0; w < DRAW_WARPS; w++) t += sh->red_i[w];
    return t;
}

__device__ int draw_block_min(int v, draw_shared *sh) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh->red_i[threadIdx.x / 32] = v;
    __syncthreads();
    int t = sh->red_i[0];
    for (int w = 1; w < DRAW_WARPS; w++) t = min(t, sh->red_i[w]);
    return t;
}

/* The sum of v over the threads before this one (block of DRAW_THREADS). */
__device__ unsigned long long draw_block_exclusive_scan(unsigned long long v, draw_shared *sh) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned long long incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        unsigned long long n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
    }
    __syncthreads();
    if (lane == 31) sh->red_u[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        unsigned long long t = lane < DRAW_WARPS ? sh->red_u[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            unsigned long long n = __shfl_up_sync(0xffffffffu, t, o);
            if (lane >= o) t += n;
        }
        if (lane < DRAW_WARPS) sh->red_u[lane] = t; /* inclusive totals of warps 0..lane */
    }
    __syncthreads();
    return incl - v + (warp ? sh->red_u[warp - 1] : 0ull);
}

/* The key K where the running count (by_mass 0) or weight (by_mass 1, fixed point) of the candidates,
 * from the largest key down, first reaches target (strict: first exceeds it; never past the last
 * candidate); leaves in sh the count and weight of the keys above K and the count of those equal to
 * it. Four radix passes of 8 bits over the whole row: draw_select's way when a z bin is too full. */
__device__ uint32_t draw_select_radix(const float *z, int dim, int by_mass, unsigned long long target, int strict,
                                      draw_shared *sh) {
    const int copy = (threadIdx.x / 32) % DRAW_COPIES;
    if (threadIdx.x == 0) {
        sh->prefix = 0;
        sh->above_cnt = 0;
        sh->above_mass = 0;
    }
    for (int shift = 24; shift >= 0; shift -= 8) {
        draw_hist_clear(sh);
        const uint32_t prefix = sh->prefix;
        const uint32_t high_mask = shift == 24 ? 0u : ~0u << (shift + 8);
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float zi = z[i];
            uint32_t key = draw_key(zi);
            if (key == 0 || (key & high_mask) != (prefix & high_mask)) continue;
            int digit = (int)((key >> shift) & 255u);
            if (by_mass) atomicAdd(&sh->mass[copy][digit], draw_fix(zi));
            else atomicAdd(&sh->cnt[copy][digit], 1u);
        }
        /* per bin totals into copy 0, then one thread walks the bins from the top */
        draw_hist_merge(sh, DRAW_BINS);
        if (threadIdx.x == 0) {
            int last = DRAW_BINS - 1;
            for (int d = 0; d < DRAW_BINS; d++)
                if (by_mass ? sh->mass[0][d] != 0 : sh->cnt[0][d] != 0) {
                    last = d;
                    break;
                }
            int digit = last; /* a target past every candidate: the last one */
            for (int d = DRAW_BINS - 1; d > last; d--) {
                unsigned long long here = by_mass ? sh->mass[0][d] : sh->cnt[0][d];
                if (!here) continue;
                unsigned long long cum = (by_mass ? sh->above_mass : (unsigned long long)sh->above_cnt) + here;
                if (strict ? cum > target : cum >= target) {
                    digit = d;
                    break;
                }
                if (by_mass) sh->above_mass += here;
                else sh->above_cnt += (int)here;
            }
            sh->prefix = prefix | ((uint32_t)digit << shift);
        }
        __syncthreads();
    }
    /* the other measure of the keys above K and the count equal to K, in one more pass */
    const uint32_t k = sh->prefix;
    int above = 0, eq = 0;
    unsigned long long above_m = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float zi = z[i];
        uint32_t key = draw_key(zi);
        if (key > k) {
            above++;
            above_m += draw_fix(zi);
        }
        eq += key == k;
    }
    above = draw_block_count(above, sh);
    eq = draw_block_count(eq, sh);
    above_m = draw_block_sum(above_m, sh);
    __syncthreads();
    if (threadIdx.x == 0) {
        sh->above_cnt = above;
        sh->above_mass = above_m;
        sh->eq_cnt = eq;
    }
    __syncthreads();
    return k;
}

/* Gathers the candidates of z bins lo..hi (m of them, at most DRAW_LIST) into sh->list and sorts them
 * into the host's order: key descending, then index ascending. */
__device__ void draw_gather(const float *z, int dim, int lo, int hi, int m, draw_shared *sh) {
    const float scale = sh->zscale;
    if (threadIdx.x == 0) sh->list_n = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float zi = z[i];
        if (!(zi >= -TS_DRAW_WINDOW)) continue;
        int b = draw_zbin(zi, scale);
        if (b >= lo && b <= hi) sh->list[atomicAdd(&sh->list_n, 1)] = ((unsigned long long)~draw_key(zi) << 32) | (unsigned)i;
    }
    int size = 1;
    while (size < m) size <<= 1;
    __syncthreads();
    for (int i = m + threadIdx.x; i < size; i += blockDim.x) sh->list[i] = ~0ull;
    __syncthreads();
    for (int k = 2; k <= size; k <<= 1) /* bitonic sort */
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < size; i += blockDim.x) {
                int partner = i ^ j;
                if (partner > i) {
                    unsigned long long a = sh->list[i], b = sh->list[partner];
                    if (((i & k) == 0) == (a > b)) {
                        sh->list[i] = b;
                        sh->list[partner] = a;
                    }
                }
            }
            __syncthreads();
        }
}

__device__ __forceinline__ float draw_list_z(const draw_shared *sh, int i) { return draw_key_z(~(uint32_t)(sh->list[i] >> 32)); }

/* The first i < n whose running weight (by_mass) or count over list[0..i] reaches target (strict:
 * exceeds it), starting from base; n - 1 when none does. */
__device__ int draw_list_find(int n, int by_mass, unsigned long long base, unsigned long long target, int strict,
                              draw_shared *sh) {
    const int per = (n + (int)blockDim.x - 1) / (int)blockDim.x, beg = (int)threadIdx.x * per, end = min(beg + per, n);
    unsigned long long local = 0;
    for (int i = beg; i < end; i++) local += by_mass ? draw_fix(draw_list_z(sh, i)) : 1ull;
    unsigned long long cum = base + draw_block_exclusive_scan(local, sh);
    int found = n - 1;
    for (int i = beg; i < end; i++) {
        cum += by_mass ? draw_fix(draw_list_z(sh, i)) : 1ull;
        if (strict ? cum > target : cum >= target) {
            found = i;
            break;
        }
    }
    return draw_block_min(found, sh);
}

/* The weight of list[0..n). */
__device__ unsigned long long draw_list_weight(int n, draw_shared *sh) {
    unsigned long long w = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) w += draw_fix(draw_list_z(sh, i));
    return draw_block_sum(w, sh);
}

/* Top-k with k <= DRAW_LIST: the z bins down to the one holding the k-th candidate usually hold a few
 * hundred elements. Gathered and sorted they are the host's order itself, so every later cut and the
 * draw are walks over that list, with no further pass over the row. Returns how many were gathered (at
 * least k), or 0 when those bins hold more than the list takes. */
__device__ int draw_gather_top(const float *z, int dim, int k, draw_shared *sh) {
    const int copy = (threadIdx.x / 32) % DRAW_COPIES;
    const float scale = sh->zscale;
    draw_hist_clear(sh);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float zi = z[i];
        if (zi >= -TS_DRAW_WINDOW) atomicAdd(&sh->cnt[copy][draw_zbin(zi, scale)], 1u);
    }
    draw_hist_merge(sh, DRAW_ZBINS);
    if (threadIdx.x == 0) {
        int cum = 0, hi = DRAW_ZBINS - 1;
        for (int b = 0; b < DRAW_ZBINS; b++) {
            cum += (int)sh->cnt[0][b];
            if (cum >= k) {
                hi = b;
                break;
            }
        }
        sh->bin = hi;
        sh->gathered = cum;
    }
    __syncthreads();
    const int m = sh->gathered, hi = sh->bin;
    if (m > DRAW_LIST) return 0;
    draw_gather(z, dim, 0, hi, m, sh);
    return m;
}

/* As draw_select_radix, in two levels: a histogram of z bins (one pass) finds the bin where the target
 * is reached; its elements (usually a few thousand of a 152k row) are gathered, sorted by key and
 * walked. sh->list_eq then locates the selected key's elements in index order. */
__device__ uint32_t draw_select(const float *z, int dim, int by_mass, unsigned long long target, int strict,
                                draw_shared *sh) {
    const int copy = (threadIdx.x / 32) % DRAW_COPIES;
    const float scale = sh->zscale;
    draw_hist_clear(sh);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float zi = z[i];
        if (!(zi >= -TS_DRAW_WINDOW)) continue;
        int b = draw_zbin(zi, scale);
        atomicAdd(&sh->cnt[copy][b], 1u);
        atomicAdd(&sh->mass[copy][b], draw_fix(zi));
    }
    draw_hist_merge(sh, DRAW_ZBINS);
    if (threadIdx.x == 0) {
        int last = 0;
        for (int b = DRAW_ZBINS - 1; b >= 0; b--)
            if (sh->cnt[0][b]) {
                last = b;
                break;
            }
        int bin = last; /* a target past every candidate: the last bin */
        sh->above_cnt = 0;
        sh->above_mass = 0;
        for (int b = 0; b < last; b++) {
            if (!sh->cnt[0][b]) continue;
            unsigned long long cum = by_mass ? sh->above_mass + sh->mass[0][b] : (unsigned long long)(sh->above_cnt + (int)sh->cnt[0][b]);
            if (strict ? cum > target : cum >= target) {
                bin = b;
                break;
            }
            sh->above_cnt += (int)sh->cnt[0][b];
            sh->above_mass += sh->mass[0][b];
        }
        sh->bin = bin;
        sh->list_n = 0;
    }
    __syncthreads();
    const int bin = sh->bin, m = (int)sh->cnt[0][bin];
    if (m > DRAW_LIST) {
        uint32_t k = draw_select_radix(z, dim, by_mass, target, strict, sh);
        if (threadIdx.x == 0) sh->list_eq = -1;
        __syncthreads();
        return k;
    }
    draw_gather(z, dim, bin, bin, m, sh);
    /* the sorted list's running measure: where it reaches the target */
    const int p = draw_list_find(m, by_mass, by_mass ? sh->above_mass : (unsigned long long)sh->above_cnt, target, strict, sh);
    const uint32_t key = ~(uint32_t)(sh->list[p] >> 32);
    /* the selected key's run in the list, and what lies before it */
    int first = m, eq = 0, above_c = 0;
    unsigned long long above_m = 0;
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        uint32_t ki = ~(uint32_t)(sh->list[i] >> 32);
        if (ki == key) {
            first = min(first, i);
            eq++;
        } else if (ki > key) {
            above_c++;
            above_m += draw_fix(draw_key_z(ki));
        }
    }
    first = draw_block_min(first, sh);
    eq = draw_block_count(eq, sh);
    above_c = draw_block_count(above_c, sh);
    above_m = draw_block_sum(above_m, sh);
    __syncthreads();
    if (threadIdx.x == 0) {
        sh->above_cnt += above_c;
        sh->above_mass += above_m;
        sh->key = key;
        sh->eq_cnt = eq;
        sh->list_eq = first;
    }
    __syncthreads();
    return sh->key;
}

/* The smallest index among elements whose key is key. */
__device__ int draw_first_index(const float *z, int dim, uint32_t key, draw_shared *sh) {
    int first = dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        if (draw_key(z[i]) == key) {
            first = i;
            break;
        }
    for (int o = 16; o > 0; o >>= 1) first = min(first, __shfl_xor_sync(0xffffffffu, first, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) sh->red_i[threadIdx.x / 32] = first;
    __syncthreads();
    for (int w = 0; w < DRAW_WARPS; w++) first = min(first, sh->red_i[w]);
    return first;
}

/* The j-th smallest index (0-based) among elements whose key is key: a bisection on the index. */
__device__ int draw_nth_index(const float *z, int dim, uint32_t key, int j, draw_shared *sh) {
    int lo = 0, hi = dim; /* the answer is in [lo, hi) */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2, c = 0;
        for (int i = threadIdx.x; i < mid; i += blockDim.x) c += draw_key(z[i]) == key;
        if (draw_block_count(c, sh) > j) hi = mid;
        else lo = mid;
    }
    return lo;
}

__global__ void __launch_bounds__(DRAW_THREADS)
    draw_rows_kernel(float *__restrict__ x, int dim, const ts_draw *__restrict__ draws,
                     const unsigned long long *__restrict__ best, int32_t *__restrict__ out) {
    pdl_wait();
    __shared__ draw_shared sh;
    const int row = blockIdx.x;
    const ts_draw d = draws[row];
    const unsigned long long bk = best[row];
    const int best_index = argmax_key_index(bk);
    if (d.temperature <= 0.0f || d.top_k == 1 || bk == 0) {
        if (threadIdx.x == 0) out[row] = best_index;
        return;
    }
    uint32_t hi = (uint32_t)(bk >> 32);
    const float mx = __uint_as_float(hi & 0x80000000u ? hi & 0x7fffffffu : ~hi);
    const float inv_t = 1.0f / d.temperature;
    float *z = x + (size_t)row * dim;
    int n0 = 0;
    unsigned long long total0 = 0;
    float widest = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float zi = (z[i] - mx) * inv_t; /* as the host computes it */
        z[i] = zi;
        if (zi >= -TS_DRAW_WINDOW) {
            n0++;
            total0 += draw_fix(zi);
            widest = fmaxf(widest, -zi);
        }
    }
    n0 = draw_block_count(n0, &sh);
    total0 = draw_block_sum(total0, &sh);
    for (int o = 16; o > 0; o >>= 1) widest = fmaxf(widest, __shfl_xor_sync(0xffffffffu, widest, o));
    if (threadIdx.x % 32 == 0) sh.red_f[threadIdx.x / 32] = widest;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 0; w < DRAW_WARPS; w++) widest = fmaxf(widest, sh.red_f[w]);
        sh.zscale = (float)DRAW_ZBINS / fmaxf(widest, 1e-30f);
    }
    __syncthreads();
    if (n0 == 0) { /* an infinite or NaN best logit: no finite z */
        if (threadIdx.x == 0) out[row] = best_index;
        return;
    }
    if (d.top_k > 1 && d.top_k < n0 && d.top_k <= DRAW_LIST && draw_gather_top(z, dim, d.top_k, &sh) > 0) {
        /* the order's first top_k are list[0..top_k): cut and draw there */
        int n = d.top_k;
        if (d.top_p < 1.0f) {
            const double target = (double)d.top_p * (double)draw_list_weight(n, &sh);
            n = draw_list_find(n, 1, 0, (unsigned long long)ceil(target), 0, &sh) + 1;
        }
        if (d.min_p > 0.0f) {
            const double lmin = log((double)d.min_p);
            int c = 0;
            for (int i = threadIdx.x; i < n; i += blockDim.x) c += (double)draw_list_z(&sh, i) >= lmin;
            n = max(1, min(n, draw_block_count(c, &sh)));
        }
        const unsigned long long r = (unsigned long long)(d.u * (double)draw_list_weight(n, &sh));
        const int i = draw_list_find(n, 1, 0, r, 1, &sh);
        if (threadIdx.x == 0) out[row] = (int)(uint32_t)sh.list[i];
        return;
    }
    /* The survivors: the first n in the order, which are the keys above kb and the first tb (by index)
     * of those equal to it (kb 0: every candidate), of weight total. */
    int n = n0, tb = 0;
    uint32_t kb = 0;
    unsigned long long total = total0;
    if (d.top_k > 0 && d.top_k < n) {
        n = d.top_k;
        kb = draw_select(z, dim, 0, (unsigned long long)n, 0, &sh);
        tb = n - sh.above_cnt;
        total = sh.above_mass + (unsigned long long)tb * draw_fix(draw_key_z(kb));
    }
    if (d.top_p < 1.0f) {
        /* the shortest prefix holding top_p of their weight */
        const double target = (double)d.top_p * (double)total;
        uint32_t k = draw_select(z, dim, 1, (unsigned long long)ceil(target), 0, &sh);
        const unsigned long long w = draw_fix(draw_key_z(k));
        int t = (int)ceil((target - (double)sh.above_mass) / (double)w);
        t = max(1, min(t, sh.eq_cnt));
        if (sh.above_cnt + t < n) {
            n = sh.above_cnt + t;
            kb = k;
            tb = t;
            total = sh.above_mass + (unsigned long long)t * w;
        }
    }
    if (d.min_p > 0.0f) {
        /* candidates with exp(z) >= min_p, the first always */
        const double lmin = log((double)d.min_p);
        int c = 0;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) c += z[i] >= -TS_DRAW_WINDOW && (double)z[i] >= lmin;
        c = draw_block_count(c, &sh);
        if (max(1, c) < n) {
            n = max(1, c);
            kb = draw_select(z, dim, 0, (unsigned long long)n, 0, &sh);
            tb = n - sh.above_cnt;
            total = sh.above_mass + (unsigned long long)tb * draw_fix(draw_key_z(kb));
        }
    }
    /* the draw: the first survivor whose running weight exceeds r */
    const unsigned long long r = (unsigned long long)(d.u * (double)total);
    uint32_t k = draw_select(z, dim, 1, r, 1, &sh);
    int avail = sh.eq_cnt;
    if (kb && k <= kb) {
        if (k < kb) k = draw_select(z, dim, 0, (unsigned long long)n, 0, &sh); /* past the survivors */
        avail = tb;
    }
    int j = r > sh.above_mass ? (int)min((r - sh.above_mass) / draw_fix(draw_key_z(k)), (unsigned long long)avail) : 0;
    j = max(0, min(j, avail - 1));
    int chosen = sh.list_eq >= 0 ? (int)(uint32_t)sh.list[sh.list_eq + j]
                 : j == 0       ? draw_first_index(z, dim, k, &sh)
                                : draw_nth_index(z, dim, k, j, &sh);
    if (threadIdx.x == 0) out[row] = chosen;
}

/* The sampler's penalties: ts_penalized, the step runtime/sampler.c applies, on each entry of a row. */
__global__ void penalty_rows_kernel(float *__restrict__ x, int dim, const ts_draw *__restrict__ draws,
                                    const ts_penalty *__restrict__ pen) {
    pdl_wait();
    const ts_draw d = draws[blockIdx.x];
    float *row = x + (size_t)blockIdx.x * dim;
    for (int e = d.pen_first + threadIdx.x; e < d.pen_first + d.pen_count; e += blockDim.x) {
        const ts_penalty p = pen[e];
        if (p.token < 0 || p.token >= dim) continue;
        row[p.token] = ts_penalized(row[p.token], d.repetition_penalty, p.sub);
    }
}

void cuda_sample_rows(ts_backend *be, float *x, int rows, int dim, const ts_draw *draws, const ts_penalty *penalties,
                      int n_penalties, int32_t *out_host) {
    cuda_impl *im = cuda_of(be);
    cuda_graph_finish(im);
    if (rows <= 0) return;
    const size_t draw_bytes = (size_t)rows * sizeof(ts_draw), out_bytes = (size_t)rows * sizeof(int32_t);
    const size_t pen_bytes = (size_t)(n_penalties > 0 ? n_penalties : 0) * sizeof(ts_penalty);
    uint8_t *buf = (uint8_t *)cuda_scratch(im, &im->draw_scratch, &im->draw_scratch_bytes, draw_bytes + out_bytes + pen_bytes);
    if (!buf) return;
    ts_draw *dd = (ts_draw *)buf; /* 8-aligned: the allocation is; out and the penalties (4-aligned) follow */
    int32_t *dout = (int32_t *)(buf + draw_bytes);
    ts_penalty *dpen = (ts_penalty *)(buf + draw_bytes + out_bytes);
    cuda_check(im, cudaMemcpyAsync(dd, draws, draw_bytes, cudaMemcpyHostToDevice, im->stream), "copy draws");
    if (pen_bytes) cuda_check(im, cudaMemcpyAsync(dpen, penalties, pen_bytes, cudaMemcpyHostToDevice, im->stream), "copy penalties");
    cuda_queued_copy(im);
    if (pen_bytes) {
        cuda_launch(im, penalty_rows_kernel, dim3((unsigned)rows), dim3(256), 0, x, dim, (const ts_draw *)dd,
                    (const ts_penalty *)dpen);
        if (CUDA_CHECK_LAUNCH(im, "penalties")) return;
    }
    unsigned long long *best = launch_argmax(im, x, rows, dim);
    if (!best) return;
    cuda_launch(im, draw_rows_kernel, dim3((unsigned)rows), dim3(DRAW_THREADS), 0, x, dim, (const ts_draw *)dd,
                (const unsigned long long *)best, dout);
    if (CUDA_CHECK_LAUNCH(im, "draw")) return;
    cuda_check(im, cudaMemcpyAsync(out_host, dout, out_bytes, cudaMemcpyDeviceToHost, im->stream), "copy to host");
    cuda_check(im, cudaStreamSynchronize(im->stream), "stream synchronise");
}
