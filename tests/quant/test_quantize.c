/* Quantizers: the reference ones reproduce ggml's quantize_row_*_ref bit for bit (digests recorded
 * from ggml by gen_ggml_ref_digests.py on the same deterministic inputs), the searching ones never do
 * worse than the reference on realistic weights, and tensor conversion handles every source type.
 * Run with arguments it is also the helper the Python scripts drive (see helper_main). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/files.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "quant/quantize.h"
#include "quant/scheme.h"

static uint64_t g_state;

static uint64_t splitmix(void) {
    g_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = g_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(void) { return (double)(splitmix() >> 40) * (1.0 / 16777216.0); }

/* Must stay identical to make_case() in gen_ggml_ref_digests.py. */
static void make_case(int kind, float *out, int n, int block) {
    g_state = 1000u + (uint64_t)kind;
    for (int i = 0; i < n; i++) {
        double u = uniform01(), v;
        switch (kind) {
        case 0: v = 2 * u - 1; break;
        case 1: {
            double a = uniform01();
            double b = uniform01();
            double c = uniform01();
            v = (u + a + b + c - 2) * 0.05;
            break;
        }
        case 2: v = (2 * u - 1) * 3e4; break;
        case 3: v = (2 * u - 1) * 1e-6; break;
        case 4: v = 0.0; break;
        case 5: {
            int b = i / block;
            v = b == 0 ? 0.37 : -1.25 * (b + 1);
            break;
        }
        case 6:
            v = (2 * u - 1) * 0.01;
            if (i % 37 == 0) v *= 50;
            break;
        case 7: v = u; break;
        default: v = uniform01() < 0.5 ? 0.0 : 2 * u - 1; break;
        }
        out[i] = (float)v;
    }
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static int case_len(ts_dtype t) {
    int bs = ts_dtype_get(t)->block_size;
    return bs == 1 ? 1001 : bs == 32 ? 32 * 37 : 256 * 5;
}

static void test_reference_matches_ggml_digests(void **state) {
    (void)state;
    char path[4096], *text = NULL;
    snprintf(path, sizeof path, "%s/tests/quant/ggml_ref_digests.txt", TESSERA_TEST_SOURCE_DIR);
    ts_error err = {{0}};
    assert_int_equal(ts_read_file(path, 1 << 20, &text, NULL, &err), 0);
    int checked = 0, failed = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char name[16];
        int kind;
        unsigned long long want;
        assert_int_equal(sscanf(line, "%15s %d %llx", name, &kind, &want), 3);
        ts_dtype t;
        assert_int_equal(ts_dtype_from_name(name, &t), 0);
        int n = case_len(t);
        float *x = malloc((size_t)n * sizeof *x);
        size_t bytes = ts_dtype_row_bytes(t, n);
        uint8_t *q = calloc(1, bytes);
        make_case(kind, x, n, ts_dtype_get(t)->block_size);
        ts_quantize_row(t, x, q, n);
        uint64_t got = fnv1a(q, bytes);
        if (got != want) {
            fprintf(stderr, "%s case %d: digest %016llx, ggml gives %016llx\n", name, kind, (unsigned long long)got, want);
            failed++;
        }
        checked++;
        free(x);
        free(q);
    }
    free(text);
    assert_int_equal(checked, 81);
    assert_int_equal(failed, 0);
}

/* Weight-like data: gaussian rows with per-row scale and a few outliers. */
static void weightlike(float *x, int64_t n, uint64_t seed) {
    g_state = seed;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < 4; k++) s += uniform01();
        double v = (s - 2.0) * 0.03;
        if (splitmix() % 97 == 0) v *= 8;
        x[i] = (float)v;
    }
}

static double sq_error(ts_dtype t, const float *x, int64_t n, int search) {
    uint8_t *q = malloc(ts_dtype_row_bytes(t, n));
    float *y = malloc((size_t)n * sizeof *y);
    if (search) ts_quantize_row_best(t, x, q, n, NULL);
    else ts_quantize_row(t, x, q, n);
    ts_dequantize_row(t, q, y, n);
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    free(q);
    free(y);
    return e;
}

