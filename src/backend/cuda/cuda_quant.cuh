/* Decoding one group of 32 consecutive weights of a row, for every weight layout the GPU holds.
 * Matrix-vector products, dequantization for cuBLAS and embedding lookups all go through these, so
 * a layout is decoded in exactly one place. */
#ifndef TS_BACKEND_CUDA_QUANT_CUH
#define TS_BACKEND_CUDA_QUANT_CUH

#include "backend/cuda/cuda_common.cuh"

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ void k_scale_min(int j, const uint8_t *q, float *sc, float *m) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* IQ4_NL's grid levels (quant/dtype.c's ts_iq4_nl_values) of the 4 indices in the 4 nibbles of sel, as 4
 * int8 in one word: byte permutes over the 16 levels held as 4 words (-127 -104 -83 -65 | -49 -35 -22 -10 |
 * 1 13 25 38 | 53 69 89 113), low 3 bits of an index within a half, bit 3 the half. A table in constant
 * memory serialized the lanes (8B decode 32 tok/s). The GPU keeps IQ4_NL's indices as Q4_0's codes; the
 * int8 matrix-vector and tensor-core batch kernels look up 4 levels per word (no offset to correct), the
 * float paths decode through the same lookup. */
__device__ __forceinline__ uint32_t iq4_nl_levels4(uint32_t sel) {
    const uint32_t lo = __byte_perm(0xbfad9881u, 0xf6eaddcfu, sel & 0x7777u);
    const uint32_t hi = __byte_perm(0x26190d01u, 0x71594535u, sel & 0x7777u);
    return __byte_perm(lo, hi, 0x3210u | ((sel & 0x8888u) >> 1));
}

/* The same for 4 indices held one per byte (0x0i0i0i0i). */
__device__ __forceinline__ uint32_t iq4_nl_levels4_bytes(uint32_t idx) {
    return iq4_nl_levels4(__byte_perm(idx | (idx >> 4), 0u, 0x4420u));
}

