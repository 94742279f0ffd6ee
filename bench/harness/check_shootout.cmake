# CTest driver for the shoot-out harness smoke tests (cmake -P).
#   -DSHOOTOUT=<path of the executable> -DOUT=<scratch folder> -DCHECK=run|errors|quality
cmake_minimum_required(VERSION 3.25)

function(fail msg)
  message(FATAL_ERROR "check_shootout (${CHECK}): ${msg}")
endfunction()

# Runs the harness with ARGN; sets <prefix>_rc, <prefix>_out, <prefix>_err in the caller.
function(shootout prefix)
  execute_process(COMMAND ${SHOOTOUT} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${prefix}_rc "${rc}" PARENT_SCOPE)
  set(${prefix}_out "${out}" PARENT_SCOPE)
  set(${prefix}_err "${err}" PARENT_SCOPE)
endfunction()

function(expect_usage_error what regex)
  shootout(r ${ARGN})
  if(r_rc EQUAL 0)
    fail("${what}: exit status 0 for '${ARGN}'")
  endif()
  if(NOT r_err MATCHES "${regex}")
    fail("${what}: stderr does not match '${regex}':\n${r_err}")
  endif()
  if(NOT r_out STREQUAL "")
    fail("${what}: printed to stdout:\n${r_out}")
  endif()
endfunction()

file(REMOVE_RECURSE "${OUT}")
file(MAKE_DIRECTORY "${OUT}")

