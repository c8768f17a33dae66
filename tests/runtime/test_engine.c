/* The continuous-batching engine: concurrent greedy requests give exactly what each gives alone,
 * cancellation frees everything, limits are enforced, seeds reproduce, callbacks can stop. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/cpu/cpu_backend.h"
#include "runtime/engine.h"
#include "runtime/sequence.h"
#include "support/testlib.h"

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int32_t tokens[512];
    int n;
    ts_finish_reason finish;
    int done;
    int stop_after; /* return TS_EVENT_STOP after this many tokens (0: never) */
} collector;

static int on_token(void *ctx, const ts_token_event *ev) {
    collector *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (ev->token >= 0 && c->n < 512) c->tokens[c->n++] = ev->token;
    int verdict = c->stop_after && c->n >= c->stop_after ? TS_EVENT_STOP : TS_EVENT_CONTINUE;
    if (ev->finish != TS_FINISH_NONE) {
        c->finish = ev->finish;
        c->done = 1;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    return verdict;
}

static void wait_done(collector *c) {
    pthread_mutex_lock(&c->lock);
    while (!c->done) pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void collector_init(collector *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

typedef struct {
    ts_backend *be;
    ts_model *m;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    f->be = ts_cpu_backend_create(&co, &err);
    char dir[1024];
    ts_test_shared_path("testdata/qwen3-small", dir, sizeof dir);
    ts_model_options mo;
    ts_model_options_init(&mo);
    mo.max_step_tokens = 64;
    if (ts_model_load(dir, f->be, &mo, &f->m, &err) != 0) fail_msg("%s", err.message);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ts_model_free(f->m);
    f->be->ops->destroy(f->be);
    free(f);
    return 0;
}

static void make_prompt(int seed, int32_t *ids, int n) {
    uint64_t s = (uint64_t)seed * 7919u + 1;
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(ts_test_rand(&s) % 2048);
}

/* greedy reference through the single-sequence path */
static void greedy_alone(ts_model *m, const int32_t *ids, int n, int steps, int32_t *out) {
    ts_error err = {{0}};
    ts_kv_cache cache;
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    assert_int_equal(ts_kv_cache_init_for(&cache, m, n + steps, 1, &err), 0);
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    assert_int_equal(ts_seq_forward(m, &cache, &seq, ids, n, 0, logits, &err), 0);
    for (int i = 0; i < steps; i++) {
        out[i] = ts_argmax(logits, m->cfg.vocab_size);
        if (i + 1 < steps) assert_int_equal(ts_seq_forward(m, &cache, &seq, &out[i], 1, 0, logits, &err), 0);
    }
    free(logits);
    ts_kv_seq_release(&cache, &seq);
    ts_kv_cache_destroy(&cache);
}

static ts_engine *make_engine(ts_model *m, int kv_blocks, int max_waiting) {
    ts_engine_config cfg;
    ts_engine_config_default(&cfg, m);
    cfg.context_length = 512;
    cfg.max_running = 16;
    cfg.step_tokens = 64;
    cfg.kv_blocks = kv_blocks;
    cfg.max_waiting = max_waiting;
    ts_engine *e = NULL;
    ts_error err = {{0}};
    if (ts_engine_create(m, &cfg, &e, &err) != 0) fail_msg("%s", err.message);
    return e;
}

static void test_concurrent_greedy_equals_alone(void **state) {
    fixture *f = *state;
    enum { N = 16, STEPS = 20 };
    ts_engine *e = make_engine(f->m, 256, 64);
    collector col[N];
    ts_engine_seq *h[N];
    int32_t prompts[N][80];
    int lens[N];
    for (int r = 0; r < N; r++) {
        lens[r] = 3 + (r * 37) % 75; /* prompts longer than a step are prefilled in chunks */
        make_prompt(r, prompts[r], lens[r]);
        collector_init(&col[r]);
        ts_engine_request req = {.prompt = prompts[r], .n_prompt = lens[r], .max_tokens = STEPS, .callback = on_token,
                                 .ctx = &col[r], .ignore_eos = 1};
        ts_sampling_params_init(&req.sampling);
        ts_error err = {{0}};
        assert_int_equal(ts_engine_submit(e, &req, &h[r], &err), TS_SUBMIT_OK);
    }
    for (int r = 0; r < N; r++) {
        wait_done(&col[r]);
        ts_engine_release(e, h[r]);
    }
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    assert_int_equal(st.generated_tokens, (uint64_t)N * STEPS);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.kv_blocks_used, 0);
    /* the model runs one forward at a time: the engine must be idle before the reference runs */
    ts_engine_destroy(e);
    for (int r = 0; r < N; r++) {
        assert_int_equal(col[r].finish, TS_FINISH_LENGTH);
        assert_int_equal(col[r].n, STEPS);
        assert_int_equal(col[r].n, STEPS);
        int32_t alone[STEPS];
        greedy_alone(f->m, prompts[r], lens[r], STEPS, alone);
        for (int i = 0; i < STEPS; i++)
            if (alone[i] != col[r].tokens[i]) fail_msg("request %d token %d: batched %d, alone %d", r, i, col[r].tokens[i], alone[i]);
    }
}

static void test_cancel_frees_blocks(void **state) {
    fixture *f = *state;
    ts_engine *e = make_engine(f->m, 64, 8);
    collector c;
    collector_init(&c);
    int32_t ids[10];
    make_prompt(3, ids, 10);
    ts_engine_request req = {.prompt = ids, .n_prompt = 10, .max_tokens = 400, .callback = on_token, .ctx = &c, .ignore_eos = 1};
    ts_sampling_params_init(&req.sampling);
    ts_engine_seq *h;
    ts_error err = {{0}};
    assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_OK);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&c.lock);
        int n = c.n;
        pthread_mutex_unlock(&c.lock);
        if (n >= 3) break;
        usleep(1000);
    }
    ts_engine_cancel(e, h);
    wait_done(&c);
    assert_int_equal(c.finish, TS_FINISH_CANCELLED);
    ts_engine_release(e, h);
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.kv_blocks_used, 0);
    ts_engine_destroy(e);
}

