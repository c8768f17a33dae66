/* Device detection and accelerator resolution. Fallbacks are exercised on the real detection with
 * features hidden through TESSERA_HIDE_FEATURES (expected reasons depend only on whether the hardware
 * has the feature, so they hold on any x86-64 machine), on fabricated device descriptions (an aarch64
 * CPU, a GPU, AMX refused by the kernel), and detection of memory limits, cgroups, CPU identity and
 * caches runs against fake /proc and /sys trees. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "format/model_repo_config.h"
#include "runtime/devices.h"
#include "runtime/devices_resolve.h"
#include "support/testlib.h"

/* ---- helpers ---- */

static ts_triton_accelerator accel(const char *name) {
    ts_triton_accelerator a;
    memset(&a, 0, sizeof a);
    snprintf(a.name, sizeof a.name, "%s", name);
    return a;
}

static void add_param(ts_triton_accelerator *a, const char *key, const char *value) {
    ts_triton_accel_param *p = &a->params[a->num_params++];
    snprintf(p->key, sizeof p->key, "%s", key);
    snprintf(p->value, sizeof p->value, "%s", value);
}

static ts_device_info detect_with_hidden(const char *hide) {
    if (hide) setenv("TESSERA_HIDE_FEATURES", hide, 1);
    else unsetenv("TESSERA_HIDE_FEATURES");
    ts_device_info dev;
    ts_error err;
    assert_int_equal(ts_devices_detect(&dev, &err), 0);
    return dev;
}

static ts_resolution resolve_ok(const ts_device_info *dev, const ts_triton_accelerator *cpu, int ncpu,
                                const ts_triton_accelerator *gpu, int ngpu) {
    ts_resolve_request req = {.cpu = cpu, .num_cpu = ncpu, .gpu = gpu, .num_gpu = ngpu, .kind = TS_TRITON_KIND_AUTO};
    ts_resolution r;
    ts_error err = {{0}};
    if (ts_devices_resolve(dev, &req, &r, &err) != 0) fail_msg("resolution failed: %s", err.message);
    return r;
}

static void expect_messages(const ts_resolution *r, const char *const *want, int n) {
    if (r->num_messages != n) {
        for (int i = 0; i < r->num_messages; i++) fprintf(stderr, "  message: %s\n", r->messages[i]);
        fail_msg("expected %d messages, found %d", n, r->num_messages);
    }
    for (int i = 0; i < n; i++)
        if (strcmp(r->messages[i], want[i]) != 0)
            fail_msg("message %d:\nexpected: %s\n   found: %s", i, want[i], r->messages[i]);
}

static int x86(void) {
#if defined(__x86_64__)
    return 1;
#else
    return 0;
#endif
}

static int detected(uint32_t mask) { return (ts_cpu_features_get()->detected & mask) == mask; }

#define AMX_ALL (TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16)

/* The reason an x86 feature is passed over once hidden: hidden when the hardware has it. */
static const char *hidden_or_absent(uint32_t mask, const char *hidden, const char *absent) {
    return detected(mask) ? hidden : absent;
}

/* ---- the CPU chain on this machine: amx -> avx512 -> avx2 -> generic ---- */

static void test_amx_hidden_falls_back_to_avx512(void **state) {
    (void)state;
    if (!x86() || !detected(TS_CPU_AVX512F)) skip();
    ts_device_info dev = detect_with_hidden("amx");
    ts_triton_accelerator cpu[] = {accel("amx")};
    ts_resolution r = resolve_ok(&dev, cpu, 1, NULL, 0);
    char want[256];
    snprintf(want, sizeof want, "amx: %s; using avx512",
             hidden_or_absent(AMX_ALL, "AMX is hidden by TESSERA_HIDE_FEATURES", "this CPU has no AMX tiles"));
    const char *msgs[] = {want};
    expect_messages(&r, msgs, 1);
    assert_int_equal(r.cpu_isa, TS_ISA_AVX512);
    assert_string_equal(r.cpu_accelerator, "");
    assert_int_equal(r.device, TS_DEVICE_CPU);
}