if(CHECK STREQUAL "errors")
  expect_usage_error("unknown option" "unknown option '--frobnicate'" --frobnicate)
  expect_usage_error("bad number" "--threads expects an integer" --threads abc)
  expect_usage_error("zero threads" "--threads expects an integer in \\[1" --threads 0)
  expect_usage_error("missing value" "option --steps needs a value" --steps)
  expect_usage_error("unknown problem" "unknown problem 'nosuch' \\(choose from: .*rosenbrock-2" --problems nosuch)
  expect_usage_error("unknown stepper" "unknown stepper 'nosuch'" --steppers nosuch)
  expect_usage_error("two modes" "choose one mode" --quick --full)
  expect_usage_error("stray argument" "unexpected argument 'extra'" extra)
  expect_usage_error("bad --dim" "not a scalable family" --dim mlp=3)
  expect_usage_error("bad --set" "--set expects" --set lr=3)
  shootout(r --frobnicate)
  if(NOT r_rc EQUAL 2)
    fail("a bad option must exit with status 2, got ${r_rc}")
  endif()

  # An output folder below a regular file cannot be created (also for root): a clear error,
  # exit 1, before any work (nothing on stdout, no run announced, no problem built).
  file(WRITE "${OUT}/blocker" "not a folder\n")
  string(TIMESTAMP t0 "%s")
  shootout(r --out "${OUT}/blocker/sub" --no-progress)
  string(TIMESTAMP t1 "%s")
  if(NOT r_rc EQUAL 1)
    fail("unwritable output folder: expected exit 1, got ${r_rc}\n${r_err}")
  endif()
  if(NOT r_err MATCHES "cannot write to output folder '.*blocker/sub'")
    fail("unwritable output folder: unclear message:\n${r_err}")
  endif()
  if(NOT r_out STREQUAL "" OR r_err MATCHES "runs \\(")
    fail("unwritable output folder: work started before the check:\n${r_out}${r_err}")
  endif()
  math(EXPR dt "${t1} - ${t0}")
  if(dt GREATER 5)
    fail("unwritable output folder: took ${dt} s to fail")
  endif()

  # Missing dataset: a clear error naming the file, exit 1.
  shootout(r --smoke --problems logreg --data-dir "${OUT}/no-data" --out "${OUT}/nodata" --no-progress)
  if(NOT r_rc EQUAL 1 OR NOT r_err MATCHES "cannot open '.*no-data/breast_cancer.csv'")
    fail("missing dataset: expected exit 1 and a message naming the file, got ${r_rc}:\n${r_err}")
  endif()

  # Fashion-MNIST files missing: the problems are skipped with the reason (never replaced), and
  # asking only for them is an error (exit 1) naming the missing file.
  shootout(r --smoke --problems fmnist --fashion-mnist-dir "${OUT}/no-fmnist" --out "${OUT}/nofm" --no-progress)
  if(NOT r_rc EQUAL 1 OR NOT r_err MATCHES "skipping problem fmnist-softmax: '.*no-fmnist/train-images-idx3-ubyte.gz' not found"
     OR NOT r_err MATCHES "none of the selected problems is available")
    fail("missing Fashion-MNIST: expected exit 1 and the skip reason, got ${r_rc}:\n${r_out}\n${r_err}")
  endif()
  shootout(r --smoke --problems rosenbrock-2,fmnist --steppers ref-gd --fashion-mnist-dir "${OUT}/no-fmnist"
           --out "${OUT}/nofm2" --no-progress)
  if(NOT r_rc EQUAL 0 OR NOT r_err MATCHES "skipping problem fmnist-mlp" OR NOT r_out MATCHES "skipped: fmnist-mlp: ")
    fail("missing Fashion-MNIST beside another problem: expected a run that says what it skipped, got ${r_rc}:\n${r_out}\n${r_err}")
  endif()
  # A corrupt (gzip-compressed, bad magic) idx file: a clear error naming it, exit 1.
  if(HAVE_ZLIB)
    file(MAKE_DIRECTORY "${OUT}/bad-fmnist/raw")
    file(WRITE "${OUT}/bad-fmnist/raw/x" "this is not an idx file")
    foreach(f train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
      file(ARCHIVE_CREATE OUTPUT "${OUT}/bad-fmnist/${f}.gz" PATHS "${OUT}/bad-fmnist/raw/x" FORMAT raw COMPRESSION GZip)
    endforeach()
    shootout(r --smoke --problems fmnist-softmax --fashion-mnist-dir "${OUT}/bad-fmnist" --out "${OUT}/badfm" --no-progress)
    if(NOT r_rc EQUAL 1 OR NOT r_err MATCHES "idx file '.*bad-fmnist/train-images-idx3-ubyte.gz': bad magic number: starts with 74 68")
      fail("corrupt Fashion-MNIST file: expected exit 1 and a message naming it, got ${r_rc}:\n${r_out}\n${r_err}")
    endif()
  endif()
  return()
endif()

if(CHECK STREQUAL "quality")
  # The gradient-quality columns measure the library's own estimates (zo::estimate) through the
  # harness's Welford pipeline; check them against closed forms with many samples, on
  # rosenbrock-10 at its start point (d = 10, eps = c = 1e-3: the O(eps^2) bias is ~1e-6 of |g|).
  #  - MeZO, g^ = (g.z) z with z ~ N(0, I): E|g^|^2 = (d + 2)|g|^2, so trace Cov / |g|^2 = d + 1 = 11.
  #    Per sample X = |g^|^2 / |g|^2 = u^2 (u^2 + w), u ~ N(0,1), w ~ chi2(d - 1): E X = d + 2,
  #    E X^2 = 105 + 30 (d - 1) + 3 (d - 1)(d + 1) = 672, sd = sqrt(672 - 144) = 23.0; with K = 4000
  #    the estimate's standard error is 23.0 / sqrt(4000) = 0.36: accept 11 +- 1.5 (4 SE).
  #  - SPSA, g^ = (g.D) D with Rademacher D: E|g^|^2 = d |g|^2, trace Cov / |g|^2 = d - 1 = 9;
  #    X = d (g.D)^2 / |g|^2 has variance d^2 (2 - 2 sum g_i^4 / |g|^4) <= 2 d^2 = 200, sd <= 14.1,
  #    standard error <= 0.22: accept 9 +- 0.9 (4 SE).
  #  - Both unbiased: |mean - g| / |g| ~ sqrt(trace Cov / (K |g|^2)) <= sqrt(11 / 4000) = 0.052:
  #    accept rel_bias < 0.21 (4 SE), and the exact-gradient stepper adan scores cos 1, var 0.
  shootout(q --problems rosenbrock-10 --steppers mezo,spall-spsa,adan --steps 1 --seeds 1 --grad-samples 4000 --threads 2
           --out "${OUT}/quality" --no-progress)
  if(NOT q_rc EQUAL 0)
    fail("quality run exited with ${q_rc}:\n${q_out}\n${q_err}")
  endif()
  file(READ "${OUT}/quality/results.json" json)
  string(JSON nruns LENGTH "${json}" runs)
  if(NOT nruns EQUAL 3)
    fail("quality run: ${nruns} runs, expected 3")
  endif()
  foreach(i RANGE 2)
    string(JSON stepper GET "${json}" runs ${i} stepper)
    string(JSON rv GET "${json}" runs ${i} grad_quality rel_var)
    string(JSON rb GET "${json}" runs ${i} grad_quality rel_bias)
    string(JSON cs GET "${json}" runs ${i} grad_quality cos_mean)
    if(stepper STREQUAL "mezo")
      set(lo 9.5)
      set(hi 12.5)
    elseif(stepper STREQUAL "spall-spsa")
      set(lo 8.1)
      set(hi 9.9)
    else()
      set(lo -1e-12)
      set(hi 1e-12)
    endif()
    if(rv LESS lo OR rv GREATER hi OR rb GREATER 0.21)
      fail("${stepper}: rel_var ${rv} outside [${lo}, ${hi}] or rel_bias ${rb} >= 0.21 (cos ${cs})")
    endif()
    message(STATUS "${stepper}: rel_var ${rv}, rel_bias ${rb}, cos_mean ${cs}")
  endforeach()
  return()
endif()

if(NOT CHECK STREQUAL "run")
  fail("unknown CHECK '${CHECK}'")
endif()

# ------------------------------------------------------------------ a smoke run, twice
foreach(t 1 2)
  shootout(r${t} --smoke --threads ${t} --out "${OUT}/t${t}" --no-progress)
  if(NOT r${t}_rc EQUAL 0)
    fail("--smoke --threads ${t} exited with ${r${t}_rc}:\n${r${t}_out}\n${r${t}_err}")
  endif()
endforeach()
set(stdout "${r1_out}")
foreach(needle "shoot-out: mode smoke" "problem" "stepper" "reward" "ref-gd" "ref-zo-sgd" "adan" "mezo" "mezo+adan" "es"
        "sparse-mezo" "spsa" "spsa-gc" "grpo" "bnpo" "grpo-adv+sgd" "rloo" "reinforce" "quadratic-1M" "rosenbrock-10"
        "logreg-cancer" "mlp-digits" "addition-policy" "targets:")
  string(FIND "${stdout}" "${needle}" at)
  if(at EQUAL -1)
    fail("terminal table lacks '${needle}':\n${stdout}")
  endif()
endforeach()

set(d "${OUT}/t1")
foreach(f summary.txt results.json results.csv curves.csv index.html plot-quadratic-1k-rot.svg plot-quadratic-1M.svg
        plot-rosenbrock-2.svg plot-rosenbrock-10.svg plot-logreg-cancer.svg plot-logreg-cancer-accuracy.svg
        plot-mlp-digits.svg plot-mlp-digits-accuracy.svg plot-addition-policy.svg plot-addition-policy-accuracy.svg
        plot-addition-policy-reward.svg)
  if(NOT EXISTS "${d}/${f}")
    fail("missing output file ${d}/${f}")
  endif()
endforeach()
file(READ "${d}/summary.txt" summary)
string(FIND "${stdout}" "${summary}" at)  # a plain substring search (the table holds regex characters)
if(NOT at EQUAL 0)
  fail("summary.txt differs from the terminal table")
endif()

set(first_order ref-gd adan mfac)
set(policy_gradient grpo bnpo grpo-adv+sgd rloo reinforce)
# JSON: parses, one entry per applicable (problem, stepper) pair, every run ok with curves and a
# measured gradient quality; what each family saw from the problem (first-order: gradients only;
# zeroth-order: losses only; policy-gradient: sampled completions only).
file(READ "${d}/results.json" json)
string(JSON tool GET "${json}" tool)
string(JSON nruns LENGTH "${json}" runs)
string(JSON nprob LENGTH "${json}" problems)
# 8 objective problems x (2 first-order + 8 zeroth-order steppers) + 1 reward task x 5 = 85, plus
# mfac on logreg-cancer and mlp-digits (87), plus 10 per Fashion-MNIST problem (present when this build has zlib and the machine the files).
set(nfm 0)
math(EXPR lastp "${nprob} - 1")
foreach(i RANGE ${lastp})
  string(JSON pname GET "${json}" problems ${i} name)
  if(pname MATCHES "^fmnist-")
    math(EXPR nfm "${nfm} + 1")
  endif()
endforeach()
if(HAVE_ZLIB AND EXISTS "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz" AND NOT nfm EQUAL 2)
  fail("zlib and Fashion-MNIST are here but the run has ${nfm} fmnist problems")
endif()
math(EXPR want_runs "87 + 10 * ${nfm}")
math(EXPR want_prob "9 + ${nfm}")
if(NOT tool STREQUAL "stochgrad shootout" OR NOT nruns EQUAL want_runs OR NOT nprob EQUAL want_prob)
  fail("results.json: tool '${tool}', ${nruns} runs (expected ${want_runs}), ${nprob} problems (expected ${want_prob})")
endif()
math(EXPR last "${nruns} - 1")
foreach(i RANGE ${last})
  string(JSON status GET "${json}" runs ${i} status)
  string(JSON stepper GET "${json}" runs ${i} stepper)
  string(JSON problem GET "${json}" runs ${i} problem)
  string(JSON npts LENGTH "${json}" runs ${i} curve step)
  string(JSON measured GET "${json}" runs ${i} grad_quality measured)
  if(NOT status STREQUAL "ok" OR npts LESS 2 OR NOT measured)
    fail("run ${i} (${problem} x ${stepper}): status ${status}, ${npts} curve points, quality measured ${measured}")
  endif()
  string(JSON cosv GET "${json}" runs ${i} grad_quality cos_mean)
  if((stepper STREQUAL "ref-gd" OR stepper STREQUAL "adan") AND NOT cosv MATCHES "^(1|0\\.99999)")
    fail("${stepper} uses the exact gradient: cosine must be 1, got ${cosv} on ${problem}")
  endif()
  string(JSON done GET "${json}" runs ${i} steps_done)
  string(JSON nl GET "${json}" runs ${i} losses)
  string(JSON ng GET "${json}" runs ${i} gradients)
  string(JSON nc GET "${json}" runs ${i} completions)
  list(FIND first_order "${stepper}" fo)
  list(FIND policy_gradient "${stepper}" pg)
  if(fo GREATER -1)
    set(ok_counts "${nl} 0 ${ng} ${done} ${nc} 0")
  elseif(pg GREATER -1)
    math(EXPR want "${done} * 256")  # 32 prompts x 8 completions per step
    set(ok_counts "${nl} 0 ${ng} 0 ${nc} ${want}")
  else()
    math(EXPR want "${done} * 2")  # two-point estimators: 2 losses per step and query pair
    if(stepper STREQUAL "es")
      math(EXPR want "${done} * 16")
    endif()
    set(ok_counts "${nl} ${want} ${ng} 0 ${nc} 0")
    if(stepper STREQUAL "spsa")
      # Calibrated SPSA: 5 noise samples + 25 probe pairs + at least one curvature check (at most
      # 7 expansion and 200 backtracking checks per probe, 4 probes) before the first step; 2 per
      # step, plus the blocking evaluation of each applied step.
      math(EXPR lo "${done} * 2 + 56")
      math(EXPR hi "${done} * 3 + 55 + 4 * 207")
      if(nl LESS lo OR nl GREATER hi)
        fail("run ${i} (${problem} x spsa): ${nl} losses after ${done} steps, outside [${lo}, ${hi}]")
      endif()
      set(ok_counts "0 0 ${ng} 0 ${nc} 0")
    endif()
  endif()
  string(REPLACE " " ";" cl "${ok_counts}")
  list(GET cl 0 a0)
  list(GET cl 1 b0)
  list(GET cl 2 a1)
  list(GET cl 3 b1)
  list(GET cl 4 a2)
  list(GET cl 5 b2)
  if(NOT a0 EQUAL b0 OR NOT a1 EQUAL b1 OR NOT a2 EQUAL b2)
    fail("run ${i} (${problem} x ${stepper}): losses ${nl}, gradients ${ng}, completions ${nc} after ${done} steps "
         "(expected ${b0}, ${b1}, ${b2})")
  endif()
endforeach()

# CSV: header and one line per run.
file(STRINGS "${d}/results.csv" csv)
list(LENGTH csv nlines)
list(GET csv 0 header)
math(EXPR expect "${nruns} + 1")
if(NOT nlines EQUAL expect OR NOT header MATCHES "^problem,stepper,family,seed,.*grad_cos_mean.*updates_per_s.*peak_rss_mb")
  fail("results.csv: ${nlines} lines (expected ${expect}), header '${header}'")
endif()

# The reward task's plots: reward and accuracy curves of the policy-gradient steppers.
file(READ "${d}/plot-addition-policy-reward.svg" svg)
foreach(needle "expected reward" ">grpo<" ">bnpo<" ">grpo-adv+sgd<" "<polyline")
  string(FIND "${svg}" "${needle}" at)
  if(at EQUAL -1)
    fail("plot-addition-policy-reward.svg lacks '${needle}'")
  endif()
endforeach()

# SVG: a complete document with axes labels, a legend entry and a curve per stepper.
file(READ "${d}/plot-rosenbrock-2.svg" svg)
foreach(needle "<svg xmlns=\"http://www.w3.org/2000/svg\"" "</svg>" "<polyline" "f(x) - f* (log scale)" ">step<"
        ">ref-gd<" ">ref-zo-sgd<" ">adan<" ">mezo+adan<" ">es (step x" ">sparse-mezo<")
  string(FIND "${svg}" "${needle}" at)
  if(at EQUAL -1)
    fail("plot-rosenbrock-2.svg lacks '${needle}'")
  endif()
endforeach()

# Determinism: the same seeds give the same curves and gradient-quality numbers with 2 threads,
# for the reference loops and every library stepper (curves.csv holds every recorded point of
# every run with 17 significant digits).
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${OUT}/t1/curves.csv" "${OUT}/t2/curves.csv"
                RESULT_VARIABLE same)
if(NOT same EQUAL 0)
  file(STRINGS "${OUT}/t1/curves.csv" c1)
  file(STRINGS "${OUT}/t2/curves.csv" c2)
  list(LENGTH c1 n1)
  math(EXPR n1 "${n1} - 1")
  foreach(k RANGE ${n1})
    list(GET c1 ${k} l1)
    list(GET c2 ${k} l2)
    if(NOT l1 STREQUAL l2)
      fail("curves.csv differs between --threads 1 and --threads 2, first at line ${k}:\n  ${l1}\n  ${l2}")
    endif()
  endforeach()
  fail("curves.csv differs between --threads 1 and --threads 2")
endif()
file(READ "${OUT}/t2/results.json" json2)
foreach(i RANGE ${last})
  foreach(field cos_mean rel_var rel_bias)
    string(JSON a GET "${json}" runs ${i} grad_quality ${field})
    string(JSON b GET "${json2}" runs ${i} grad_quality ${field})
    if(NOT a STREQUAL b)
      fail("run ${i}: grad_quality ${field} differs between 1 and 2 threads: ${a} vs ${b}")
    endif()
  endforeach()
endforeach()