static void test_limits(void **state) {
    fixture *f = *state;
    ts_engine *e = make_engine(f->m, 64, 1);
    static int32_t big[600];
    make_prompt(1, big, 600);
    collector c;
    collector_init(&c);
    ts_engine_request req = {.prompt = big, .n_prompt = 600, .max_tokens = 4, .callback = on_token, .ctx = &c};
    ts_sampling_params_init(&req.sampling);
    ts_engine_seq *h;
    ts_error err = {{0}};
    assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_INVALID);
    assert_non_null(strstr(err.message, "context is 512 tokens"));
    req.n_prompt = 5;
    big[2] = 99999;
    assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_INVALID);
    assert_non_null(strstr(err.message, "outside the vocabulary"));
    assert_int_equal(ts_engine_submit(e, &(ts_engine_request){.n_prompt = 0}, &h, &err), TS_SUBMIT_INVALID);
    ts_engine_destroy(e);
}

static void test_queue_full(void **state) {
    fixture *f = *state;
    /* 4 blocks of 16 tokens: one long request holds the whole cache, the next waits, the third is refused */
    ts_engine *e = make_engine(f->m, 4, 1);
    int32_t ids[8];
    make_prompt(5, ids, 8);
    collector c[3];
    ts_engine_seq *h[3];
    ts_error err = {{0}};
    for (int i = 0; i < 3; i++) {
        collector_init(&c[i]);
        ts_engine_request req = {.prompt = ids, .n_prompt = 8, .max_tokens = 56, .callback = on_token, .ctx = &c[i], .ignore_eos = 1};
        ts_sampling_params_init(&req.sampling);
        ts_submit_status st = ts_engine_submit(e, &req, &h[i], &err);
        if (i < 2) {
            assert_int_equal(st, TS_SUBMIT_OK);
            if (i == 0) /* let the first one be admitted so the second really waits */
                for (int k = 0; k < 2000; k++) {
                    ts_engine_stats s;
                    ts_engine_get_stats(e, &s);
                    if (s.running == 1) break;
                    usleep(1000);
                }
        } else {
            assert_int_equal(st, TS_SUBMIT_QUEUE_FULL);
            assert_non_null(strstr(err.message, "queue is full"));
        }
    }
    for (int i = 0; i < 2; i++) {
        wait_done(&c[i]);
        assert_int_equal(c[i].n, 56);
        ts_engine_release(e, h[i]);
    }
    for (int i = 0; i < 56; i++) assert_int_equal(c[0].tokens[i], c[1].tokens[i]);
    ts_engine_destroy(e);
}

