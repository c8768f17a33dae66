/* The server's pure pieces: stop-string scanning (earliest match, hold-back of possible beginnings,
 * against a brute-force oracle), KServe tensors (JSON and binary forms, and malformed binary data that
 * must be refused without reading past the buffer), request field readers naming the field, the
 * /proc/stat parser and the Prometheus rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/gen_params.h"
#include "server/kserve_tensor.h"
#include "server/metrics.h"
#include "server/stop_match.h"
#include "support/testlib.h"

static long scan(const char *text, size_t from, size_t *safe, int n, ...) {
    const char *strs[8];
    size_t lens[8];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        strs[i] = va_arg(ap, const char *);
        lens[i] = strlen(strs[i]);
    }
    va_end(ap);
    ts_stop_list l = {strs, lens, n};
    return ts_stop_scan(&l, text, strlen(text), from, safe);
}

static void test_stop_scan_cases(void **state) {
    (void)state;
    size_t safe;
    assert_int_equal(scan("hello world", 0, &safe, 1, "wor"), 6);
    assert_int_equal(safe, 6);
    assert_int_equal(scan("hello wo", 0, &safe, 1, "wor"), -1);
    assert_int_equal(safe, 6); /* "wo" may begin "wor": held back */
    assert_int_equal(scan("hello w", 0, &safe, 1, "xyz"), -1);
    assert_int_equal(safe, 7);
    /* a later, shorter stop completes inside the held-back tail of a longer one */
    assert_int_equal(scan("xxab", 0, &safe, 2, "abcd", "b"), 3);
    assert_int_equal(safe, 3);
    /* the earliest match wins whatever the order of the list */
    assert_int_equal(scan("one two three", 0, &safe, 2, "three", "two"), 4);
    /* text before `from` is not looked at again */
    assert_int_equal(scan("abcabc", 3, &safe, 1, "abc"), 3);
    assert_int_equal(scan("", 0, &safe, 1, "a"), -1);
    assert_int_equal(safe, 0);
}

/* Brute force: the earliest full match, else the first position whose suffix is a prefix of a stop. */
static long oracle(const char *t, size_t len, const char **s, int n, size_t *safe) {
    for (size_t i = 0; i < len; i++)
        for (int k = 0; k < n; k++)
            if (strlen(s[k]) <= len - i && !memcmp(t + i, s[k], strlen(s[k]))) {
                *safe = i;
                return (long)i;
            }
    for (size_t i = 0; i < len; i++)
        for (int k = 0; k < n; k++)
            if (strlen(s[k]) > len - i && !memcmp(t + i, s[k], len - i)) {
                *safe = i;
                return -1;
            }
    *safe = len;
    return -1;
}

static void test_stop_scan_random(void **state) {
    (void)state;
    uint64_t rng = 42;
    char text[64], stops[3][6];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = ts_test_rand(&rng) % 20;
        for (size_t i = 0; i < len; i++) text[i] = (char)('a' + ts_test_rand(&rng) % 3);
        text[len] = 0;
        int n = 1 + (int)(ts_test_rand(&rng) % 3);
        const char *s[3];
        size_t lens[3];
        for (int k = 0; k < n; k++) {
            size_t sl = 1 + ts_test_rand(&rng) % 4;
            for (size_t i = 0; i < sl; i++) stops[k][i] = (char)('a' + ts_test_rand(&rng) % 3);
            stops[k][sl] = 0;
            s[k] = stops[k];
            lens[k] = sl;
        }
        ts_stop_list l = {s, lens, n};
        size_t safe_a, safe_b;
        long a = ts_stop_scan(&l, text, len, 0, &safe_a);
        long b = oracle(text, len, s, n, &safe_b);
        if (a != b || safe_a != safe_b)
            fail_msg("text '%s' stops %d: scan %ld/%zu oracle %ld/%zu", text, n, a, safe_a, b, safe_b);
    }
}

