# Optional parts: each is detected and switched on automatically, and can be forced off.
# A machine without nvcc, Verilator, SystemC or LibTorch still builds and tests the rest.

# CUDA kernels (kernels/cuda): need nvcc.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_dmx_cuda_default ON)
else()
  set(_dmx_cuda_default OFF)
endif()
option(DMX_WITH_CUDA "Build the CUDA kernels (needs nvcc)" ${_dmx_cuda_default})
if(DMX_WITH_CUDA)
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
endif()

# NVIDIA's host-callable FP8/FP6/FP4 conversions: an independent oracle for the conformance suite.
find_path(DMX_CUDA_FP_INCLUDE cuda_fp8.h PATHS /usr/local/cuda/include NO_DEFAULT_PATH)
if(DMX_CUDA_FP_INCLUDE AND EXISTS ${DMX_CUDA_FP_INCLUDE}/cuda_fp4.h AND EXISTS ${DMX_CUDA_FP_INCLUDE}/cuda_fp6.h)
  set(DMX_HAVE_CUDA_FP_HEADERS ON)
else()
  set(DMX_HAVE_CUDA_FP_HEADERS OFF)
endif()

# Verilator (rtl/).
find_package(verilator HINTS $ENV{VERILATOR_ROOT} /usr/share/verilator QUIET)
if(verilator_FOUND)
  set(_dmx_rtl_default ON)
else()
  set(_dmx_rtl_default OFF)
endif()
option(DMX_WITH_RTL "Build the Verilated RTL unit and its testbench" ${_dmx_rtl_default})

# SystemC (sim/).
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SYSTEMC QUIET IMPORTED_TARGET systemc)
endif()
if(SYSTEMC_FOUND)
  set(_dmx_sc_default ON)
else()
  set(_dmx_sc_default OFF)
endif()
option(DMX_WITH_SYSTEMC "Build the SystemC accelerator model" ${_dmx_sc_default})

# LibTorch (quant/).
find_package(Torch QUIET)
if(Torch_FOUND)
  set(_dmx_torch_default ON)
else()
  set(_dmx_torch_default OFF)
endif()
option(DMX_WITH_TORCH "Build the LibTorch LLM runtime and dMX search" ${_dmx_torch_default})

find_program(DMX_YOSYS yosys)
if(DMX_YOSYS)
  set(DMX_HAVE_YOSYS ON)
else()
  set(DMX_HAVE_YOSYS OFF)
endif()

find_package(benchmark QUIET)
find_package(nlohmann_json QUIET)
find_package(CLI11 QUIET)
