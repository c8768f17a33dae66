/* Shared reference checks for the model tests (CPU and GPU backends). */
#ifndef TS_TESTS_SUPPORT_REFERENCE_CHECK_H
#define TS_TESTS_SUPPORT_REFERENCE_CHECK_H

#include "backend/backend.h"

typedef struct ts_ref_tolerance {
    double logits; /* relative L2 of the last-position logits */
    double hidden; /* relative L2 of each layer's hidden states */
    double margin; /* top1-top2 gap below which a different choice is legitimate */
} ts_ref_tolerance;

/* model_name: a directory under ../shared/testdata, or an absolute path. Fails the current cmocka test on
 * any mismatch. */
void ts_test_check_model_reference(ts_backend *be, const char *model_name, const ts_ref_tolerance *tol);
/* The same with load options (a GPU/CPU split: gpu_layers and host_be). */
struct ts_model_options;
void ts_test_check_model_reference_opts(ts_backend *be, const char *model_name, const ts_ref_tolerance *tol,
                                        const struct ts_model_options *opt);

/* Appends tok to the sequence in one decode step and returns the greedy choice after it: picked where the
 * logits are (on_device, ts_model_forward_greedy: a GPU's own argmax) or by the host from the step's logits,
 * which are left in logits (vocab_size floats) either way. Fails the current cmocka test on an error. */
struct ts_model;
struct ts_kv_cache;
struct ts_kv_seq;
int32_t ts_test_decode_step(struct ts_model *m, struct ts_kv_cache *c, struct ts_kv_seq *s, int32_t tok, int on_device,
                            float *logits);

#endif
