/* Fuzz target: a safetensors image (8-byte header length, JSON header, data) through
 * ts_safetensors_parse. Every tensor the parser accepts is read end to end, so that ASan checks its
 * offsets against the buffer; a rejected input must come with an error message. */
/* fuzz-max-len: 65536 */
/* fuzz-dict: json.dict */
#include <stdint.h>
#include <stdlib.h>

#include "format/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_tensor_table table;
    ts_tensor_table_init(&table);
    ts_error err = {{0}};
    int rc = ts_safetensors_parse(data, size, "fuzz.safetensors", 0, &table, &err);
    fuzz_check("ts_safetensors_parse", rc, &err);
    volatile uint8_t sink = 0;
    for (int i = 0; i < table.count; i++) {
        const ts_tensor_desc *d = &table.items[i];
        const uint8_t *p = d->data;
        for (size_t b = 0; b < d->nbytes; b++) sink ^= p[b];
        if (ts_tensor_table_find(&table, d->name) != d) abort();
    }
    (void)sink;
    ts_tensor_table_free(&table);
    return 0;
}
