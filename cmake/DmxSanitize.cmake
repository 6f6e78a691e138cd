# The sanitizer build (scripts/test_sanitizers.sh): AddressSanitizer + UndefinedBehaviorSanitizer on
# everything built, and the libFuzzer targets of every parser (clang only).
option(DMX_SANITIZE "Build with -fsanitize=address,undefined (tests of golden, quant's parsers, sim, kernels)" OFF)
option(DMX_FUZZERS "Build the libFuzzer targets (clang; coverage-instruments every library)" OFF)
if(DMX_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(DMX_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DMX_FUZZERS needs clang++ (configure with -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# dmx_add_fuzzer(NAME SOURCE LIBS lib... CORPUS dir LABEL label): a libFuzzer executable and two
# ctests: NAME_short (a few seconds over the seed corpus, in the default set of the sanitizer
# build) and NAME_long (10 minutes, label `long`). New inputs go to the build tree, never to the
# committed corpus.
function(dmx_add_fuzzer name source)
  cmake_parse_arguments(F "" "CORPUS;LABEL" "LIBS" ${ARGN})
  if(NOT DMX_FUZZERS)
    return()
  endif()
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/${name}_corpus)
  foreach(kind short long)
    if(kind STREQUAL "short")
      set(secs 5)
      set(labels ${F_LABEL})
    else()
      set(secs 600)
      set(labels "${F_LABEL};long")
    endif()
    add_test(NAME ${name}_${kind}
             COMMAND sh -c "mkdir -p '${work}' && exec '$<TARGET_FILE:${name}>' -max_total_time=${secs} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 '${work}' '${F_CORPUS}'")
    set_tests_properties(${name}_${kind} PROPERTIES LABELS "${labels}" TIMEOUT ${secs}0)
  endforeach()
endfunction()
