# CTest driver of the report page test (cmake -P): renders the shoot-out's index.html in headless
# Chromium and fails on console errors, a horizontal overflow, a failed sort self-test or a
# reference to anything that is not a file next to the page.
#   -DSHOOTOUT=<harness> -DCHROMIUM=<browser, or empty> -DOUT=<scratch folder>
cmake_minimum_required(VERSION 3.25)

function(fail msg)
  message(FATAL_ERROR "check_report: ${msg}")
endfunction()

if(NOT CHROMIUM)
  message("SKIPPED: chromium not found (install the Debian package chromium to render the report)")
  return()
endif()

file(REMOVE_RECURSE "${OUT}")
file(MAKE_DIRECTORY "${OUT}")
# A small run with a classifier, the reward task and two seeds (bands in the plots), plus the
# Fashion-MNIST problems when this build has them.
execute_process(COMMAND ${SHOOTOUT} --smoke --seeds 1,2 --problems rosenbrock-2,logreg,fmnist,addition
                        --out "${OUT}/run" --no-progress
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  fail("shootout exited with ${rc}:\n${out}\n${err}")
endif()
set(page "${OUT}/run/index.html")
file(READ "${page}" html)

# Offline: every src/href is a file next to the page, an in-page anchor or the empty data: icon.
string(REGEX MATCHALL "(src|href)=\"[^\"]*\"" refs "${html}")
list(LENGTH refs nrefs)
if(nrefs LESS 5)
  fail("index.html references only ${nrefs} resources (expected the plots and the data files)")
endif()
foreach(ref IN LISTS refs)
  string(REGEX REPLACE "^(src|href)=\"([^\"]*)\"$" "\\2" target "${ref}")
  if(target MATCHES "^#" OR target STREQUAL "data:,")
    continue()
  endif()
  if(target MATCHES ":" OR target MATCHES "^/" OR NOT EXISTS "${OUT}/run/${target}")
    fail("index.html refers to '${target}', which is not a file next to it")
  endif()
endforeach()
foreach(needle "<table class=\"sortable\">" "SIMD ISA" "threads" "class=\"best\"" "<th")
  string(FIND "${html}" "${needle}" at)
  if(at EQUAL -1)
    fail("index.html lacks '${needle}'")
  endif()
endforeach()

set(browser ${CHROMIUM} --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions
    --user-data-dir=${OUT}/profile --enable-logging=stderr --v=0 --window-size=1400,2000)
function(check_console what text)
  string(REGEX MATCHALL "[^\n]*(Uncaught|ERROR:CONSOLE)[^\n]*" bad "${text}")
  if(bad)
    fail("${what}: console errors:\n${bad}")
  endif()
endfunction()

# 1. The screenshot: the page renders.
execute_process(COMMAND ${browser} --screenshot=${OUT}/report.png "file://${page}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  fail("chromium --screenshot exited with ${rc}:\n${err}")
endif()
check_console("screenshot" "${out}${err}")
file(SIZE "${OUT}/report.png" png_size)
if(png_size LESS 20000)
  fail("report.png has ${png_size} bytes: the page did not render")
endif()

# 2. The DOM after the page's script ran with #selftest: every header sorted both ways, no
#    horizontal overflow at 1400 px.
execute_process(COMMAND ${browser} --dump-dom "file://${page}#selftest"
                RESULT_VARIABLE rc OUTPUT_VARIABLE dom ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  fail("chromium --dump-dom exited with ${rc}:\n${err}")
endif()
check_console("dump-dom" "${err}")
string(REGEX MATCH "<html[^>]*>" root "${dom}")
if(NOT root MATCHES "data-selftest=\"pass\"")
  string(REGEX MATCH "data-selftest=\"[^\"]*\"" why "${root}")
  fail("the sort self-test did not pass: ${why} (root element: ${root})")
endif()
if(NOT root MATCHES "data-overflow=\"no\"")
  fail("the page overflows horizontally at 1400 px: ${root}")
endif()
string(REGEX MATCH "data-tables=\"([0-9]+)\"" _ "${root}")
message(STATUS "report: ${CMAKE_MATCH_1} sortable tables, selftest pass, no overflow, screenshot ${png_size} bytes")