static void run_sampled(ts_engine *e, uint64_t seed, collector *c) {
    int32_t ids[6];
    make_prompt(11, ids, 6);
    collector_init(c);
    ts_engine_request req = {.prompt = ids, .n_prompt = 6, .max_tokens = 24, .callback = on_token, .ctx = c, .ignore_eos = 1};
    ts_sampling_params_init(&req.sampling);
    req.sampling.temperature = 1.0f;
    req.sampling.top_p = 0.9f;
    req.sampling.top_k = 50;
    req.sampling.has_seed = 1;
    req.sampling.seed = seed;
    ts_engine_seq *h;
    ts_error err = {{0}};
    assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_OK);
    wait_done(c);
    ts_engine_release(e, h);
}

static void test_seed_reproduces(void **state) {
    fixture *f = *state;
    ts_engine *e = make_engine(f->m, 64, 8);
    collector a, b, d;
    run_sampled(e, 1234, &a);
    run_sampled(e, 1234, &b);
    run_sampled(e, 99, &d);
    assert_int_equal(a.n, 24);
    assert_memory_equal(a.tokens, b.tokens, sizeof(int32_t) * 24);
    assert_memory_not_equal(a.tokens, d.tokens, sizeof(int32_t) * 24);
    ts_engine_destroy(e);
}

static void test_callback_stop(void **state) {
    fixture *f = *state;
    ts_engine *e = make_engine(f->m, 64, 8);
    collector c;
    collector_init(&c);
    c.stop_after = 5;
    int32_t ids[4] = {1, 2, 3, 4};
    ts_engine_request req = {.prompt = ids, .n_prompt = 4, .max_tokens = 100, .callback = on_token, .ctx = &c, .ignore_eos = 1};
    ts_sampling_params_init(&req.sampling);
    ts_engine_seq *h;
    ts_error err = {{0}};
    assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_OK);
    wait_done(&c);
    assert_int_equal(c.finish, TS_FINISH_STOP);
    assert_int_equal(c.n, 5);
    ts_engine_release(e, h);
    ts_engine_stats st;
    ts_engine_get_stats(e, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    ts_engine_destroy(e);
}

/* A prompt with no sequence decoding beside it runs in chunks of the model's largest step (64 tokens
 * here), not the decode-time budget (16): 100 tokens in two steps instead of seven, the same tokens. */
static void test_prompt_alone_takes_larger_steps(void **state) {
    fixture *f = *state;
    int32_t ids[100], want[3];
    make_prompt(5, ids, 100);
    greedy_alone(f->m, ids, 100, 3, want);
    for (int budget = 16; budget <= 64; budget += 48) {
        ts_engine_config cfg;
        ts_engine_config_default(&cfg, f->m);
        assert_int_equal(cfg.prefill_step_tokens, 64);
        cfg.context_length = 512;
        cfg.max_running = 4;
        cfg.step_tokens = 16;
        cfg.prefill_step_tokens = budget;
        cfg.kv_blocks = 64;
        ts_engine *e = NULL;
        ts_error err = {{0}};
        if (ts_engine_create(f->m, &cfg, &e, &err) != 0) fail_msg("%s", err.message);
        collector c;
        collector_init(&c);
        ts_engine_request req = {.prompt = ids, .n_prompt = 100, .max_tokens = 3, .callback = on_token, .ctx = &c,
                                 .ignore_eos = 1};
        ts_sampling_params_init(&req.sampling);
        ts_engine_seq *h;
        assert_int_equal(ts_engine_submit(e, &req, &h, &err), TS_SUBMIT_OK);
        wait_done(&c);
        ts_engine_release(e, h);
        ts_engine_stats st;
        ts_engine_get_stats(e, &st);
        /* the prompt, then two decode steps (the first token comes from the prompt's last step) */
        assert_int_equal(st.steps, (budget == 64 ? 2 : 7) + 2);
        assert_int_equal(c.n, 3);
        assert_memory_equal(c.tokens, want, sizeof want);
        ts_engine_destroy(e);
    }
    /* beyond the model's largest step: refused with the numbers */
    ts_engine_config cfg;
    ts_engine_config_default(&cfg, f->m);
    cfg.prefill_step_tokens = 65;
    ts_engine *e = NULL;
    ts_error err = {{0}};
    assert_int_not_equal(ts_engine_create(f->m, &cfg, &e, &err), 0);
    assert_non_null(strstr(err.message, "prompts alone 65; model allows 64"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_greedy_equals_alone), cmocka_unit_test(test_cancel_frees_blocks),
        cmocka_unit_test(test_limits), cmocka_unit_test(test_queue_full), cmocka_unit_test(test_seed_reproduces),
        cmocka_unit_test(test_callback_stop), cmocka_unit_test(test_prompt_alone_takes_larger_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
