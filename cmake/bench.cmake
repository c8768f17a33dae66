# Benchmark programs (not tests): bench/kernels/*.c, one executable each, linked with the kernels.
# Also the kernel tests once more with instruction sets hidden, so each fallback table is selected.
file(GLOB TS_BENCH_SOURCES CONFIGURE_DEPENDS bench/kernels/*.c)
if(TESSERA_KERNELS_ONLY)
  set(TS_BENCH_LIB tessera_kernels)
else()
  set(TS_BENCH_LIB tessera_core)
endif()
foreach(src ${TS_BENCH_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE ${TS_BENCH_LIB})
endforeach()

if(TARGET backend_test_kernels AND TS_ARCH_X86)
  # name -> TESSERA_HIDE_FEATURES value; each run must select the next table down.
  set(TS_HIDE_amx "amx")
  set(TS_HIDE_avx512 "avx512")
  set(TS_HIDE_avx512_and_avx_vnni "avx512,avx_vnni")
  set(TS_HIDE_avx2 "avx2")
  foreach(hide amx avx512 avx512_and_avx_vnni avx2)
    add_test(NAME backend.test_kernels.hide_${hide} COMMAND backend_test_kernels)
    set_tests_properties(backend.test_kernels.hide_${hide} PROPERTIES TIMEOUT 900 LABELS backend
      ENVIRONMENT "TESSERA_HIDE_FEATURES=${TS_HIDE_${hide}}")
  endforeach()
endif()
