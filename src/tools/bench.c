#include "tools/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "runtime/sequence.h"

static double peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb * 1024.0;
}

/* Bytes of weights one decode step streams: everything but the embedding table (only rows are read),
 * except that a tied table is read whole as the output head; of MoE experts only top_k of num_experts. */
static double decode_weight_bytes(const ts_model *m) {
    double total = 0;
    const ts_model_config *c = &m->cfg;
    total += (double)m->output.row_bytes * (double)m->output.rows;
    for (int l = 0; l < c->num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        const ts_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down, &L->router};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) total += (double)ws[i]->row_bytes * (double)ws[i]->rows;
        if (L->is_moe) {
            double experts = 0;
            for (int e = 0; e < c->num_experts; e++)
                experts += (double)L->expert_gate[e].row_bytes * L->expert_gate[e].rows +
                           (double)L->expert_up[e].row_bytes * L->expert_up[e].rows +
                           (double)L->expert_down[e].row_bytes * L->expert_down[e].rows;
            total += experts * c->num_experts_per_tok / c->num_experts;
        }
    }
    return total;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(const ts_bench_run *runs, int n, size_t offset) {
    double v[64];
    for (int i = 0; i < n; i++) v[i] = *(const double *)((const char *)&runs[i] + offset);
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int one_run(ts_model *m, ts_kv_cache *cache, const ts_bench_options *o, unsigned seed, ts_bench_run *r,
                   ts_error *err) {
    int B = o->batch, P = o->prompt_tokens, G = o->gen_tokens, vocab = m->cfg.vocab_size;
    ts_kv_seq *seqs = calloc((size_t)B, sizeof *seqs);
    int32_t *prompt = malloc((size_t)P * sizeof(int32_t));
    int32_t *tokens = malloc((size_t)B * sizeof(int32_t)), *positions = malloc((size_t)B * sizeof(int32_t));
    int32_t *rows = malloc((size_t)(B > P ? B : P) * sizeof(int32_t));
    ts_seq_view *views = calloc((size_t)B, sizeof *views);
    float *logits = malloc((size_t)B * vocab * sizeof(float));
    ts_sampler **samplers = calloc((size_t)B, sizeof *samplers);
    ts_draw *draws = calloc((size_t)B, sizeof *draws);
    int rc = -1;
    if (!seqs || !prompt || !tokens || !positions || !rows || !views || !logits || !samplers || !draws) {
        ts_fail(err, "out of memory");
        goto done;
    }
    for (int b = 0; b < B; b++) {
        ts_kv_seq_init(&seqs[b]);
        if (ts_kv_seq_reserve(cache, &seqs[b], P + G, err) != 0) goto done;
    }
    /* prefill: each sequence's prompt in chunks of the model's step size */
    double t0 = ts_now_seconds();
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < P; i++) {
            seed = seed * 1664525u + 1013904223u;
            prompt[i] = (int32_t)(seed % (unsigned)vocab);
        }
        int chunk = m->opt.max_step_tokens;
        for (int off = 0; off < P; off += chunk) {
            int len = P - off < chunk ? P - off : chunk;
            int32_t pos[4096];
            for (int i = 0; i < len; i++) pos[i] = off + i;
            int32_t last = len - 1;
            ts_seq_view v = {0, len, off, seqs[b].num_blocks, seqs[b].blocks};
            ts_step st = {len, prompt + off, pos, 1, &v, off + len == P ? 1 : 0, &last, cache->host_store};
            if (ts_model_forward_greedy(m, cache->store, &st, logits + (size_t)b * vocab, &tokens[b], err) != 0)
                goto done;
        }
    }
    double t1 = ts_now_seconds();
    /* decode: one token per sequence per step */
    ts_sampling_params sp;
    ts_sampling_params_init(&sp);
    sp.temperature = o->temperature;
    sp.top_k = o->top_k;
    sp.top_p = o->top_p;
    sp.has_seed = 1;
    for (int b = 0; b < B; b++) {
        sp.seed = seed + (unsigned)b;
        if (!(samplers[b] = ts_sampler_create(&sp, NULL, 0))) {
            ts_fail(err, "out of memory");
            goto done;
        }
    }
    const int sampled = o->temperature > 0.0f, on_device = sampled && !o->host_sampling && ts_model_can_draw(m);
    for (int g = 0; g < G; g++) {
        for (int b = 0; b < B; b++) {
            positions[b] = P + g;
            rows[b] = b;
            views[b] = (ts_seq_view){b, 1, P + g, seqs[b].num_blocks, seqs[b].blocks};
        }
        ts_step st = {B, tokens, positions, B, views, B, rows, cache->host_store};
        if (on_device) {
            for (int b = 0; b < B; b++) ts_sampler_device_draw(samplers[b], &draws[b]);
            if (ts_model_forward_draw(m, cache->store, &st, draws, NULL, 0, NULL, NULL, tokens, err) != 0) goto done;
        } else if (sampled) {
            if (ts_model_forward(m, cache->store, &st, logits, NULL, NULL, err) != 0) goto done;
            for (int b = 0; b < B; b++) tokens[b] = ts_sampler_sample(samplers[b], logits + (size_t)b * vocab, vocab, NULL);
        } else if (ts_model_forward_greedy(m, cache->store, &st, logits, tokens, err) != 0) {
            goto done;
        }
        for (int b = 0; b < B; b++) ts_sampler_accept(samplers[b], tokens[b]);
    }
    double t2 = ts_now_seconds();
    r->prefill_seconds = t1 - t0;
    r->decode_seconds = t2 - t1;
    r->seconds = t2 - t0;
    r->prefill_tps = (double)B * P / r->prefill_seconds;
    r->decode_tps = G > 0 ? (double)B * G / r->decode_seconds : 0;
    r->overall_tps = (double)B * (P + G) / r->seconds;
    r->peak_host_bytes = peak_rss_bytes();
    ts_backend_stats bs;
    m->be->ops->stats(m->be, &bs);
    r->device_bytes = (double)(bs.weight_bytes + bs.buffer_bytes);
    rc = 0;