static void test_avx512_hidden_falls_back_to_avx2(void **state) {
    (void)state;
    if (!x86() || !detected(TS_CPU_AVX2)) skip();
    ts_device_info dev = detect_with_hidden("avx512");
    ts_triton_accelerator cpu[] = {accel("amx"), accel("avx512"), accel("avx2"), accel("generic")};
    ts_resolution r = resolve_ok(&dev, cpu, 4, NULL, 0);
    char amx[256], avx512[256];
    snprintf(amx, sizeof amx, "amx: %s; using avx2",
             hidden_or_absent(AMX_ALL, "AMX is hidden by TESSERA_HIDE_FEATURES", "this CPU has no AMX tiles"));
    snprintf(avx512, sizeof avx512, "avx512: %s; using avx2",
             hidden_or_absent(TS_CPU_AVX512F, "AVX-512 is hidden by TESSERA_HIDE_FEATURES",
                              "this CPU has no AVX-512 (F, BW, DQ, VL)"));
    const char *msgs[] = {amx, avx512};
    expect_messages(&r, msgs, 2);
    assert_int_equal(r.cpu_isa, TS_ISA_AVX2);
    assert_string_equal(r.cpu_accelerator, "avx2");
}

static void test_avx2_hidden_falls_back_to_generic(void **state) {
    (void)state;
    if (!x86()) skip();
    ts_device_info dev = detect_with_hidden("avx2");
    ts_triton_accelerator cpu[] = {accel("amx"), accel("avx512"), accel("avx2"), accel("generic")};
    ts_resolution r = resolve_ok(&dev, cpu, 4, NULL, 0);
    char amx[256], avx512[256], avx2[256];
    snprintf(amx, sizeof amx, "amx: %s; using generic",
             hidden_or_absent(AMX_ALL, "AMX is hidden by TESSERA_HIDE_FEATURES", "this CPU has no AMX tiles"));
    snprintf(avx512, sizeof avx512, "avx512: %s; using generic",
             hidden_or_absent(TS_CPU_AVX512F, "AVX-512 is hidden by TESSERA_HIDE_FEATURES",
                              "this CPU has no AVX-512 (F, BW, DQ, VL)"));
    snprintf(avx2, sizeof avx2, "avx2: %s; using generic",
             hidden_or_absent(TS_CPU_AVX2, "AVX2 is hidden by TESSERA_HIDE_FEATURES",
                              "this CPU has no AVX2 (with FMA and F16C)"));
    const char *msgs[] = {amx, avx512, avx2};
    expect_messages(&r, msgs, 3);
    assert_int_equal(r.cpu_isa, TS_ISA_GENERIC);
    assert_string_equal(r.cpu_accelerator, "generic");
    /* without generic in the list the automatic choice is generic too */
    r = resolve_ok(&dev, cpu, 1, NULL, 0);
    assert_int_equal(r.cpu_isa, TS_ISA_GENERIC);
}

static void test_amx_used_when_present(void **state) {
    (void)state;
    ts_device_info dev = detect_with_hidden(NULL);
    ts_triton_accelerator cpu[] = {accel("amx")};
    char reason[256];
    if (!ts_devices_cpu_accelerator_available(&dev, "amx", reason, sizeof reason)) skip();
    ts_resolution r = resolve_ok(&dev, cpu, 1, NULL, 0);
    assert_int_equal(r.num_messages, 0);
    assert_int_equal(r.cpu_isa, TS_ISA_AMX);
    assert_string_equal(r.cpu_accelerator, "amx");
}

