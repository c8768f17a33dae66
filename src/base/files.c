#include "base/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ts_map_file(const char *path, ts_mapped_file *out, ts_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ts_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ts_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ts_fail(err, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (out->size == 0) {
        close(fd);
        out->data = NULL;
        return 0;
    }
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return ts_fail(err, "%s: cannot map %zu bytes: %s", path, out->size, strerror(e));
    out->data = p;
    return 0;
}

int ts_mapped_file_changed(const ts_mapped_file *mf, char *why, size_t cap) {
    struct stat st;
    if (stat(mf->path, &st) != 0) {
        snprintf(why, cap, "%s was removed after loading", mf->path);
        return 2;
    }
    if ((uint64_t)st.st_dev != mf->dev || (uint64_t)st.st_ino != mf->ino) {
        snprintf(why, cap, "%s was replaced by another file after loading", mf->path);
        return 2;
    }
    int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if ((size_t)st.st_size != mf->size || mt != mf->mtime_ns) {
        snprintf(why, cap, "%s was modified in place after loading (%zu bytes then, %lld now)", mf->path, mf->size,
                 (long long)st.st_size);
        return 1;
    }
    return 0;
}

void ts_unmap_file(ts_mapped_file *mf) {
    if (mf && mf->data && mf->size) munmap((void *)mf->data, mf->size);
    if (mf) {
        mf->data = NULL;
        mf->size = 0;
    }
}

int ts_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, ts_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ts_fail(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return ts_fail(err, "%s: file is %lld bytes, more than the %zu bytes accepted for this kind of file",
                       path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return ts_fail(err, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return ts_fail(err, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = n;
    return 0;
}

struct ts_atomic_file {
    FILE *f;
    char final_path[4096];
    char tmp_path[4200];
    int64_t written;
};

ts_atomic_file *ts_atomic_open(const char *path, ts_error *err) {
    ts_atomic_file *af = calloc(1, sizeof *af);
    if (!af) {
        ts_fail(err, "out of memory");
        return NULL;
    }
    snprintf(af->final_path, sizeof af->final_path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        ts_fail(err, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        free(af);
        return NULL;
    }
    return af;
}

int ts_atomic_write(ts_atomic_file *af, const void *data, size_t n, ts_error *err) {
    if (n == 0) return 0;
    if (fwrite(data, 1, n, af->f) != n)
        return ts_fail(err, "%s: write failed after %lld bytes: %s", af->final_path, (long long)af->written,
                       strerror(errno));
    af->written += (int64_t)n;
    return 0;
}

int64_t ts_atomic_tell(const ts_atomic_file *af) { return af->written; }

int ts_atomic_commit(ts_atomic_file *af, ts_error *err) {
    int rc = 0;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        rc = ts_fail(err, "%s: cannot flush %lld bytes: %s", af->final_path, (long long)af->written, strerror(errno));
    }
    if (fclose(af->f) != 0 && rc == 0)
        rc = ts_fail(err, "%s: cannot close: %s", af->final_path, strerror(errno));
    if (rc == 0 && rename(af->tmp_path, af->final_path) != 0)
        rc = ts_fail(err, "%s: cannot rename into place: %s", af->final_path, strerror(errno));
    if (rc != 0) unlink(af->tmp_path);
    free(af);
    return rc;
}

void ts_atomic_abort(ts_atomic_file *af) {
    if (!af) return;
    fclose(af->f);
    unlink(af->tmp_path);
    free(af);
}

int ts_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ts_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ts_path_join(char *out, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int need_slash = dl > 0 && dir[dl - 1] != '/';
    int n = snprintf(out, cap, "%s%s%s", dir, need_slash ? "/" : "", name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}