done:
    for (int b = 0; seqs && b < B; b++) ts_kv_seq_release(cache, &seqs[b]);
    free(seqs);
    free(prompt);
    free(tokens);
    free(positions);
    free(rows);
    free(views);
    free(logits);
    for (int b = 0; samplers && b < B; b++) ts_sampler_free(samplers[b]);
    free(samplers);
    free(draws);
    return rc;
}

int ts_bench_run_all(ts_model *m, const ts_bench_options *o, ts_bench_result *out, ts_error *err) {
    memset(out, 0, sizeof *out);
    if (o->runs < 1 || o->runs > 64 || o->batch < 1 || o->prompt_tokens < 1 || o->gen_tokens < 0)
        return ts_fail(err, "bench: runs 1..64, batch >= 1, prompt tokens >= 1");
    if (o->batch > m->opt.max_step_tokens)
        return ts_fail(err, "bench: a batch of %d exceeds the model's step of %d tokens", o->batch, m->opt.max_step_tokens);
    snprintf(out->device, sizeof out->device, "%s", m->be->description);
    if (o->roofline && m->be->ops->roofline) m->be->ops->roofline(m->be, &out->roof);
    ts_kv_cache cache;
    int per_seq = (o->prompt_tokens + o->gen_tokens + 15) / 16;
    if (ts_kv_cache_init_model(&cache, m, 16, per_seq * o->batch, err) != 0) return -1;
    /* a warm-up run first: weights paged in, kernels loaded, scratch allocated */
    ts_bench_run warm;
    unsigned seed = o->seed ? o->seed : 1u;
    int rc = one_run(m, &cache, o, seed, &warm, err);
    for (int i = 0; rc == 0 && i < o->runs; i++) rc = one_run(m, &cache, o, seed + 7919u * (unsigned)(i + 1), &out->runs[i], err);
    ts_kv_cache_destroy(&cache);
    if (rc != 0) return -1;
    out->n_runs = o->runs;
#define MED(field) out->median.field = median_of(out->runs, o->runs, offsetof(ts_bench_run, field))
    MED(seconds);
    MED(prefill_seconds);
    MED(decode_seconds);
    MED(prefill_tps);
    MED(decode_tps);
    MED(overall_tps);
    MED(peak_host_bytes);
    MED(device_bytes);
#undef MED
    double kv_row = 2.0 * m->cfg.num_layers * m->cfg.num_kv_heads * m->cfg.head_dim * sizeof(float);
    double mean_len = o->prompt_tokens + o->gen_tokens / 2.0;
    out->decode_bytes_per_step = decode_weight_bytes(m) + o->batch * mean_len * kv_row;
    if (out->roof.read_gbps > 0)
        out->decode_bound_tps = o->batch * out->roof.read_gbps * 1e9 / out->decode_bytes_per_step;
    double params = 0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        const ts_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wqkv, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) params += (double)ws[i]->rows * ws[i]->cols;
        if (L->is_moe) params += 3.0 * m->cfg.num_experts_per_tok * m->cfg.moe_intermediate_size * m->cfg.hidden_size;
    }
    params += (double)m->output.rows * m->output.cols;
    out->prefill_flops_per_token = 2.0 * params;
    return 0;
}

