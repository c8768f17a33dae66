/* Checking a model under ../shared/testdata against its Hugging Face reference on a given backend:
 * last-position logits, top-1 at every position where the reference's gap exceeds the margin, greedy
 * tokens decoded incrementally up to the first step whose recorded margin is below it, and per-layer
 * hidden states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/sampler.h"
#include "runtime/sequence.h"
#include "support/reference_check.h"
#include "support/testlib.h"


typedef struct {
    float *data;
    int layers, seq, hidden;
    ts_model *m;
} hidden_capture;

/* x is in the memory of the backend running that layer (device memory on a GPU; either side of a
 * split model): copied out through it. */
static void capture(void *ctx, int layer, const float *x, int n, int dim) {
    hidden_capture *h = ctx;
    assert_int_equal(n, h->seq);
    assert_int_equal(dim, h->hidden);
    assert_true(layer >= 0 && layer < h->layers);
    h->m->be->ops->to_host(h->m->be, h->data + (size_t)layer * n * dim, x, (size_t)n * dim * sizeof(float));
}

int32_t ts_test_decode_step(struct ts_model *m, struct ts_kv_cache *c, struct ts_kv_seq *s, int32_t tok, int on_device,
                            float *logits) {
    ts_error err = {{0}};
    if (ts_kv_seq_reserve(c, s, s->num_tokens + 1, &err) != 0) fail_msg("%s", err.message);
    int32_t pos = s->num_tokens, row = 0, next = -1;
    ts_seq_view view = {.first_token = 0, .n_tokens = 1, .start_pos = pos, .n_blocks = s->num_blocks, .blocks = s->blocks};
    ts_step st = {.n_tokens = 1, .tokens = &tok, .positions = &pos, .n_seqs = 1, .seqs = &view, .n_logits = 1,
                  .logit_rows = &row, .host_kv = c->host_store};
    int rc = on_device ? ts_model_forward_greedy(m, c->store, &st, logits, &next, &err)
                       : ts_model_forward(m, c->store, &st, logits, NULL, NULL, &err);
    if (rc != 0) fail_msg("%s", err.message);
    s->num_tokens++;
    return on_device ? next : ts_argmax(logits, m->cfg.vocab_size);
}

