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

#endif
