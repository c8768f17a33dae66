# Collects src/ into libtessera and builds the tessera binary.
set(TS_ARCH_X86 OFF)
set(TS_ARCH_ARM64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(TS_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(TS_ARCH_ARM64 ON)
endif()

# Per-ISA compile flags: only the files that need an instruction set are built with it;
# run-time dispatch (backend/cpu/cpu_features.c) decides which of them is called.
function(ts_apply_isa_flags)
  foreach(f ${ARGN})
    if(f MATCHES "_avx2\\.c$")
      set_source_files_properties(${f} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    elseif(f MATCHES "_avx512\\.c$")
      set_source_files_properties(${f} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512bf16;-mfma;-mf16c;-mavx2")
    elseif(f MATCHES "_amx\\.c$")
      set_source_files_properties(${f} PROPERTIES COMPILE_OPTIONS
        "-mamx-tile;-mamx-int8;-mamx-bf16;-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512bf16;-mfma;-mf16c;-mavx2")
    elseif(f MATCHES "_neon\\.c$")
      set_source_files_properties(${f} PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod+fp16")
    endif()
  endforeach()
endfunction()

function(ts_filter_arch out_var)
  set(result ${ARGN})
  if(NOT TS_ARCH_X86)
    list(FILTER result EXCLUDE REGEX "_(avx2|avx512|amx)\\.c$")
  endif()
  if(NOT TS_ARCH_ARM64)
    list(FILTER result EXCLUDE REGEX "_neon\\.c$")
  endif()
  set(${out_var} ${result} PARENT_SCOPE)
endfunction()

find_package(Threads REQUIRED)
find_library(TS_LIBM m)

if(TESSERA_KERNELS_ONLY)
  # Cross builds (aarch64 under qemu) need only what the kernels use: no HTTP, JSON or Unicode.
  file(GLOB TS_KERNEL_SOURCES CONFIGURE_DEPENDS
    src/base/*.c src/quant/*.c src/backend/cpu/*.c)
  ts_filter_arch(TS_KERNEL_SOURCES ${TS_KERNEL_SOURCES})
  ts_apply_isa_flags(${TS_KERNEL_SOURCES})
  add_library(tessera_kernels STATIC ${TS_KERNEL_SOURCES})
  target_include_directories(tessera_kernels PUBLIC ${CMAKE_SOURCE_DIR}/src)
  target_compile_definitions(tessera_kernels PUBLIC TS_KERNELS_ONLY=1)
  target_link_libraries(tessera_kernels PUBLIC Threads::Threads ${TS_LIBM})
  return()
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)

file(GLOB_RECURSE TS_CORE_SOURCES CONFIGURE_DEPENDS src/*.c)
list(FILTER TS_CORE_SOURCES EXCLUDE REGEX "/src/cli/")
ts_filter_arch(TS_CORE_SOURCES ${TS_CORE_SOURCES})
ts_apply_isa_flags(${TS_CORE_SOURCES})

add_library(tessera_core STATIC ${TS_CORE_SOURCES})
target_include_directories(tessera_core PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(tessera_core PUBLIC
  TESSERA_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
  TESSERA_CUDA_MODULE_DIR="${CMAKE_BINARY_DIR}")
target_link_libraries(tessera_core PUBLIC
  PkgConfig::JANSSON PkgConfig::MHD PkgConfig::UTF8PROC Threads::Threads ${CMAKE_DL_LIBS} ${TS_LIBM})

file(GLOB TS_CLI_SOURCES CONFIGURE_DEPENDS src/cli/*.c)
add_executable(tessera ${TS_CLI_SOURCES})
target_link_libraries(tessera PRIVATE tessera_core)

include(cmake/cuda.cmake)
