/* Finding stop strings in generated text and how much of it is safe to emit. */
#include "server/stop_match.h"

#include <string.h>

long ts_stop_scan(const ts_stop_list *stops, const char *text, size_t len, size_t from, size_t *safe) {
    size_t hold = len;
    for (size_t i = from; i < len; i++) {
        size_t avail = len - i;
        for (int k = 0; k < stops->n; k++) {
            size_t sl = stops->lens[k];
            if (sl == 0) continue;
            if (avail >= sl) {
                if (memcmp(text + i, stops->strs[k], sl) == 0) {
                    *safe = i;
                    return (long)i;
                }
            } else if (hold == len && memcmp(text + i, stops->strs[k], avail) == 0) {
                hold = i; /* a later position may still complete a shorter stop string */
            }
        }
    }
    *safe = hold;
    return -1;
}
