#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/splitmix.h"

typedef struct {
    int32_t token;
    int32_t prompt_count;
    int32_t output_count;
} token_count;

struct ts_sampler {
    ts_sampling_params p;
    uint64_t rng[4];
    token_count *counts; /* open addressing keyed by token; token -1 = empty */
    int cap, used;
    int32_t *cand;
    float *cand_val;
    int cand_cap;
};

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t next_u64(ts_sampler *s) {
    uint64_t *r = s->rng;
    uint64_t result = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

static double next_unit(ts_sampler *s) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

void ts_sampling_params_init(ts_sampling_params *p) {
    memset(p, 0, sizeof *p);
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

static token_count *find_slot(ts_sampler *s, int32_t token) {
    unsigned h = ((unsigned)token * 2654435761u) & (unsigned)(s->cap - 1);
    while (s->counts[h].token != -1 && s->counts[h].token != token) h = (h + 1) & (unsigned)(s->cap - 1);
    return &s->counts[h];
}

static int grow(ts_sampler *s) {
    token_count *old = s->counts;
    int old_cap = s->cap;
    int cap = old_cap ? old_cap * 2 : 256;
    token_count *n = malloc((size_t)cap * sizeof *n);
    if (!n) return -1;
    for (int i = 0; i < cap; i++) n[i].token = -1;
    s->counts = n;
    s->cap = cap;
    for (int i = 0; i < old_cap; i++)
        if (old[i].token != -1) *find_slot(s, old[i].token) = old[i];
    free(old);
    return 0;
}

static void count_token(ts_sampler *s, int32_t token, int output) {
    if ((s->used + 1) * 2 > s->cap && grow(s) != 0) return;
    token_count *c = find_slot(s, token);
    if (c->token == -1) {
        c->token = token;
        c->prompt_count = c->output_count = 0;
        s->used++;
    }
    if (output) c->output_count++;
    else c->prompt_count++;
}

ts_sampler *ts_sampler_create(const ts_sampling_params *p, const int32_t *prompt, int n_prompt) {
    ts_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    uint64_t seed = p->has_seed ? p->seed : 0;
    if (!p->has_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)s;
    }
    for (int i = 0; i < 4; i++) s->rng[i] = ts_splitmix64(&seed);
    if (grow(s) != 0) {
        free(s);
        return NULL;
    }
    if (p->repetition_penalty != 1.0f)
        for (int i = 0; i < n_prompt; i++) count_token(s, prompt[i], 0);
    return s;
}

void ts_sampler_free(ts_sampler *s) {
    if (!s) return;
    free(s->counts);
    free(s->cand);
    free(s->cand_val);
    free(s);
}

void ts_sampler_accept(ts_sampler *s, int32_t token) { count_token(s, token, 1); }

int ts_sampler_is_greedy(const ts_sampler *s) {
    const ts_sampling_params *p = &s->p;
    return (p->temperature <= 0.0f || p->top_k == 1) && p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f &&
           p->frequency_penalty == 0.0f;
}

static void fill_logprobs(const float *logits, int vocab, int32_t chosen, int n_top, ts_token_logprobs *lp) {
    float mx = logits[ts_argmax(logits, vocab)];
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) sum += exp((double)(logits[i] - mx));
    float lse = mx + (float)log(sum);
    lp->token = chosen;
    lp->logprob = logits[chosen] - lse;
    if (n_top > TS_MAX_TOP_LOGPROBS) n_top = TS_MAX_TOP_LOGPROBS;
    if (n_top > vocab) n_top = vocab;
    lp->n_top = 0;
    /* Insertion into a short sorted list: n_top is at most 20. */
    for (int i = 0; i < vocab; i++) {
        float v = logits[i];
        if (lp->n_top == n_top && (n_top == 0 || v <= lp->top_logprobs[n_top - 1])) continue;
        int j = lp->n_top < n_top ? lp->n_top++ : n_top - 1;
        while (j > 0 && lp->top_logprobs[j - 1] < v) {
            lp->top_logprobs[j] = lp->top_logprobs[j - 1];
            lp->top_tokens[j] = lp->top_tokens[j - 1];
            j--;
        }
        lp->top_logprobs[j] = v;
        lp->top_tokens[j] = i;
    }
    for (int i = 0; i < lp->n_top; i++) lp->top_logprobs[i] -= lse;
}

