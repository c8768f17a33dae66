/* Mixture-of-experts routing as Hugging Face's Qwen3-MoE does it, shared by every backend (header-only so
 * that the separately built CUDA module can use it too): softmax over the router logits in float, the
 * top-k experts by probability (ties to the lower index, as torch.topk), optionally renormalised; then
 * the tokens grouped by expert. */
#ifndef TS_BACKEND_MOE_ROUTE_H
#define TS_BACKEND_MOE_ROUTE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* logits [n][E] are overwritten with probabilities; sel/weights receive [n][K]. */
static inline void ts_moe_route(float *logits, int n, int E, int K, int norm_topk_prob, int32_t *sel, float *weights) {
    for (int t = 0; t < n; t++) {
        float *lg = logits + (size_t)t * (size_t)E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) mx = lg[e] > mx ? lg[e] : mx;
        double sum = 0;
        for (int e = 0; e < E; e++) {
            lg[e] = expf(lg[e] - mx);
            sum += lg[e];
        }
        for (int e = 0; e < E; e++) lg[e] = (float)(lg[e] / sum);
        float total = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++) taken |= sel[(size_t)t * K + j] == e;
                if (!taken && (best < 0 || lg[e] > lg[best])) best = e;
            }
            sel[(size_t)t * K + k] = best;
            weights[(size_t)t * K + k] = lg[best];
            total += lg[best];
        }
        if (norm_topk_prob)
            for (int k = 0; k < K; k++) weights[(size_t)t * K + k] /= total;
    }
}

/* The tokens routed to expert e and their weights; returns how many. */
static inline int ts_moe_tokens_of(int e, const int32_t *sel, const float *weights, int n, int K, int32_t *rows,
                                   float *row_weights) {
    int cnt = 0;
    for (int t = 0; t < n; t++)
        for (int k = 0; k < K; k++)
            if (sel[(size_t)t * K + k] == e) {
                rows[cnt] = t;
                row_weights[cnt] = weights[(size_t)t * K + k];
                cnt++;
            }
    return cnt;
}

#endif