static void test_neon_on_x86(void **state) {
    (void)state;
    if (!x86()) skip();
    ts_device_info dev = detect_with_hidden(NULL);
    ts_triton_accelerator cpu[] = {accel("neon")};
    ts_resolution r = resolve_ok(&dev, cpu, 1, NULL, 0);
    char want[256];
    snprintf(want, sizeof want, "neon: NEON is an ARM feature; this CPU is x86_64; using %s",
             ts_cpu_isa_name(ts_devices_best_isa(&dev)));
    const char *msgs[] = {want};
    expect_messages(&r, msgs, 1);
    assert_int_equal(r.cpu_isa, ts_devices_best_isa(&dev));
}

/* ---- GPUs on a machine without them (or with them hidden) ---- */

static void test_cuda_hidden(void **state) {
    (void)state;
    ts_device_info dev = detect_with_hidden("cuda");
    assert_int_equal(dev.num_gpus, 0);
    ts_triton_accelerator gpu[] = {accel("cuda")};
    ts_resolution r = resolve_ok(&dev, NULL, 0, gpu, 1);
    const char *msgs[] = {"cuda: NVIDIA GPUs are hidden by TESSERA_HIDE_FEATURES; falling back to the CPU"};
    expect_messages(&r, msgs, 1);
    assert_int_equal(r.device, TS_DEVICE_CPU);
    assert_int_equal(r.precision, TS_PRECISION_FP32);
}