template <int DT>
__device__ __forceinline__ void decode_group(const cuda_weight &w, int64_t row, int g, float v[32]) {
    if (DT == TS_DTYPE_F32) {
        const float4 *p = (const float4 *)(w.q + (size_t)row * w.q_row_bytes) + g * 8;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float4 f = __ldg(p + j);
            v[4 * j] = f.x;
            v[4 * j + 1] = f.y;
            v[4 * j + 2] = f.z;
            v[4 * j + 3] = f.w;
        }
    } else if (DT == TS_DTYPE_F16 || DT == TS_DTYPE_BF16) {
        const uint4 *p = (const uint4 *)(w.q + (size_t)row * w.q_row_bytes) + g * 4;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint4 u = __ldg(p + j);
            uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                uint16_t lo = (uint16_t)(words[k] & 0xffff), hi = (uint16_t)(words[k] >> 16);
                v[8 * j + 2 * k] = DT == TS_DTYPE_F16 ? h2f(lo) : bf2f(lo);
                v[8 * j + 2 * k + 1] = DT == TS_DTYPE_F16 ? h2f(hi) : bf2f(hi);
            }
        }
    } else if (DT == TS_DTYPE_Q8_0) {
        const int4 *p = (const int4 *)(w.q + (size_t)row * w.q_row_bytes) + g * 2;
        float d = group_scale<DT>(w, row * (w.cols / 32) + g);
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int4 u = __ldg(p + j);
            int words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 16; k++) v[16 * j + k] = d * (float)(int8_t)(words[k / 4] >> (8 * (k % 4)));
        }
    } else if (DT == TS_DTYPE_Q4_0 || has_min(DT)) {
        const uint4 u = __ldg((const uint4 *)(w.q + (size_t)row * w.q_row_bytes) + g);
        size_t si = (size_t)row * (w.cols / 32) + g;
        float d, m;
        group_scale_min<DT>(w, si, &d, &m);
        uint32_t words[4] = {u.x, u.y, u.z, u.w};
        /* repacked in natural order: byte k holds elements 2k (low nibble) and 2k + 1 */
#pragma unroll
        for (int k = 0; k < 16; k++) {
            uint32_t byte = (words[k / 4] >> (8 * (k % 4))) & 0xff;
            v[2 * k] = d * (float)(byte & 0x0f) + m;
            v[2 * k + 1] = d * (float)(byte >> 4) + m;
        }
    } else if (grid4(DT)) {
        const uint4 u = __ldg((const uint4 *)(w.q + (size_t)row * w.q_row_bytes) + g);
        float d = group_scale<DT>(w, (size_t)row * (w.cols / 32) + g);
        uint32_t words[4] = {u.x, u.y, u.z, u.w};
        /* natural order: nibble i of a word is element i of its 8 */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t a = iq4_nl_levels4(words[j] & 0xffff), b = iq4_nl_levels4(words[j] >> 16);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                v[8 * j + i] = d * (float)(int8_t)(a >> (8 * i));
                v[8 * j + 4 + i] = d * (float)(int8_t)(b >> (8 * i));
            }
        }
    } else if (DT == TS_DTYPE_Q5_K) { /* GGUF's blocks as they are */
        const uint8_t *b = w.q + (size_t)row * w.q_row_bytes + (size_t)(g / 8) * 176;
        int sub = g % 8;
        float d = h2f(*(const uint16_t *)b), dmin = h2f(*(const uint16_t *)(b + 2));
        float sc, mn;
        k_scale_min(sub, b + 4, &sc, &mn);
        float d1 = d * sc, m1 = dmin * mn;
        const uint8_t *qs = b + 48 + 32 * (sub / 2);
        const uint8_t *qh = b + 16;
        int shift = (sub & 1) * 4;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            int q = (qs[l] >> shift) & 0x0f;
            q += (qh[l] >> sub) & 1 ? 16 : 0;
            v[l] = d1 * (float)q - m1;
        }
    } else if (DT == TS_DTYPE_Q6_K) {
        const uint8_t *b = w.q + (size_t)row * w.q_row_bytes + (size_t)(g / 8) * 210;
        int sub = g % 8, h = sub / 4, gg = sub % 4;
        const uint8_t *ql = b + 64 * h + (gg & 1) * 32;
        const uint8_t *qh = b + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * gg;
        float d = h2f(*(const uint16_t *)(b + 208));
        int nshift = gg >= 2 ? 4 : 0, hshift = 2 * gg;
        float d0 = d * (float)sc[0], d1 = d * (float)sc[1];
#pragma unroll
        for (int l = 0; l < 32; l++) {
            int q = (((ql[l] >> nshift) & 0x0f) | (((qh[l] >> hshift) & 3) << 4)) - 32;
            v[l] = (l < 16 ? d0 : d1) * (float)q;
        }
    }
}

/* Calls f.template operator()<DT>() for the weight's dtype; returns false for a layout with no kernel. */
#define TS_CUDA_DISPATCH_DTYPE(dtype, CALL)                      \
    switch (dtype) {                                             \
    case TS_DTYPE_F32: CALL(TS_DTYPE_F32); break;                \
    case TS_DTYPE_F16: CALL(TS_DTYPE_F16); break;                \
    case TS_DTYPE_BF16: CALL(TS_DTYPE_BF16); break;              \
    case TS_DTYPE_Q8_0: CALL(TS_DTYPE_Q8_0); break;              \
    case TS_DTYPE_Q4_0: CALL(TS_DTYPE_Q4_0); break;              \
    case TS_DTYPE_Q4_1: CALL(TS_DTYPE_Q4_1); break;              \
    case TS_DTYPE_Q4_K: CALL(TS_DTYPE_Q4_K); break;              \
    case TS_DTYPE_Q5_K: CALL(TS_DTYPE_Q5_K); break;              \
    case TS_DTYPE_Q6_K: CALL(TS_DTYPE_Q6_K); break;              \
    case TS_DTYPE_IQ4_NL: CALL(TS_DTYPE_IQ4_NL); break;          \
    case TS_DTYPE_IQ4_XS: CALL(TS_DTYPE_IQ4_XS); break;          \
    default: break;                                              \
    }

#endif