static void test_search_beats_reference(void **state) {
    (void)state;
    const int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof *x);
    weightlike(x, n, 42);
    const ts_dtype types[] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_1, TS_DTYPE_IQ4_NL, TS_DTYPE_Q4_K,
                              TS_DTYPE_Q5_K, TS_DTYPE_Q6_K, TS_DTYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        double ref = sq_error(types[i], x, n, 0), best = sq_error(types[i], x, n, 1);
        fprintf(stderr, "%-5s rmse reference %.6g  search %.6g  (%.1f%% lower)\n", ts_dtype_get(types[i])->name,
                sqrt(ref / n), sqrt(best / n), 100.0 * (1 - sqrt(best / ref)));
        assert_true(best <= ref * 1.0001);
    }
    free(x);
}

static void test_importance_lowers_weighted_error(void **state) {
    (void)state;
    const int64_t n = 256 * 16;
    float *x = malloc((size_t)n * sizeof *x), *imp = malloc((size_t)n * sizeof *imp);
    weightlike(x, n, 7);
    for (int64_t i = 0; i < n; i++) imp[i] = (i % 5 == 0) ? 20.0f : 0.2f; /* a few columns dominate */
    const ts_dtype types[] = {TS_DTYPE_Q4_K, TS_DTYPE_Q4_1, TS_DTYPE_Q6_K};
    for (size_t k = 0; k < 3; k++) {
        ts_dtype t = types[k];
        uint8_t *q = malloc(ts_dtype_row_bytes(t, n));
        float *y = malloc((size_t)n * sizeof *y);
        double e[2];
        for (int with = 0; with < 2; with++) {
            ts_quantize_row_best(t, x, q, n, with ? imp : NULL);
            ts_dequantize_row(t, q, y, n);
            e[with] = 0;
            for (int64_t i = 0; i < n; i++) e[with] += imp[i] * ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        }
        assert_true(e[1] < e[0]);
        double direct = ts_quant_row_sq_error(t, x, n, imp);
        assert_true(direct > 0 && direct <= e[1] * 1.000001 && direct >= e[1] * 0.999999);
        free(q);
        free(y);
    }
    free(x);
    free(imp);
}

