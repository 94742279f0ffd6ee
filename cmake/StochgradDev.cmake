# Helpers for stochgrad's own targets (tests, benchmarks, examples). Not installed.

# Warnings are errors on our code; third-party headers come in as SYSTEM includes
# (imported targets are SYSTEM by default).
function(stochgrad_dev_target target)
  target_link_libraries(${target} PRIVATE stochgrad::stochgrad)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wold-style-cast
    -Wnon-virtual-dtor -Woverloaded-virtual -Wcast-align -Wnull-dereference
    -Wformat=2 -Wimplicit-fallthrough)
  # GCC 12's AVX-512 intrinsics headers trigger false -Wmaybe-uninitialized reports from their own
  # `_mm512_undefined_*()` placeholders once inlined (GCC bug 105593, fixed in GCC 13); depending
  # on the inlining context the report is -Wmaybe-uninitialized or -Wuninitialized.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized)
  endif()
  if(STOCHGRAD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(STOCHGRAD_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(STOCHGRAD_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${STOCHGRAD_SANITIZE} -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${STOCHGRAD_SANITIZE})
  endif()
endfunction()
