/* Fuzz target: protobuf text format through ts_tp_parse, then every typed read the schema layer offers
 * applied to every node of the tree (they must check, not trust, what the parser produced). */
/* fuzz-max-len: 65536 */
/* fuzz-dict: textproto.dict */
#include <stdint.h>
#include <stdlib.h>

#include "format/textproto.h"
#include "fuzz_common.h"

static void visit(const ts_tp_doc *doc, const ts_tp_node *n, int depth) {
    if (depth > TS_TP_MAX_DEPTH + 2) abort();
    for (const ts_tp_node *c = n->first_child; c; c = c->next) {
        ts_error err;
        int64_t i64;
        uint64_t u64;
        double d;
        int b;
        char buf[64], desc[96];
        (void)ts_tp_int(doc, c, INT64_MIN, INT64_MAX, &i64, &err);
        (void)ts_tp_int(doc, c, -5, 5, &i64, &err);
        (void)ts_tp_uint(doc, c, UINT32_MAX, &u64, &err);
        (void)ts_tp_double(doc, c, &d, &err);
        (void)ts_tp_bool(doc, c, &b, &err);
        (void)ts_tp_string(doc, c, buf, sizeof buf, &err);
        ts_tp_describe(c, desc, sizeof desc);
        if (c->name) {
            (void)ts_tp_get(n, c->name);
            (void)ts_tp_count(n, c->name);
        }
        visit(doc, c, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_tp_doc *doc = NULL;
    ts_error err = {{0}};
    int rc = ts_tp_parse((const char *)data, size, "fuzz.pbtxt", &doc, &err);
    fuzz_check("ts_tp_parse", rc, &err);
    if (rc != 0) return 0;
    visit(doc, ts_tp_root(doc), 0);
    ts_tp_free(doc);
    return 0;
}