static void test_tensor_conversion(void **state) {
    (void)state;
    const int64_t rows = 7, cols = 512;
    float *x = malloc((size_t)(rows * cols) * sizeof *x);
    weightlike(x, rows * cols, 3);
    uint16_t *bf = malloc((size_t)(rows * cols) * 2);
    ts_error err = {{0}};
    assert_int_equal(ts_quantize_tensor(TS_DTYPE_BF16, x, TS_DTYPE_F32, rows, cols, bf, NULL, 1, &err), 0);
    for (int64_t i = 0; i < rows * cols; i++) assert_int_equal(bf[i], ts_f32_to_bf16(x[i]));

    /* bf16 -> q4_k with 3 threads equals row-by-row search quantization of the widened rows. */
    size_t rb = ts_dtype_row_bytes(TS_DTYPE_Q4_K, cols);
    uint8_t *a = malloc(rb * rows), *b = malloc(rb * rows);
    float *row = malloc((size_t)cols * sizeof *row);
    assert_int_equal(ts_quantize_tensor(TS_DTYPE_Q4_K, bf, TS_DTYPE_BF16, rows, cols, a, NULL, 3, &err), 0);
    for (int64_t r = 0; r < rows; r++) {
        ts_dequantize_row(TS_DTYPE_BF16, bf + r * cols, row, cols);
        ts_quantize_row_best(TS_DTYPE_Q4_K, row, b + r * rb, cols, NULL);
    }
    assert_memory_equal(a, b, rb * rows);

    /* A quantized source is dequantized first: q8_0 -> q4_0 (reference) equals quantizing q8_0's values. */
    size_t r8 = ts_dtype_row_bytes(TS_DTYPE_Q8_0, cols), r4 = ts_dtype_row_bytes(TS_DTYPE_Q4_0, cols);
    uint8_t *q8 = malloc(r8 * rows), *q4a = malloc(r4 * rows), *q4b = malloc(r4 * rows);
    assert_int_equal(ts_quantize_tensor_ref(TS_DTYPE_Q8_0, x, TS_DTYPE_F32, rows, cols, q8, 2, &err), 0);
    assert_int_equal(ts_quantize_tensor_ref(TS_DTYPE_Q4_0, q8, TS_DTYPE_Q8_0, rows, cols, q4a, 2, &err), 0);
    for (int64_t r = 0; r < rows; r++) {
        ts_dequantize_row(TS_DTYPE_Q8_0, q8 + r * r8, row, cols);
        ts_quantize_row(TS_DTYPE_Q4_0, row, q4b + r * r4, cols);
    }
    assert_memory_equal(q4a, q4b, r4 * rows);

    /* Same type: a copy. */
    uint8_t *copy = malloc(r8 * rows);
    assert_int_equal(ts_quantize_tensor(TS_DTYPE_Q8_0, q8, TS_DTYPE_Q8_0, rows, cols, copy, NULL, 1, &err), 0);
    assert_memory_equal(copy, q8, r8 * rows);
    free(copy);

    /* Rows that do not fill whole blocks are refused with a message naming the type. */
    assert_int_equal(ts_quantize_tensor(TS_DTYPE_Q4_K, x, TS_DTYPE_F32, 1, 96, a, NULL, 1, &err), -1);
    assert_non_null(strstr(err.message, "q4_k"));
    assert_int_equal(ts_quantize_tensor(TS_DTYPE_F32, q8, TS_DTYPE_Q8_0, 1, 48, a, NULL, 1, &err), -1);
    assert_non_null(strstr(err.message, "q8_0"));

    free(x);
    free(bf);
    free(a);
    free(b);
    free(row);
    free(q8);
    free(q4a);
    free(q4b);
}

/* int4 keeps every matrix at 4.5 bits (Q4_K where rows fill 256-wide blocks, else IQ4_NL); iq4_xs puts 4.25
 * bits where rows fill 256 (IQ4_NL elsewhere). The accounting reports the average including float32 vectors.
 * Shapes of tiny-code (hidden 384): at iq4_xs one layer and the embedding come to 4.48 bits a weight. */
static void test_scheme_accounting(void **state) {
    (void)state;
    ts_weight_shape w[] = {
        {TS_ROLE_EMBEDDING, -1, 8192, 384, TS_DTYPE_BF16}, {TS_ROLE_ATTN_Q, 0, 384, 384, TS_DTYPE_BF16},
        {TS_ROLE_ATTN_K, 0, 128, 384, TS_DTYPE_BF16},      {TS_ROLE_ATTN_V, 0, 128, 384, TS_DTYPE_BF16},
        {TS_ROLE_ATTN_OUT, 0, 384, 384, TS_DTYPE_BF16},    {TS_ROLE_FFN_GATE, 0, 1024, 384, TS_DTYPE_BF16},
        {TS_ROLE_FFN_UP, 0, 1024, 384, TS_DTYPE_BF16},     {TS_ROLE_FFN_DOWN, 0, 384, 1024, TS_DTYPE_BF16},
        {TS_ROLE_VECTOR, 0, 1, 384, TS_DTYPE_BF16},
    };
    const int n = (int)(sizeof w / sizeof w[0]);
    ts_quant_scheme s;
    ts_error err = {{0}};
    assert_int_equal(ts_quant_scheme_parse("int4", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 0, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q4_K);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_Q, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_IQ4_NL);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_EMBEDDING, -1, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q4_K);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_VECTOR, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_F32);
    ts_quant_budget b;
    double bpw = ts_quant_scheme_bits_per_weight(&s, w, n, 8, &b);
    double weights = 0, bits = 0;
    for (int i = 0; i < n; i++) {
        double e = (double)(w[i].rows * w[i].cols);
        weights += e;
        bits += e * (i == n - 1 ? 32.0 : 4.5);
    }
    assert_true(fabs(bpw - bits / weights) < 1e-9);
    assert_true(bpw > 4.5 && bpw < 4.51);
    char buf[256];
    ts_quant_budget_str(&b, buf, sizeof buf);
    assert_non_null(strstr(buf, "4.50"));
    assert_non_null(strstr(buf, "iq4_nl"));
    assert_non_null(strstr(buf, "q4_k"));
    assert_int_equal(ts_quant_scheme_parse("iq4_xs", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 0, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_IQ4_XS);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_Q, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_IQ4_NL);
    bpw = ts_quant_scheme_bits_per_weight(&s, w, n, 8, &b);
    bits = 0;
    for (int i = 0; i < n; i++)
        bits += (double)(w[i].rows * w[i].cols) * (i == n - 1 ? 32.0 : w[i].role == TS_ROLE_FFN_DOWN ? 4.25 : 4.5);
    assert_true(fabs(bpw - bits / weights) < 1e-9);
    assert_true(bpw > 4.47 && bpw < 4.49);
    ts_quant_budget_str(&b, buf, sizeof buf);
    assert_non_null(strstr(buf, "4.48"));
    assert_non_null(strstr(buf, "iq4_xs"));
    assert_int_equal(ts_quant_scheme_parse("int8", &s, &err), 0);
    assert_true(fabs(ts_quant_scheme_bits_per_weight(&s, w, n - 1, 8, NULL) - 8.5) < 1e-9);
}

