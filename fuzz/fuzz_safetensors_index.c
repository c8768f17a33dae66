/* Fuzz target: model.safetensors.index.json text through ts_safetensors_index_parse, then the walk the
 * sharded loader does over the accepted weight_map (distinct shard names, path joining). */
/* fuzz-max-len: 65536 */
/* fuzz-dict: json.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "format/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    json_t *map = NULL;
    ts_error err = {{0}};
    int rc = ts_safetensors_index_parse((const char *)data, size, "fuzz/model.safetensors.index.json", &map, &err);
    fuzz_check("ts_safetensors_index_parse", rc, &err);
    if (rc != 0) {
        if (map) abort();
        return 0;
    }
    json_t *seen = json_object();
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        const char *fname = json_string_value(file);
        if (!fname || strchr(fname, '/') || !strcmp(fname, "..")) abort();
        if (json_object_get(seen, fname)) continue;
        json_object_set_new(seen, fname, json_true());
        char path[4096];
        (void)ts_path_join(path, sizeof path, "/nonexistent/model", fname);
    }
    json_decref(seen);
    json_decref(map);
    return 0;
}
