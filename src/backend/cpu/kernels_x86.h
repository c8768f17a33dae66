/* Pieces of the x86 tables that other x86 tables reuse (the AMX table runs the AVX-512 decoders,
 * and falls back to the AVX-512 products for shapes too small for tiles). Internal to backend/cpu. */
#ifndef TS_BACKEND_CPU_KERNELS_X86_H
#define TS_BACKEND_CPU_KERNELS_X86_H

#include "backend/cpu/kernels.h"
#include "backend/cpu/unified.h"

#if defined(__x86_64__)
extern const ts_cpu_kernels ts_cpu_kernels_avx2;
extern const ts_cpu_kernels ts_cpu_kernels_avx_vnni;
extern const ts_cpu_kernels ts_cpu_kernels_avx512;
extern const ts_cpu_kernels ts_cpu_kernels_amx;

/* Decodes native blocks [nb0, nb1) of one TS_PACK_I16 group into unified.h blocks (unsigned values,
 * or signed ones: values minus the type's offset). */
void ts_avx512_decode_packed(ts_dtype t, const uint8_t *group, int64_t nb0, int64_t nb1, int signed_out,
                             uint8_t *dst);
/* The vpdpbusd micro-kernel (a ts_uni_kernel_fn, mm_unified.h). */
int ts_avx512_fused_gemv(ts_dtype t, const uint8_t *group, int64_t n_native, const uint8_t *act, size_t astride,
                         int64_t cols, int n_tok, float *acc);
void ts_avx512_uni_kernel(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act,
                          size_t astride, int64_t cols, int64_t ub0, int t0, int n_tok, float *acc);
void ts_avx512_quantize_act(const float *x, int64_t cols, void *row);
void ts_avx512_mm_f32(const ts_mm_args *a);
void ts_avx512_mm_f16(const ts_mm_args *a);
void ts_avx512_mm_bf16(const ts_mm_args *a);
float ts_avx512_dot_f32(const float *a, const float *b, int64_t n);
void ts_avx512_axpy_f32(float a, const float *x, float *y, int64_t n);
void ts_avx512_scale_f32(float a, float *x, int64_t n);
float ts_avx512_softmax_exp_f32(float *x, int64_t n, float max);
float ts_avx512_sum_squares_f32(const float *x, int64_t n);
void ts_avx512_rmsnorm_apply_f32(const float *x, const float *weight, float inv_rms, float *out, int64_t n);
void ts_avx512_silu_mul_f32(const float *gate, const float *up, float *out, int64_t n);
void ts_avx512_attention_tile_f32(const ts_attn_tile *t);
void ts_avx512_attention_decode_f32(const ts_attn_tile *t);

#define TS_AVX512_HELPERS                                                                                              \
    .dot_f32 = ts_avx512_dot_f32, .axpy_f32 = ts_avx512_axpy_f32, .scale_f32 = ts_avx512_scale_f32,                    \
    .softmax_exp_f32 = ts_avx512_softmax_exp_f32, .sum_squares_f32 = ts_avx512_sum_squares_f32,                        \
    .rmsnorm_apply_f32 = ts_avx512_rmsnorm_apply_f32, .silu_mul_f32 = ts_avx512_silu_mul_f32,                  \
    .attention_tile_f32 = ts_avx512_attention_tile_f32, .attention_decode_f32 = ts_avx512_attention_decode_f32
#endif

#endif
