/* The tensor-core kernel for batches of 4-bit products in bf16/fp16 (cuda_batch16.cu). */
#ifndef TS_BACKEND_CUDA_BATCH16_CUH
#define TS_BACKEND_CUDA_BATCH16_CUH

#include "backend/cuda/cuda_common.cuh"

#define BW_MAX_TOKENS 32

/* Whether the kernel takes products of n tokens with rows of cols weights (before the weight's layout is
 * known): producers of activations then write its fragment order. */
int cuda_batch16_takes(const cuda_impl *im, int n, int64_t cols);

/* Whether a product of n tokens with w goes to cuda_batch16_matmul (Q4_0, Q4_1, Q4_K, IQ4_NL, IQ4_XS weights,
 * widths in chunks of 64, under bf16 or fp16, sm_80 and later; TESSERA_CUDA_BATCH16=0 turns it off). */
int cuda_batch16_eligible(const cuda_impl *im, const cuda_weight *w, int n);

/* ys[k] = x . ws[k]^T (+ biases[k]) for up to MAX_PRODUCT_TARGETS eligible weights of one layout and width. */
void cuda_batch16_matmul(cuda_impl *im, int count, const cuda_weight *const *ws, const float *x, int n,
                         float *const *ys, const float *const *biases);

/* Whether an output projection of w at n tokens, added to the residual with the next RMSNorm, goes to
 * cuda_batch16_residual_norm (rows in blocks of 32 that the batch kernel can read as its columns;
 * TESSERA_CUDA_FUSE_NORM=0 turns it off). */
int cuda_batch16_fuses_norm(const cuda_impl *im, const cuda_weight *w, int n);

/* x += in . w^T (+ bias), with rmsnorm(x) * norm_weight -> out left due (cuda_norm_due, dense form): the
 * launch writes the residual, each token's sums of squares per 32 rows and the 16-bit weight * residual
 * that cuda_batch16_matmul reads when its x is out; anything else settles the norm first. */
void cuda_batch16_residual_norm(cuda_impl *im, const cuda_weight *w, const float *in, int n, const float *bias, float *x,
                                const float *norm_weight, float eps, float *out);

/* Whether the product of these weights (cuda_batch16_matmul) can read the due norm's dense form. */
int cuda_batch16_reads_due(const cuda_impl *im, int count, const cuda_weight *const *ws, int n);

/* Whether gate and up of a SwiGLU block go to cuda_batch16_swiglu at n tokens (one layout and shape,
 * rows in blocks of 16; TESSERA_CUDA_FUSE_SILU=0 turns it off). */
int cuda_batch16_pairs_swiglu(const cuda_impl *im, const cuda_weight *gate, const cuda_weight *up, int n);

/* out = silu(x . gate^T) * (x . up^T) in one launch, each block holding 16 rows of each weight, with the
 * unpaired products' and silu_mul's arithmetic; out's 16-bit form for the next product is registered
 * (cuda_qact). x may be a due norm's output that cuda_batch16_reads_due accepted. */
void cuda_batch16_swiglu(cuda_impl *im, const cuda_weight *gate, const cuda_weight *up, const float *x, int n, float *out);

#endif