static void check_case(ts_model *m, const char *dir, const json_t *c, int index, const ts_ref_tolerance *tol) {
    int n = 0;
    int32_t *ids = ts_test_json_ids(json_object_get(c, "input_ids"), &n);
    int vocab = m->cfg.vocab_size;
    char path[1024];
    ts_error err = {{0}};
    ts_kv_cache cache;
    assert_int_equal(ts_kv_cache_init_for(&cache, m, n + 32, 1, &err), 0);

    /* logits at every position: the last row against the stored logits, top-1 against top8 */
    float *all = malloc((size_t)n * vocab * sizeof(float));
    ts_kv_seq seq;
    ts_kv_seq_init(&seq);
    if (ts_seq_forward(m, &cache, &seq, ids, n, 1, all, &err) != 0) fail_msg("%s", err.message);
    ts_kv_seq_release(&cache, &seq);
    if (snprintf(path, sizeof path, "%s/reference/%s", dir, json_string_value(json_object_get(c, "last_logits_file"))) >=
        (int)sizeof path)
        fail_msg("%s: the reference logits path does not fit in %zu bytes", dir, sizeof path);
    size_t len = 0;
    float *ref = ts_test_read_file(path, &len);
    assert_int_equal(len, (size_t)vocab * sizeof(float));
    double rel = ts_test_rel_l2(all + (size_t)(n - 1) * vocab, ref, (size_t)vocab);
    if (rel > tol->logits) fail_msg("%s case %d: last-position logits relative error %.3g > %g", dir, index, rel, tol->logits);
    const json_t *top8 = json_object_get(c, "top8_per_position");
    assert_int_equal(json_array_size(top8), (size_t)n);
    for (int p = 0; p < n; p++) {
        const json_t *row = json_array_get(top8, (size_t)p);
        double l1 = json_real_value(json_array_get(json_array_get(row, 1), 1));
        double l0 = json_real_value(json_array_get(json_array_get(row, 0), 1));
        int want = (int)json_integer_value(json_array_get(json_array_get(row, 0), 0));
        int got = ts_argmax(all + (size_t)p * vocab, vocab);
        if (l0 - l1 > tol->margin && got != want)
            fail_msg("%s case %d position %d: top-1 %d, reference %d (gap %.4g) on %s", dir, index, p, got, want, l0 - l1,
                     m->be->description);
    }
    free(ref);

    /* greedy decoding, one token at a time through the KV cache */
    const json_t *greedy = json_object_get(c, "greedy_24"), *margins = json_object_get(c, "greedy_top1_minus_top2");
    float *logits = malloc((size_t)vocab * sizeof(float));
    ts_kv_seq_init(&seq);
    if (ts_seq_forward(m, &cache, &seq, ids, n, 0, logits, &err) != 0) fail_msg("%s", err.message);
    int32_t tok = ts_argmax(logits, vocab);
    for (size_t step = 0; step < json_array_size(greedy); step++) {
        int want = (int)json_integer_value(json_array_get(greedy, step));
        if (json_real_value(json_array_get(margins, step)) < tol->margin) break; /* a different choice is legitimate */
        if (tok != want) fail_msg("%s case %d greedy step %zu: %d, reference %d on %s", dir, index, step, tok, want,
                                  m->be->description);
        tok = ts_test_decode_step(m, &cache, &seq, tok, 1, logits);
    }
    ts_kv_seq_release(&cache, &seq);
    free(logits);

    /* per-layer hidden states, where the reference has them */
    const json_t *hfile = json_object_get(c, "hidden_states_file");
    if (hfile) {
        const json_t *shape = json_object_get(c, "hidden_states_shape");
        hidden_capture h = {NULL, (int)json_integer_value(json_array_get(shape, 0)),
                            (int)json_integer_value(json_array_get(shape, 1)),
                            (int)json_integer_value(json_array_get(shape, 2)), m};
        assert_int_equal(h.layers, m->cfg.num_layers + 1);
        h.data = calloc((size_t)h.layers * h.seq * h.hidden, sizeof(float));
        if (snprintf(path, sizeof path, "%s/reference/%s", dir, json_string_value(hfile)) >= (int)sizeof path)
            fail_msg("%s: the reference hidden-states path does not fit in %zu bytes", dir, sizeof path);
        float *href = ts_test_read_file(path, &len);
        assert_int_equal(len, (size_t)h.layers * h.seq * h.hidden * sizeof(float));
        int32_t *positions = malloc((size_t)n * sizeof(int32_t));
        int32_t last = n - 1;
        for (int i = 0; i < n; i++) positions[i] = i;
        ts_kv_seq_init(&seq);
        assert_int_equal(ts_kv_seq_reserve(&cache, &seq, n, &err), 0);
        ts_seq_view view = {0, n, 0, seq.num_blocks, seq.blocks};
        ts_step st = {n, ids, positions, 1, &view, 1, &last, cache.host_store};
        float *lg = malloc((size_t)vocab * sizeof(float));
        if (ts_model_forward(m, cache.store, &st, lg, capture, &h, &err) != 0) fail_msg("%s", err.message);
        for (int l = 0; l < h.layers; l++) {
            size_t off = (size_t)l * h.seq * h.hidden;
            double r = ts_test_rel_l2(h.data + off, href + off, (size_t)h.seq * h.hidden);
            if (r > tol->hidden) fail_msg("%s case %d hidden state %d: relative error %.3g > %g", dir, index, l, r, tol->hidden);
        }
        ts_kv_seq_release(&cache, &seq);
        free(lg);
        free(positions);
        free(href);
        free(h.data);
    }
    free(all);
    free(ids);
    ts_kv_cache_destroy(&cache);
}

void ts_test_check_model_reference(ts_backend *be, const char *name, const ts_ref_tolerance *tol) {
    ts_test_check_model_reference_opts(be, name, tol, NULL);
}

void ts_test_check_model_reference_opts(ts_backend *be, const char *name, const ts_ref_tolerance *tol,
                                        const ts_model_options *opt) {
    char dir[1024], path[1200];
    if (name[0] == '/') {
        snprintf(dir, sizeof dir, "%s", name);
    } else {
        ts_test_shared_path("testdata", dir, sizeof dir);
        strncat(dir, "/", sizeof dir - strlen(dir) - 1);
        strncat(dir, name, sizeof dir - strlen(dir) - 1);
    }
    ts_error err = {{0}};
    ts_model *m = NULL;
    if (ts_model_load(dir, be, opt, &m, &err) != 0) fail_msg("%s", err.message);
    snprintf(path, sizeof path, "%s/reference/cases.json", dir);
    json_t *root = ts_test_load_json(path);
    const json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) > 0);
    for (size_t i = 0; i < json_array_size(cases); i++) check_case(m, dir, json_array_get(cases, i), (int)i, tol);
    json_decref(root);
    ts_model_free(m);
}