/* rc and err of a call that had to refuse spec, saying `says`. */
static void expect_refusal(int rc, const ts_error *err, const char *spec, const char *says) {
    if (rc == 0) fail_msg("\"%s\" was accepted", spec);
    if (!strstr(err->message, says)) fail_msg("\"%s\": \"%s\" does not say \"%s\"", spec, err->message, says);
}

/* --tensor-type rules: by role, by one layer or a range, the last matching rule first, the block-size
 * fallback applied to the rule's type; malformed lists and layers the model lacks are errors that quote
 * the item. */
static void test_scheme_overrides(void **state) {
    (void)state;
    ts_quant_scheme s;
    ts_error err = {{0}};
    assert_int_equal(ts_quant_scheme_parse("int4", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_add_overrides(&s, "token_embd=q8_0,ffn_down=q6_k,blk.2-3.ffn_down=q8_0,blk.5.attn_v=f16,"
                                                       "attn_q=q4_k", &err), 0);
    assert_int_equal(s.n_overrides, 5);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_EMBEDDING, -1, 8, TS_DTYPE_BF16, 384), TS_DTYPE_Q8_0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 0, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q6_K);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 2, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q8_0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 3, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q8_0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 4, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q6_K);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_V, 5, 8, TS_DTYPE_BF16, 384), TS_DTYPE_F16);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_V, 4, 8, TS_DTYPE_BF16, 384), TS_DTYPE_IQ4_NL);
    /* Q4_K's 256-wide blocks do not fill 384 columns: Q4_1, as for --type q4_k */
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_Q, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_Q4_1);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_VECTOR, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_F32);
    assert_int_equal(ts_quant_scheme_check_layers(&s, 8, &err), 0);
    /* IQ4_XS's super-blocks do not fill 384 columns either: IQ4_NL, its grid at 32-wide blocks */
    ts_quant_scheme xs;
    assert_int_equal(ts_quant_scheme_parse("int8", &xs, &err), 0);
    assert_int_equal(ts_quant_scheme_add_overrides(&xs, "attn_k=iq4_xs", &err), 0);
    assert_int_equal(ts_quant_scheme_dtype(&xs, TS_ROLE_ATTN_K, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_IQ4_NL);
    assert_int_equal(ts_quant_scheme_dtype(&xs, TS_ROLE_ATTN_K, 0, 8, TS_DTYPE_BF16, 512), TS_DTYPE_IQ4_XS);
    assert_int_equal(ts_quant_scheme_check_layers(&s, 5, &err), -1);
    assert_non_null(strstr(err.message, "layer 5, but the model has 5 layers"));
    /* rules apply under any --type, none included */
    assert_int_equal(ts_quant_scheme_parse("none", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_add_overrides(&s, "output=q6_k", &err), 0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_OUTPUT, -1, 8, TS_DTYPE_BF16, 4096), TS_DTYPE_Q6_K);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_EMBEDDING, -1, 8, TS_DTYPE_BF16, 4096), TS_DTYPE_BF16);
    static const struct {
        const char *spec, *says;
    } bad[] = {
        {"token_embd", "item 1 \"token_embd\": expected NAME=TYPE"},
        {"attn_v=q8_0,ffn_dwn=q6_k", "item 2 \"ffn_dwn=q6_k\": unknown tensor name \"ffn_dwn\""},
        {"attn_v=q9_0", "unknown type \"q9_0\""},
        {"attn_v=q8_k", "unknown type \"q8_k\""},
        {"attn_v=q4_0_and_a_name_longer_than_any_type", "unknown type \"q4_0_and_a_name_longer_than_any_type\""},
        {"attn_v=", "expected a storage type"},
        {"blk.1.token_embd=q8_0", "token_embd is not a layer's tensor"},
        {"blk.3-1.attn_v=q8_0", "FIRST <= LAST"},
        {"blk.x.attn_v=q8_0", "expected blk.N.NAME"},
        {"blk.1attn_v=q8_0", "expected blk.N.NAME"},
        {"blk.123456.attn_v=q8_0", "expected blk.N.NAME"},
        {"attn_v=q8_0,", "item 2 \"\": expected NAME=TYPE"},
        {",", "item 1 \"\": expected NAME=TYPE"},
        {"=q8_0", "unknown tensor name \"\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ts_quant_scheme_parse("int4", &s, &err), 0);
        memset(&err, 0, sizeof err);
        expect_refusal(ts_quant_scheme_add_overrides(&s, bad[i].spec, &err), &err, bad[i].spec, bad[i].says);
    }
    /* the same rules after the scheme's name and ':' (for --quant on load and MODEL_QUANTIZATION) */
    assert_int_equal(ts_quant_scheme_parse("INT4:token_embd=q8_0,blk.1.attn_v=f16", &s, &err), 0);
    assert_int_equal(s.kind, TS_QUANT_INT4);
    assert_int_equal(s.n_overrides, 2);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_EMBEDDING, -1, 8, TS_DTYPE_BF16, 384), TS_DTYPE_Q8_0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_V, 1, 8, TS_DTYPE_BF16, 384), TS_DTYPE_F16);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_ATTN_V, 2, 8, TS_DTYPE_BF16, 384), TS_DTYPE_IQ4_NL);
    assert_int_equal(ts_quant_scheme_parse("q4_0:ffn_down=q8_0", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_DOWN, 0, 8, TS_DTYPE_BF16, 1024), TS_DTYPE_Q8_0);
    assert_int_equal(ts_quant_scheme_dtype(&s, TS_ROLE_FFN_UP, 0, 8, TS_DTYPE_BF16, 384), TS_DTYPE_Q4_0);
    static const struct {
        const char *spec, *says;
    } bad_full[] = {
        {"int4:", "after \"int4:\": item 1 \"\": expected NAME=TYPE"},
        {"int5:token_embd=q8_0", "unknown quantization \"int5\""},
        {"int4:tok=q8_0", "unknown tensor name \"tok\""},
        {"a_scheme_name_longer_than_any_there_is:token_embd=q8_0", "before ':'"},
    };
    for (size_t i = 0; i < sizeof bad_full / sizeof bad_full[0]; i++) {
        memset(&err, 0, sizeof err);
        expect_refusal(ts_quant_scheme_parse(bad_full[i].spec, &s, &err), &err, bad_full[i].spec, bad_full[i].says);
    }
    /* more rules than the scheme holds */
    char many[2048] = "";
    for (int i = 0; i <= TS_QUANT_MAX_OVERRIDES; i++) strcat(many, i ? ",attn_v=q8_0" : "attn_v=q8_0");
    assert_int_equal(ts_quant_scheme_parse("int4", &s, &err), 0);
    assert_int_equal(ts_quant_scheme_add_overrides(&s, many, &err), -1);
    assert_non_null(strstr(err.message, "more than"));
}

