/* KServe v2 inference requests as tensors: the JSON request object, optionally followed by binary tensor
 * data (Triton's binary tensor extension: the Inference-Header-Content-Length header says where the JSON
 * ends; each input with parameters.binary_data_size takes that many bytes, in input order; a BYTES
 * element is a 4-byte little-endian length and its bytes). Pure functions over (buffer, length):
 * every count and size is checked against the buffer before it is used. */
#ifndef TS_SERVER_KSERVE_TENSOR_H
#define TS_SERVER_KSERVE_TENSOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "server/api_error.h"
#include "server/strbuf.h"

#define TS_KSERVE_MAX_TENSORS 32
#define TS_KSERVE_MAX_DIMS 8

typedef struct ts_kserve_tensor {
    const char *name;
    const char *datatype; /* "BYTES", "INT32", "FP32", "BOOL" ... */
    int64_t shape[TS_KSERVE_MAX_DIMS];
    int ndim;
    int64_t count;        /* elements: the product of the shape */
    json_t *data;         /* JSON data flattened to one list (owned), or NULL for binary data */
    const uint8_t *raw;   /* binary data inside the request body */
    size_t raw_len;
} ts_kserve_tensor;

typedef struct ts_kserve_output_request {
    const char *name;
    int binary;
} ts_kserve_output_request;

typedef struct ts_kserve_request {
    json_t *root;
    const char *id; /* NULL when absent */
    const json_t *parameters; /* NULL when absent */
    ts_kserve_tensor inputs[TS_KSERVE_MAX_TENSORS];
    int num_inputs;
    ts_kserve_output_request outputs[TS_KSERVE_MAX_TENSORS];
    int num_outputs;
    int binary_output_default; /* parameters.binary_data_output */
} ts_kserve_request;

/* header_length: the Inference-Header-Content-Length header's value, or NULL when the body is JSON only.
 * `out` may hold partial allocations when parsing fails: call ts_kserve_request_free either way. */
int ts_kserve_parse_request(const char *body, size_t len, const char *header_length, ts_kserve_request *out,
                            ts_api_error *e);
void ts_kserve_request_free(ts_kserve_request *r);
const ts_kserve_tensor *ts_kserve_input(const ts_kserve_request *r, const char *name);

/* Element i of a BYTES tensor (not NUL-terminated). */
int ts_kserve_bytes_at(const ts_kserve_tensor *t, int64_t i, const char **s, size_t *len, ts_api_error *e);
/* The first element of a numeric or BOOL tensor as a JSON number or boolean (new reference). */
json_t *ts_kserve_scalar(const ts_kserve_tensor *t, ts_api_error *e);

/* Appends BYTES elements in binary form (4-byte little-endian length, then the bytes). */
void ts_kserve_append_bytes_element(ts_sbuf *out, const char *s, size_t len);

#endif
