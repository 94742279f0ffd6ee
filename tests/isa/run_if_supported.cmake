# Runs an ISA build of a test only where the CPU has that ISA (tests/isa/kat.cpp), so that a build
# for AVX-512 reports SKIPPED on an AVX2 machine instead of dying on an illegal instruction (its
# static initialisers may already use the wider instructions, so the check cannot live inside it).
# Usage: cmake -DTEST_BINARY=<path> -DREQUIRED_FLAGS="avx2;fma" -P run_if_supported.cmake
set(_flags "")
if(EXISTS /proc/cpuinfo)
  file(STRINGS /proc/cpuinfo _lines REGEX "^flags")
  list(GET _lines 0 _flags)
endif()
foreach(f IN LISTS REQUIRED_FLAGS)
  if(NOT _flags MATCHES "[ \t]${f}([ \t]|$)")
    message("SKIPPED: this CPU lacks ${f}, which ${TEST_BINARY} was built for")
    return()
  endif()
endforeach()
execute_process(COMMAND "${TEST_BINARY}" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${TEST_BINARY} failed (${_rc})")
endif()
