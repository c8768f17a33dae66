# The CUDA backend is a separately loaded module (libtessera_cuda.so), so that the tessera
# binary runs on machines without a CUDA driver; backend/cuda_loader.c dlopens it when asked.
if(NOT TESSERA_CUDA)
  return()
endif()
file(GLOB TS_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu)
if(NOT TS_CUDA_SOURCES)
  return()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(STATUS "tessera: nvcc not found; the CUDA backend is not built")
  return()
endif()
# Ampere and Hopper machine code, plus Hopper PTX for later GPUs. Set before enable_language so that
# nvcc's own default (sm_52 or sm_75, which lack the tensor-core and dependent-launch kernels) does not
# stick; -DCMAKE_CUDA_ARCHITECTURES=... still overrides, and the module checks at run time which paths
# the code it runs was compiled with.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
add_library(tessera_cuda MODULE ${TS_CUDA_SOURCES})
target_include_directories(tessera_cuda PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_options(tessera_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-fPIC,-fvisibility=hidden -Werror=all-warnings>)
# The sanitizer runtime would be needed by the module too; the module is built plain.
target_link_libraries(tessera_cuda PRIVATE CUDA::cudart_static CUDA::cublas CUDA::cublasLt)
set_target_properties(tessera_cuda PROPERTIES PREFIX "lib" OUTPUT_NAME "tessera_cuda")