static void human_bytes(double b, char *buf, size_t cap) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
}

void ts_bench_print(const ts_bench_result *r, const ts_bench_options *o, const ts_model *m, int json) {
    if (json) {
        printf("{\"device\": \"%s\", \"prompt_tokens\": %d, \"gen_tokens\": %d, \"batch\": %d, \"runs\": [", r->device,
               o->prompt_tokens, o->gen_tokens, o->batch);
        for (int i = 0; i <= r->n_runs; i++) {
            const ts_bench_run *x = i < r->n_runs ? &r->runs[i] : &r->median;
            printf("%s{\"run\": \"%s%d\", \"seconds\": %.6f, \"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
                   "\"tokens_per_s\": %.2f, \"peak_host_bytes\": %.0f, \"device_bytes\": %.0f}",
                   i ? ", " : "", i < r->n_runs ? "" : "median", i < r->n_runs ? i + 1 : 0, x->seconds, x->prefill_tps,
                   x->decode_tps, x->overall_tps, x->peak_host_bytes, x->device_bytes);
        }
        printf("], \"read_gbps\": %.1f, \"matmul_tflops\": %.1f, \"decode_bound_tokens_per_s\": %.1f, "
               "\"decode_fraction_of_bound\": %.3f, \"prefill_tflops\": %.2f}\n",
               r->roof.read_gbps, r->roof.matmul_tflops, r->decode_bound_tps,
               r->decode_bound_tps > 0 ? r->median.decode_tps / r->decode_bound_tps : 0,
               r->median.prefill_tps * r->prefill_flops_per_token / 1e12);
        return;
    }
    printf("model: %s (%s, %d layers, hidden %d; %.2f GiB of weights as stored)\n", m->path, ts_arch_name(m->cfg.arch),
           m->cfg.num_layers, m->cfg.hidden_size, (double)m->weight_bytes / (1024.0 * 1024 * 1024));
    printf("workload: %d prompt tokens, %d generated, batch %d\n\n", o->prompt_tokens, o->gen_tokens, o->batch);
    printf("| Test Run | Inference Time | Prefill tok/s | Decode tok/s | Tokens/Second | Memory Usage | Device |\n");
    printf("|----------|----------------|---------------|--------------|---------------|--------------|--------|\n");
    for (int i = 0; i <= r->n_runs; i++) {
        const ts_bench_run *x = i < r->n_runs ? &r->runs[i] : &r->median;
        char mem[32], name[32];
        human_bytes(m->be->name[0] == 'c' && !strcmp(m->be->name, "cpu") ? x->peak_host_bytes : x->device_bytes, mem,
                    sizeof mem);
        if (i < r->n_runs) snprintf(name, sizeof name, "Test %d", i + 1);
        else snprintf(name, sizeof name, "**Median**");
        printf("| %-8s | %13.3fs | %13.1f | %12.2f | %13.2f | %12s | %s |\n", name, x->seconds, x->prefill_tps,
               x->decode_tps, x->overall_tps, mem, r->device);
    }
    if (r->roof.read_gbps > 0) {
        printf("\nreference (same run): %.1f GB/s memory bandwidth", r->roof.read_gbps);
        if (r->roof.matmul_tflops > 0) printf(", %.0f TFLOP/s bf16 matrix rate", r->roof.matmul_tflops);
        printf(" (%s)\n", r->roof.method);
        printf("decode: %.2f GB read per step -> bound %.1f tokens/s; measured %.1f = %.0f%% of the bound\n",
               r->decode_bytes_per_step / 1e9, r->decode_bound_tps, r->median.decode_tps,
               100.0 * r->median.decode_tps / r->decode_bound_tps);
        double tf = r->median.prefill_tps * r->prefill_flops_per_token / 1e12;
        printf("prefill: %.2f TFLOP/s of matrix products", tf);
        if (r->roof.matmul_tflops > 0) printf(" = %.1f%% of the measured bf16 rate", 100.0 * tf / r->roof.matmul_tflops);
        printf("\n");
    }
}
