/* Stop strings over streamed text. A stop string is never emitted, not even in part: text that could be
 * the beginning of a stop string is held back until later text rules the match out, and text from the
 * first complete stop string on is dropped. Pure functions over (buffer, length). */
#ifndef TS_SERVER_STOP_MATCH_H
#define TS_SERVER_STOP_MATCH_H

#include <stddef.h>

typedef struct ts_stop_list {
    const char *const *strs; /* non-empty strings */
    const size_t *lens;
    int n;
} ts_stop_list;

/* Scans text[from, len) (text before `from` is known to start no stop string). Returns the offset of the
 * earliest complete stop string, or -1; *safe receives how much of the text may be emitted now (the
 * match offset when one was found, otherwise the start of the earliest suffix that is a proper prefix
 * of some stop string, or len). */
long ts_stop_scan(const ts_stop_list *stops, const char *text, size_t len, size_t from, size_t *safe);

#endif
