# Cross compilation for 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu; binaries run under
# qemu-aarch64 (package qemu-user) through CMake's emulator hook, so ctest works unchanged.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
# Static executables: dynamically linked multi-threaded aarch64 programs hang in qemu-user 7.2 here
# (Debian 12), static ones do not. Hence also no cmocka (Debian ships it shared only): pkg-config
# sees no target libraries and the kernel tests use their own small runner (kernel_test_shim.h).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(TS_LIBM /usr/aarch64-linux-gnu/lib/libm.a CACHE FILEPATH "static libm of the target")
set(ENV{PKG_CONFIG_LIBDIR} "/nonexistent")
set(ENV{PKG_CONFIG_PATH} "")