static json_t *parse_params(const char *json, ts_gen_params *p, ts_api_error *e) {
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    assert_non_null(o);
    ts_gen_params_init(p);
    memset(e, 0, sizeof *e);
    if (ts_gen_params_read(o, "parameters.", p, e) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void test_gen_params(void **state) {
    (void)state;
    ts_gen_params p;
    ts_api_error e;
    json_t *o = parse_params("{\"max_tokens\": 7, \"temperature\": 0.5, \"top_k\": 3, \"top_p\": 0.9, \"random_seed\": 11,"
                             " \"stop_words\": [\"a\", \"bc\", \"\"], \"frobnicate\": {}}",
                             &p, &e);
    assert_non_null(o);
    assert_int_equal(p.max_tokens, 7);
    assert_true(p.sampling.temperature == 0.5f && p.sampling.top_k == 3 && p.sampling.has_seed && p.sampling.seed == 11);
    assert_int_equal(p.n_stops, 2); /* the empty string is no stop */
    assert_string_equal(p.stops[1], "bc");
    ts_gen_params_free(&p);
    json_decref(o);
    static const struct {
        const char *json, *param;
    } bad[] = {
        {"{\"temperature\": \"hot\"}", "parameters.temperature"}, {"{\"max_tokens\": 1.5}", "parameters.max_tokens"},
        {"{\"max_tokens\": 0}", "parameters.max_tokens"},         {"{\"top_p\": 0}", "parameters.top_p"},
        {"{\"stop\": [\"a\", 3]}", "parameters.stop"},            {"{\"stop\": {}}", "parameters.stop"},
        {"{\"seed\": true}", "parameters.seed"},                  {"{\"ignore_eos\": 1}", "parameters.ignore_eos"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(parse_params(bad[i].json, &p, &e));
        assert_int_equal(e.status, 400);
        assert_string_equal(e.param, bad[i].param);
        assert_non_null(strstr(e.message, bad[i].param));
        ts_gen_params_free(&p);
    }
}

static void test_kserve_json_and_binary(void **state) {
    (void)state;
    ts_kserve_request r;
    ts_api_error e = {0};
    const char *json = "{\"id\": \"7\", \"inputs\": [{\"name\": \"text_input\", \"datatype\": \"BYTES\", \"shape\": [1, 2],"
                       " \"data\": [[\"ab\", \"c\"]]}, {\"name\": \"max_tokens\", \"datatype\": \"INT32\", \"shape\": [1],"
                       " \"data\": [5]}], \"outputs\": [{\"name\": \"text_output\", \"parameters\": {\"binary_data\": true}}]}";
    assert_int_equal(ts_kserve_parse_request(json, strlen(json), NULL, &r, &e), 0);
    const ts_kserve_tensor *t = ts_kserve_input(&r, "text_input");
    const char *s;
    size_t len;
    assert_int_equal(t->count, 2);
    assert_int_equal(ts_kserve_bytes_at(t, 1, &s, &len, &e), 0);
    assert_true(len == 1 && s[0] == 'c');
    json_t *v = ts_kserve_scalar(ts_kserve_input(&r, "max_tokens"), &e);
    assert_int_equal(json_integer_value(v), 5);
    json_decref(v);
    assert_true(r.outputs[0].binary);
    assert_string_equal(r.id, "7");
    ts_kserve_request_free(&r);

    /* binary: a BYTES tensor of two elements and an INT32 of -3 */
    char body[512];
    const char *hdr = "{\"inputs\": [{\"name\": \"text_input\", \"datatype\": \"BYTES\", \"shape\": [2], \"parameters\":"
                      " {\"binary_data_size\": 11}}, {\"name\": \"top_k\", \"datatype\": \"INT32\", \"shape\": [1],"
                      " \"parameters\": {\"binary_data_size\": 4}}]}";
    size_t hl = strlen(hdr), n = hl;
    memcpy(body, hdr, hl);
    static const unsigned char raw[] = {3, 0, 0, 0, 'x', 'y', 'z', 0, 0, 0, 0, 0xfd, 0xff, 0xff, 0xff};
    memcpy(body + n, raw, sizeof raw);
    n += sizeof raw;
    char hls[32];
    snprintf(hls, sizeof hls, "%zu", hl);
    assert_int_equal(ts_kserve_parse_request(body, n, hls, &r, &e), 0);
    t = ts_kserve_input(&r, "text_input");
    assert_int_equal(ts_kserve_bytes_at(t, 0, &s, &len, &e), 0);
    assert_true(len == 3 && !memcmp(s, "xyz", 3));
    assert_int_equal(ts_kserve_bytes_at(t, 1, &s, &len, &e), 0);
    assert_int_equal(len, 0);
    v = ts_kserve_scalar(ts_kserve_input(&r, "top_k"), &e);
    assert_int_equal(json_integer_value(v), -3);
    json_decref(v);
    ts_kserve_request_free(&r);

    /* every truncation of the binary part is refused, never read past */
    for (size_t cut = hl; cut < n; cut++) {
        char *copy = malloc(cut);
        memcpy(copy, body, cut);
        memset(&e, 0, sizeof e);
        assert_int_not_equal(ts_kserve_parse_request(copy, cut, hls, &r, &e), 0);
        assert_int_equal(e.status, 400);
        ts_kserve_request_free(&r);
        free(copy);
    }
    /* an element length that runs past the data */
    body[hl] = 100;
    assert_int_not_equal(ts_kserve_parse_request(body, n, hls, &r, &e), 0);
    assert_non_null(strstr(e.message, "runs past"));
    ts_kserve_request_free(&r);
    /* a header length beyond the body */
    assert_int_not_equal(ts_kserve_parse_request(body, n, "99999", &r, &e), 0);
    ts_kserve_request_free(&r);
    static const char *const bad[] = {
        "[]", "{\"inputs\": 3}", "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"BYTES\", \"shape\": [2], \"data\": [\"x\"]}]}",
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FLOAT\", \"shape\": [1], \"data\": [1]}]}",
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"INT32\", \"shape\": [-1], \"data\": []}]}",
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"INT32\", \"shape\": [1], \"data\": [\"1\"]}]}",
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"INT32\", \"shape\": [16777216, 16777216], \"data\": []}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        assert_int_not_equal(ts_kserve_parse_request(bad[i], strlen(bad[i]), NULL, &r, &e), 0);
        assert_int_equal(e.status, 400);
        ts_kserve_request_free(&r);
    }
}

static void test_proc_stat_and_render(void **state) {
    (void)state;
    uint64_t busy, total;
    const char *stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4\n";
    assert_int_equal(ts_metrics_parse_proc_stat(stat, strlen(stat), &busy, &total), 0);
    assert_int_equal(total, 980);
    assert_int_equal(busy, 160);
    assert_int_equal(ts_metrics_parse_proc_stat("cpux 1 2", 8, &busy, &total), -1);
    assert_int_equal(ts_metrics_parse_proc_stat("cpu  1 2", 8, &busy, &total), -1);

    ts_model_metrics m;
    ts_model_metrics_init(&m);
    ts_metrics_first_token(&m, 0.03);
    ts_metrics_token_gap(&m, 0.012);
    ts_metrics_request_done(&m, 1, 0.5, 0.1, 0.4);
    ts_metrics_request_refused(&m);
    ts_metrics_rate_sample(&m, 100.0, 0);
    ts_metrics_rate_sample(&m, 102.0, 50);
    ts_metrics_view v;
    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "a\"b");
    snprintf(v.version, sizeof v.version, "1");
    ts_metrics_snapshot(&m, &v);
    v.engine.kv_blocks_total = 10;
    v.engine.kv_blocks_used = 5;
    ts_system_sample sys = {.cpu_utilization = 0.25, .memory_total = 1000, .memory_used = 400};
    ts_sbuf b;
    ts_sbuf_init(&b);
    ts_metrics_render(&b, &v, 1, &sys);
    const char *t = ts_sbuf_str(&b);
    assert_non_null(strstr(t, "nv_inference_request_success{model=\"a\\\"b\",version=\"1\"} 1\n"));
    assert_non_null(strstr(t, "nv_inference_request_failure{model=\"a\\\"b\",version=\"1\"} 1\n"));
    assert_non_null(strstr(t, "nv_inference_request_duration_us{model=\"a\\\"b\",version=\"1\"} 500000\n"));
    assert_non_null(strstr(t, "nv_inference_queue_duration_us{model=\"a\\\"b\",version=\"1\"} 100000\n"));
    assert_non_null(strstr(t, "tessera_time_to_first_token_seconds_bucket{model=\"a\\\"b\",version=\"1\",le=\"0.04\"} 1\n"));
    assert_non_null(strstr(t, "tessera_time_to_first_token_seconds_bucket{model=\"a\\\"b\",version=\"1\",le=\"0.02\"} 0\n"));
    assert_non_null(strstr(t, "tessera_inter_token_latency_seconds_bucket{model=\"a\\\"b\",version=\"1\",le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(t, "tessera_kv_cache_usage_ratio{model=\"a\\\"b\",version=\"1\"} 0.500000\n"));
    assert_non_null(strstr(t, "tessera_generation_tokens_per_second{model=\"a\\\"b\",version=\"1\"} 25.000000\n"));
    assert_non_null(strstr(t, "nv_cpu_utilization 0.250000\n"));
    assert_non_null(strstr(t, "nv_cpu_memory_used_bytes 400\n"));
    assert_null(strstr(t, "nv_gpu_utilization"));
    /* every sample line has a HELP and TYPE for its family before it */
    assert_non_null(strstr(t, "# TYPE tessera_e2e_request_latency_seconds histogram\n"));
    ts_sbuf_free(&b);
    ts_model_metrics_destroy(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_scan_cases),        cmocka_unit_test(test_stop_scan_random),
        cmocka_unit_test(test_gen_params),             cmocka_unit_test(test_kserve_json_and_binary),
        cmocka_unit_test(test_proc_stat_and_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
