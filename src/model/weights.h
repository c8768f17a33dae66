/* Binding named tensors of a checkpoint to a model's weights: lookup, shape checks against what the
 * configuration implies, conversion to the storage type the quantization scheme asks for (in place
 * when no conversion is needed), and hand-over to the backend. Errors name the file and the tensor. */
#ifndef TS_MODEL_WEIGHTS_H
#define TS_MODEL_WEIGHTS_H

#include "model/model.h"

/* A matrix of `rows` outputs x `cols` inputs. When stored_transposed, the file holds it as [cols, rows]
 * (GPT-2's Conv1D) and it is transposed on load. */
int ts_bind_matrix(ts_model *m, const char *name, ts_weight_role role, int layer, int64_t rows, int64_t cols,
                   int stored_transposed, ts_weight *out, ts_error *err);
/* Like ts_bind_matrix but a missing tensor is not an error: *found tells. */
int ts_bind_matrix_opt(ts_model *m, const char *name, ts_weight_role role, int layer, int64_t rows, int64_t cols,
                       int stored_transposed, ts_weight *out, int *found, ts_error *err);
/* A float32 vector of n values in backend memory. */
int ts_bind_vector(ts_model *m, const char *name, int64_t n, float **out, ts_error *err);
int ts_bind_vector_opt(ts_model *m, const char *name, int64_t n, float **out, ts_error *err); /* NULL if absent */

/* Backend scratch owned by the model. */
float *ts_model_alloc_floats(ts_model *m, size_t count, ts_error *err);
/* Finds the first of several alternative names (for example with and without "transformer."). */
const char *ts_first_present(const ts_model *m, const char *const *names, int count);

#endif