static int has_penalties(const ts_sampling_params *p) {
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

/* What a table entry subtracts after the repetition penalty (0 for a token not in the output). */
static float penalty_sub(const ts_sampling_params *p, const token_count *c) {
    return c->output_count > 0 ? p->presence_penalty + p->frequency_penalty * (float)c->output_count : 0.0f;
}

static void apply_penalties(ts_sampler *s, float *logits, int vocab) {
    const ts_sampling_params *p = &s->p;
    if (!has_penalties(p)) return;
    for (int i = 0; i < s->cap; i++) {
        const token_count *c = &s->counts[i];
        if (c->token < 0 || c->token >= vocab) continue;
        logits[c->token] = ts_penalized(logits[c->token], p->repetition_penalty, penalty_sub(p, c));
    }
}

int ts_sampler_penalty_count(const ts_sampler *s) { return has_penalties(&s->p) ? s->used : 0; }

int ts_sampler_penalties(const ts_sampler *s, ts_penalty *out) {
    if (!has_penalties(&s->p)) return 0;
    int n = 0;
    for (int i = 0; i < s->cap; i++)
        if (s->counts[i].token >= 0) out[n++] = (ts_penalty){s->counts[i].token, penalty_sub(&s->p, &s->counts[i])};
    return n;
}

static int cmp_desc(const void *a, const void *b, void *vals) {
    const float *v = vals;
    float x = v[*(const int32_t *)a], y = v[*(const int32_t *)b];
    if (x > y) return -1;
    if (x < y) return 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int ts_draw_candidates(const ts_draw *d, const float *logits, int vocab, int32_t *cand, float *z) {
    float inv_t = 1.0f / d->temperature;
    float mx = logits[ts_argmax(logits, vocab)];
    int n = 0;
    for (int i = 0; i < vocab; i++) {
        z[i] = (logits[i] - mx) * inv_t;
        if (z[i] >= -TS_DRAW_WINDOW) cand[n++] = i;
    }
    qsort_r(cand, (size_t)n, sizeof(int32_t), cmp_desc, z);
    if (d->top_k > 0 && d->top_k < n) n = d->top_k;
    if (d->top_p < 1.0f) {
        /* probabilities of the survivors, normalised over the candidate set */
        double total = 0.0;
        for (int i = 0; i < n; i++) total += exp((double)z[cand[i]]);
        double acc = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += exp((double)z[cand[i]]) / total;
            if (acc >= d->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (d->min_p > 0.0f) {
        /* the best candidate has z = 0, so its relative probability is 1 */
        int keep = 1;
        while (keep < n && exp((double)z[cand[keep]]) >= d->min_p) keep++;
        n = keep;
    }
    return n;
}

static void draw_params(const ts_sampling_params *p, ts_draw *d) {
    d->temperature = p->temperature;
    d->top_k = p->top_k;
    d->top_p = p->top_p;
    d->min_p = p->min_p;
    d->u = 0.0;
    d->repetition_penalty = p->repetition_penalty;
    d->pen_first = d->pen_count = 0;
}

static int draw_is_greedy(const ts_draw *d) { return d->temperature <= 0.0f || d->top_k == 1; }

void ts_sampler_device_draw(ts_sampler *s, ts_draw *d) {
    draw_params(&s->p, d);
    if (!draw_is_greedy(d)) d->u = next_unit(s);
}

int32_t ts_sampler_sample(ts_sampler *s, float *logits, int vocab, ts_token_logprobs *lp) {
    float *raw = NULL;
    if (lp) {
        raw = malloc((size_t)vocab * sizeof(float));
        if (raw) memcpy(raw, logits, (size_t)vocab * sizeof(float));
    }
    apply_penalties(s, logits, vocab);
    ts_draw d;
    draw_params(&s->p, &d);
    int32_t chosen;
    if (draw_is_greedy(&d)) {
        chosen = ts_argmax(logits, vocab);
    } else {
        if (s->cand_cap < vocab) {
            free(s->cand);
            free(s->cand_val);
            s->cand = malloc((size_t)vocab * sizeof(int32_t));
            s->cand_val = malloc((size_t)vocab * sizeof(float));
            s->cand_cap = s->cand && s->cand_val ? vocab : 0;
        }
        if (!s->cand_cap) {
            chosen = ts_argmax(logits, vocab);
            goto done;
        }
        int n = ts_draw_candidates(&d, logits, vocab, s->cand, s->cand_val);
        double total = 0.0;
        for (int i = 0; i < n; i++) total += exp((double)s->cand_val[s->cand[i]]);
        double r = next_unit(s) * total, acc = 0.0;
        chosen = s->cand[n - 1];
        for (int i = 0; i < n; i++) {
            acc += exp((double)s->cand_val[s->cand[i]]);
            if (r < acc) {
                chosen = s->cand[i];
                break;
            }
        }
    }
done:
    if (lp) fill_logprobs(raw ? raw : logits, vocab, chosen, s->p.top_logprobs, lp);
    free(raw);
    return chosen;
}