/* Helper modes for the Python scripts (test_quant_gguf_py.py, measure_int4.py):
 *   --quantize TYPE IN.f32 OUT             reference quantizer, the whole file as one row
 *   --dequantize TYPE IN OUT.f32
 *   --roundtrip TYPE COLS IN.f32 OUT.f32 [IMPORTANCE.f32]
 *                                          error-minimising quantizer row by row, then dequantized */
static int write_out(const char *path, const void *data, size_t n) {
    ts_error err = {{0}};
    ts_atomic_file *f = ts_atomic_open(path, &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (ts_atomic_write(f, data, n, &err) != 0) {
        ts_atomic_abort(f);
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (ts_atomic_commit(f, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    return 0;
}

static int helper_main(int argc, char **argv) {
    int roundtrip = !strcmp(argv[1], "--roundtrip");
    if ((!roundtrip && argc != 5) || (roundtrip && argc != 6 && argc != 7)) {
        fprintf(stderr, "usage: %s --quantize|--dequantize TYPE IN OUT | --roundtrip TYPE COLS IN OUT [IMP]\n", argv[0]);
        return 2;
    }
    ts_dtype t;
    if (ts_dtype_from_name(argv[2], &t) != 0) {
        fprintf(stderr, "unknown type %s\n", argv[2]);
        return 2;
    }
    ts_error err = {{0}};
    char *in = NULL, *imp = NULL;
    size_t len = 0, imp_len = 0;
    if (ts_read_file(argv[roundtrip ? 4 : 3], (size_t)1 << 31, &in, &len, &err) != 0 ||
        (argc == 7 && ts_read_file(argv[6], (size_t)1 << 31, &imp, &imp_len, &err) != 0)) {
        fprintf(stderr, "%s\n", err.message);
        free(in);
        return 1;
    }
    const ts_dtype_info *info = ts_dtype_get(t);
    int rc = 1;
    if (roundtrip) {
        int64_t cols = atoll(argv[3]), n = (int64_t)(len / sizeof(float));
        if (cols <= 0 || n % cols != 0 || cols % info->block_size != 0 || (imp && imp_len != (size_t)cols * sizeof(float))) {
            fprintf(stderr, "bad shape: %lld values, %lld columns\n", (long long)n, (long long)cols);
        } else {
            uint8_t *q = malloc(ts_dtype_row_bytes(t, cols));
            float *out = malloc(len + 1);
            for (int64_t r = 0; r < n / cols; r++) {
                ts_quantize_row_best(t, (const float *)in + r * cols, q, cols, (const float *)imp);
                ts_dequantize_row(t, q, out + r * cols, cols);
            }
            rc = write_out(argv[5], out, len);
            free(q);
            free(out);
        }
    } else if (!strcmp(argv[1], "--quantize")) {
        int64_t n = (int64_t)(len / sizeof(float));
        size_t out_bytes = ts_dtype_row_bytes(t, n);
        void *out = calloc(1, out_bytes + 1);
        ts_quantize_row(t, (const float *)in, out, n);
        rc = write_out(argv[4], out, out_bytes);
        free(out);
    } else {
        int64_t n = (int64_t)(len / (size_t)info->block_bytes) * info->block_size;
        void *out = calloc(1, (size_t)n * sizeof(float) + 1);
        ts_dequantize_row(t, in, out, n);
        rc = write_out(argv[4], out, (size_t)n * sizeof(float));
        free(out);
    }
    free(in);
    free(imp);
    return rc;
}

int main(int argc, char **argv) {
    if (argc > 1) return helper_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_matches_ggml_digests),
        cmocka_unit_test(test_search_beats_reference),
        cmocka_unit_test(test_importance_lowers_weighted_error),
        cmocka_unit_test(test_tensor_conversion),
        cmocka_unit_test(test_scheme_accounting),
        cmocka_unit_test(test_scheme_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
