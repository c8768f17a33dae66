#include "model/rope.h"

#include <math.h>

void ts_rope_inv_freq(const ts_model_config *c, float *inv_freq) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* transformers: 1 / base ** (arange(0, dim, 2, int64).float() / dim), in float32 */
        float exponent = (float)(2 * i) / (float)c->head_dim;
        inv_freq[i] = 1.0f / powf((float)c->rope_theta, exponent);
    }
    if (c->rope_kind == TS_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] /= (float)c->rope_factor;
    } else if (c->rope_kind == TS_ROPE_LLAMA3) {
        double old_ctx = c->rope_original_max_position;
        double low_wavelen = old_ctx / c->rope_low_freq_factor;
        double high_wavelen = old_ctx / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            double f = inv_freq[i];
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
            inv_freq[i] = (float)f;
        }
    }
}