static void test_cuda_without_nvml(void **state) {
    (void)state;
    unsetenv("TESSERA_HIDE_FEATURES");
    setenv("TESSERA_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    ts_device_info dev;
    ts_error err;
    assert_int_equal(ts_devices_detect(&dev, &err), 0);
    unsetenv("TESSERA_NVML_LIBRARY");
    assert_int_equal(dev.num_gpus, 0);
    ts_triton_accelerator gpu[] = {accel("cuda")};
    ts_resolution r = resolve_ok(&dev, NULL, 0, gpu, 1);
    const char *msgs[] = {
        "cuda: no NVIDIA GPU found (/nonexistent/libnvidia-ml.so.1 not loadable); falling back to the CPU"};
    expect_messages(&r, msgs, 1);
}

/* With the library's default name, where this machine has no NVIDIA driver. */
static void test_cuda_default_library_absent(void **state) {
    (void)state;
    ts_device_info dev = detect_with_hidden(NULL);
    if (dev.num_gpus > 0 || !strstr(dev.gpu_status, "not loadable")) skip();
    ts_triton_accelerator gpu[] = {accel("cuda")};
    ts_resolution r = resolve_ok(&dev, NULL, 0, gpu, 1);
    const char *msgs[] = {"cuda: no NVIDIA GPU found (libnvidia-ml.so.1 not loadable); falling back to the CPU"};
    expect_messages(&r, msgs, 1);
}

static void test_mps_and_metal_on_linux(void **state) {
    (void)state;
#if !defined(__linux__)
    skip();
#endif
    ts_device_info dev = detect_with_hidden("cuda");
    ts_triton_accelerator gpu[] = {accel("mps"), accel("metal"), accel("cuda")};
    ts_resolution r = resolve_ok(&dev, NULL, 0, gpu, 3);
    const char *msgs[] = {
        "mps: Metal is not available on Linux; falling back to the CPU",
        "metal: Metal is not available on Linux; falling back to the CPU",
        "cuda: NVIDIA GPUs are hidden by TESSERA_HIDE_FEATURES; falling back to the CPU",
    };
    expect_messages(&r, msgs, 3);
    dev = detect_with_hidden("gpu");
    r = resolve_ok(&dev, NULL, 0, gpu, 1);
    const char *hidden[] = {"mps: Metal is hidden by TESSERA_HIDE_FEATURES; falling back to the CPU"};
    expect_messages(&r, hidden, 1);
}

/* The seed's accelerators on this machine, logged: the GPU falls back, the CPU keeps its settings. */
static void test_seed_resolution_is_logged(void **state) {
    (void)state;
    ts_device_info dev = detect_with_hidden("amx,cuda");
    ts_triton_accelerator cpu[] = {accel("amx")}, gpu[] = {accel("mps")};
    add_param(&cpu[0], "tile_size", "32");
    add_param(&cpu[0], "quantization_support", "int4");
    add_param(&gpu[0], "precision", "fp16");
    add_param(&gpu[0], "use_unified_memory", "true");
    ts_resolution r = resolve_ok(&dev, cpu, 1, gpu, 1);
    assert_int_equal(r.device, TS_DEVICE_CPU);
    assert_int_equal(r.tile_size, 32);
    assert_true(r.has_quantization);
    assert_int_equal(r.quantization.kind, TS_QUANT_INT4);
    assert_int_equal(r.unified_memory, 0);
    assert_int_equal(r.precision, TS_PRECISION_FP32);
    assert_int_equal(r.threads, dev.cpu.cores_usable);

    char path[1200];
    snprintf(path, sizeof path, "%s/resolution.log", ts_test_tmpdir());
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    ts_resolution_log(&r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *log = ts_test_read_file(path, NULL);
    assert_non_null(
        strstr(log, "tessera warn: accelerator mps: Metal is not available on Linux; falling back to the CPU\n"));
    if (x86() && detected(TS_CPU_AVX512F)) assert_non_null(strstr(log, "tessera warn: accelerator amx: "));
    assert_non_null(strstr(log, "tessera info: accelerators resolved: cpu (isa "));
    free(log);
}

/* ---- fabricated machines ---- */

static ts_device_info fake_x86(uint32_t features) {
    ts_device_info d;
    memset(&d, 0, sizeof d);
    snprintf(d.cpu.arch, sizeof d.cpu.arch, "x86_64");
    d.cpu.cores_usable = d.cpu.cores_online = 8;
    d.cpu.features.present = d.cpu.features.detected = features;
    snprintf(d.gpu_status, sizeof d.gpu_status, "no NVIDIA GPU found (libnvidia-ml.so.1 not loadable)");
    snprintf(d.metal_status, sizeof d.metal_status, "Metal is not available on Linux");
    return d;
}

static void test_fabricated_aarch64(void **state) {
    (void)state;
    ts_device_info d = fake_x86(TS_CPU_NEON | TS_CPU_DOTPROD);
    snprintf(d.cpu.arch, sizeof d.cpu.arch, "aarch64");
    ts_triton_accelerator cpu[] = {accel("amx"), accel("avx512"), accel("avx2"), accel("neon")};
    ts_resolution r = resolve_ok(&d, cpu, 4, NULL, 0);
    const char *msgs[] = {
        ("amx: this CPU has no AMX tiles (Intel AMX is x86-64 only; Apple's matrix unit cannot be programmed directly); "
         "using neon"),
        "avx512: AVX-512 is an x86-64 feature; this CPU is aarch64; using neon",
        "avx2: AVX2 is an x86-64 feature; this CPU is aarch64; using neon",
    };
    expect_messages(&r, msgs, 3);
    assert_int_equal(r.cpu_isa, TS_ISA_NEON);
    assert_string_equal(r.cpu_accelerator, "neon");
}

static void test_fabricated_amx_refused_by_kernel(void **state) {
    (void)state;
    ts_device_info d = fake_x86(TS_CPU_AVX2 | TS_CPU_AVX512F);
    d.cpu.features.detected |= AMX_ALL;
    snprintf(d.cpu.features.amx_denied_reason, sizeof d.cpu.features.amx_denied_reason,
             "the kernel refused the AMX tile-data permission request");
    ts_triton_accelerator cpu[] = {accel("amx")};
    ts_resolution r = resolve_ok(&d, cpu, 1, NULL, 0);
    const char *msgs[] = {
        "amx: this CPU has AMX tiles but the kernel refused the AMX tile-data permission request; using avx512"};
    expect_messages(&r, msgs, 1);
    d.cpu.features.detected &= ~(uint32_t)AMX_ALL;
    d.cpu.features.amx_denied_reason[0] = '\0';
    r = resolve_ok(&d, cpu, 1, NULL, 0);
    const char *absent[] = {"amx: this CPU has no AMX tiles; using avx512"};
    expect_messages(&r, absent, 1);
}

static void test_fabricated_gpu(void **state) {
    (void)state;
    ts_device_info d = fake_x86(TS_CPU_AVX2);
    d.num_gpus = 1;
    snprintf(d.gpus[0].name, sizeof d.gpus[0].name, "NVIDIA H100 80GB HBM3");
    d.gpus[0].cc_major = 9;
    ts_triton_accelerator gpu[] = {accel("mps"), accel("cuda")};
    add_param(&gpu[1], "precision", "fp16");
    ts_resolution r = resolve_ok(&d, NULL, 0, gpu, 2);
    const char *msgs[] = {"mps: Metal is not available on Linux; using cuda"};
    expect_messages(&r, msgs, 1);
    assert_int_equal(r.device, TS_DEVICE_CUDA);
    assert_string_equal(r.gpu_accelerator, "cuda");
    assert_int_equal(r.precision, TS_PRECISION_FP16);
    assert_int_equal(r.cpu_isa, TS_ISA_AVX2);

    /* no GPU list: a present GPU is used, in bf16 on compute capability 9 */
    r = resolve_ok(&d, NULL, 0, NULL, 0);
    assert_int_equal(r.device, TS_DEVICE_CUDA);
    assert_int_equal(r.precision, TS_PRECISION_BF16);

    /* instance_group names a GPU that is not there */
    const int gpus[] = {1};
    ts_resolve_request req = {.gpu = &gpu[1], .num_gpu = 1, .gpus = gpus, .num_gpus = 1};
    ts_error err;
    assert_int_equal(ts_devices_resolve(&d, &req, &r, &err), 0);
    const char *missing[] = {"cuda: instance_group names GPU 1 but 1 GPU is visible; falling back to the CPU"};
    expect_messages(&r, missing, 1);

    /* KIND_CPU leaves the GPU alone */
    ts_resolve_request cpu_only = {.gpu = gpu, .num_gpu = 2, .kind = TS_TRITON_KIND_CPU};
    assert_int_equal(ts_devices_resolve(&d, &cpu_only, &r, &err), 0);
    const char *unused[] = {"mps: not used because instance_group asks for KIND_CPU",
                            "cuda: not used because instance_group asks for KIND_CPU"};
    expect_messages(&r, unused, 2);
    assert_int_equal(r.device, TS_DEVICE_CPU);
}

static void test_kind_gpu_without_gpu_is_an_error(void **state) {
    (void)state;
    ts_device_info d = fake_x86(TS_CPU_AVX2);
    ts_triton_accelerator gpu[] = {accel("mps")};
    gpu[0].line = 7;
    gpu[0].col = 14;
    ts_resolve_request req = {.gpu = gpu, .num_gpu = 1, .kind = TS_TRITON_KIND_GPU, .source = "m/config.pbtxt"};
    ts_resolution r;
    ts_error err;
    assert_int_equal(ts_devices_resolve(&d, &req, &r, &err), -1);
    assert_string_equal(err.message,
                        "m/config.pbtxt:7:14: instance_group asks for KIND_GPU but no GPU can be used (mps: "
                        "Metal is not available on Linux)");
    req.num_gpu = 0;
    assert_int_equal(ts_devices_resolve(&d, &req, &r, &err), -1);
    assert_string_equal(err.message, "instance_group asks for KIND_GPU but no GPU can be used (cuda: no NVIDIA GPU "
                                     "found (libnvidia-ml.so.1 not loadable))");
}

static void test_threads(void **state) {
    (void)state;
    ts_device_info d = fake_x86(TS_CPU_AVX2);
    d.cpu.cores_usable = 2;
    ts_triton_accelerator cpu[] = {accel("avx2")};
    add_param(&cpu[0], "threads", "4");
    ts_resolution r = resolve_ok(&d, cpu, 1, NULL, 0);
    assert_int_equal(r.threads, 4);
    const char *msgs[] = {"threads: 4 requested but this process may run on 2 cores; expect oversubscription"};
    expect_messages(&r, msgs, 1);
    ts_resolve_request req = {.default_threads = 1};
    ts_error err;
    assert_int_equal(ts_devices_resolve(&d, &req, &r, &err), 0);
    assert_int_equal(r.threads, 1);
}

/* ---- errors from a configuration, at the line and column of the offending value ---- */

static void expect_config_error(const char *text, const char *expected) {
    ts_triton_config *c = calloc(1, sizeof *c);
    ts_error err = {{0}};
    if (ts_triton_config_parse(text, strlen(text), "acc.pbtxt", c, &err) != 0) fail_msg("parse: %s", err.message);
    ts_resolve_request req;
    ts_resolve_request_from_config(c, &req);
    ts_device_info d = fake_x86(TS_CPU_AVX2);
    ts_resolution r;
    if (ts_devices_resolve(&d, &req, &r, &err) == 0) fail_msg("accepted:\n%s", text);
    if (strcmp(err.message, expected) != 0) fail_msg("expected: %s\n   found: %s", expected, err.message);
    free(c);
}

static void test_accelerator_errors(void **state) {
    (void)state;
    expect_config_error(
        "optimization { execution_accelerators {\n"
        "  gpu_execution_accelerator [ { name: \"mps\" }, { name: \"tensorrt\" } ]\n} }\n",
        "acc.pbtxt:2:56: unknown GPU execution accelerator \"tensorrt\" (tessera knows cuda, mps, metal)");
    expect_config_error(
        "optimization { execution_accelerators {\n"
        "  cpu_execution_accelerator [ { name: \"openvino\" } ]\n} }\n",
        "acc.pbtxt:2:39: unknown CPU execution accelerator \"openvino\" (tessera knows amx, avx512, avx2, "
        "neon, generic)");
    expect_config_error("optimization { execution_accelerators {\n"
                        "  cpu_execution_accelerator [ { name: \"cuda\" } ]\n} }\n",
                        "acc.pbtxt:2:39: cuda is a GPU accelerator; list it under gpu_execution_accelerator");
    expect_config_error("optimization { execution_accelerators {\n"
                        "  gpu_execution_accelerator [ { name: \"amx\" } ]\n} }\n",
                        "acc.pbtxt:2:39: amx is a CPU accelerator; list it under cpu_execution_accelerator");
    expect_config_error("optimization { execution_accelerators { cpu_execution_accelerator [ {\n"
                        "  name: \"amx\"\n  parameters { key: \"tile\" value: \"32\" }\n} ] } }\n",
                        "acc.pbtxt:3:35: accelerator amx has no parameter \"tile\" (it takes tile_size, "
                        "quantization_support, threads)");
    expect_config_error("optimization { execution_accelerators { cpu_execution_accelerator [ {\n"
                        "  name: \"amx\"\n  parameters { key: \"tile_size\" value: \"32x32\" }\n} ] } }\n",
                        "acc.pbtxt:3:40: amx parameter tile_size is \"32x32\"; expected a whole number from 1 to 1024");
    expect_config_error("optimization { execution_accelerators { cpu_execution_accelerator [ {\n"
                        "  name: \"amx\"\n  parameters { key: \"quantization_support\" value: \"int2\" }\n} ] } }\n",
                        "acc.pbtxt:3:51: amx parameter quantization_support: unknown quantization \"int2\" (expected "
                        "int4, int8, fp16, bf16, none, or one of f32, q8_0, q4_0, q4_1, iq4_nl, iq4_xs, q4_k, q5_k, q6_k)");
    expect_config_error("optimization { execution_accelerators { gpu_execution_accelerator [ {\n"
                        "  name: \"mps\"\n  parameters { key: \"precision\" value: \"fp8\" }\n} ] } }\n",
                        "acc.pbtxt:3:40: mps parameter precision is \"fp8\"; expected fp16, bf16 or fp32");
    expect_config_error(
        "optimization { execution_accelerators { gpu_execution_accelerator [ {\n"
        "  name: \"metal\"\n  parameters { key: \"use_unified_memory\" value: \"sometimes\" }\n} ] } }\n",
        "acc.pbtxt:3:49: metal parameter use_unified_memory is \"sometimes\"; expected true or false");
}

/* ---- detection from fake /proc and /sys trees ---- */

static void put(const char *root, const char *rel, const char *text) {
    char path[2048], dir[2048];
    snprintf(path, sizeof path, "%s%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    mkdir(root, 0755);
    for (char *p = dir + strlen(root) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
    ts_test_write_file(path, text, strlen(text));
}

static void test_meminfo(void **state) {
    (void)state;
    const char text[] = "MemTotal:       24683656 kB\nMemFree:        23795324 kB\nMemAvailable:   24331644 kB\n";
    uint64_t total = 0, avail = 0;
    assert_int_equal(ts_devices_parse_meminfo(text, sizeof text - 1, &total, &avail), 0);
    assert_true(total == 24683656ull * 1024);
    assert_true(avail == 24331644ull * 1024);
    assert_int_equal(ts_devices_parse_meminfo("MemFree: 1 kB\n", 14, &total, &avail), -1);
}

static void test_cgroup_v2_limit(void **state) {
    (void)state;
    char root[1024];
    snprintf(root, sizeof root, "%s/fs-v2", ts_test_tmpdir());
    put(root, "/proc/meminfo", "MemTotal: 16777216 kB\nMemAvailable: 12582912 kB\n");
    put(root, "/proc/self/cgroup", "0::/tessera.slice/job\n");
    put(root, "/proc/self/mountinfo",
        "24 1 0:22 / / rw - ext4 /dev/root rw\n"
        "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    put(root, "/sys/fs/cgroup/tessera.slice/job/memory.max", "8589934592\n");
    put(root, "/sys/fs/cgroup/tessera.slice/job/memory.current", "3221225472\n");
    put(root, "/sys/fs/cgroup/tessera.slice/job/memory.stat",
        "anon 2147483648\nfile 1073741824\ninactive_file 1073741824\n");
    put(root, "/sys/fs/cgroup/tessera.slice/memory.max", "6442450944\n");
    put(root, "/sys/fs/cgroup/memory.max", "max\n");
    ts_memory_info m;
    ts_devices_detect_memory(root, &m);
    assert_true(m.total_bytes == 16ull << 30);
    assert_true(m.available_bytes == 12ull << 30);
    assert_true(m.cgroup_limit_bytes == 6ull << 30);
    assert_string_equal(m.cgroup_limit_file, "/sys/fs/cgroup/tessera.slice/memory.max");
    assert_true(m.cgroup_usage_bytes == 3ull << 30);
    assert_true(m.cgroup_reclaimable_bytes == 1ull << 30);
    /* 6 GiB limit - (3 GiB used - 1 GiB reclaimable) = 4 GiB, less than MemAvailable */
    assert_true(m.usable_bytes == 4ull << 30);
}

static void test_cgroup_v1_limit_and_no_limit(void **state) {
    (void)state;
    char root[1024];
    snprintf(root, sizeof root, "%s/fs-v1", ts_test_tmpdir());
    put(root, "/proc/meminfo", "MemTotal: 16777216 kB\nMemAvailable: 12582912 kB\n");
    put(root, "/proc/self/cgroup", "5:memory:/docker/abc\n4:cpu:/docker/abc\n0::/\n");
    /* inside the container the memory hierarchy shows its own cgroup at the mount point */
    put(root, "/proc/self/mountinfo", "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    put(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n");
    put(root, "/sys/fs/cgroup/memory/memory.usage_in_bytes", "1073741824\n");
    put(root, "/sys/fs/cgroup/memory/memory.stat", "cache 0\ntotal_inactive_file 268435456\n");
    ts_memory_info m;
    ts_devices_detect_memory(root, &m);
    assert_true(m.cgroup_limit_bytes == 2ull << 30);
    assert_true(m.usable_bytes == (1ull << 30) + (256ull << 20));

    put(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    ts_devices_detect_memory(root, &m);
    assert_true(m.cgroup_limit_bytes == 0);
    assert_true(m.usable_bytes == 12ull << 30);
}

static void test_cpu_identity_and_caches_from_sysfs(void **state) {
    (void)state;
    char root[1024];
    snprintf(root, sizeof root, "%s/fs-arm", ts_test_tmpdir());
    put(root, "/proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n");
    const char *base = "/sys/devices/system/cpu/cpu0/cache";
    char p[256];
    snprintf(p, sizeof p, "%s/index0/level", base), put(root, p, "1\n");
    snprintf(p, sizeof p, "%s/index0/type", base), put(root, p, "Data\n");
    snprintf(p, sizeof p, "%s/index0/size", base), put(root, p, "64K\n");
    snprintf(p, sizeof p, "%s/index1/level", base), put(root, p, "1\n");
    snprintf(p, sizeof p, "%s/index1/type", base), put(root, p, "Instruction\n");
    snprintf(p, sizeof p, "%s/index1/size", base), put(root, p, "128K\n");
    snprintf(p, sizeof p, "%s/index2/level", base), put(root, p, "2\n");
    snprintf(p, sizeof p, "%s/index2/type", base), put(root, p, "Unified\n");
    snprintf(p, sizeof p, "%s/index2/size", base), put(root, p, "4096K\n");
    ts_cpu_info cpu;
    ts_devices_detect_cpu(root, &cpu);
    assert_string_equal(cpu.vendor, "Apple");
    assert_string_equal(cpu.model, "part 0x022");
    assert_true(cpu.l1d_bytes == 64u << 10);
    assert_true(cpu.l2_bytes == 4u << 20);
    assert_true(cpu.l3_bytes == 0);
    assert_true(cpu.cores_usable >= 1 && cpu.cores_usable <= cpu.cores_online);
}

static void test_real_detection(void **state) {
    (void)state;
    ts_device_info dev = detect_with_hidden(NULL);
    assert_true(dev.cpu.cores_usable >= 1);
    assert_true(dev.memory.total_bytes > 0);
    assert_true(dev.memory.usable_bytes > 0 && dev.memory.usable_bytes <= dev.memory.total_bytes);
    assert_true(dev.cpu.vendor[0] && dev.cpu.model[0]);
    if (dev.num_gpus == 0) assert_true(dev.gpu_status[0] != '\0');
    for (int i = 0; i < dev.num_gpus; i++) assert_true(dev.gpus[i].total_bytes >= dev.gpus[i].free_bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_amx_hidden_falls_back_to_avx512),
        cmocka_unit_test(test_avx512_hidden_falls_back_to_avx2),
        cmocka_unit_test(test_avx2_hidden_falls_back_to_generic),
        cmocka_unit_test(test_amx_used_when_present),
        cmocka_unit_test(test_neon_on_x86),
        cmocka_unit_test(test_cuda_hidden),
        cmocka_unit_test(test_cuda_without_nvml),
        cmocka_unit_test(test_cuda_default_library_absent),
        cmocka_unit_test(test_mps_and_metal_on_linux),
        cmocka_unit_test(test_seed_resolution_is_logged),
        cmocka_unit_test(test_fabricated_aarch64),
        cmocka_unit_test(test_fabricated_amx_refused_by_kernel),
        cmocka_unit_test(test_fabricated_gpu),
        cmocka_unit_test(test_kind_gpu_without_gpu_is_an_error),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_accelerator_errors),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_cgroup_v2_limit),
        cmocka_unit_test(test_cgroup_v1_limit_and_no_limit),
        cmocka_unit_test(test_cpu_identity_and_caches_from_sysfs),
        cmocka_unit_test(test_real_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
