# Finds stochgrad's dependencies (Eigen3, xsimd, Threads). Used by the build tree and by the
# installed package config.
#
# xsimd's installed target is plain `xsimd` (no namespace). Debian 12's xsimd 8.1 export also lists
# `xtl` in INTERFACE_LINK_LIBRARIES without looking it up, which turns into a bogus `-lxtl` when
# xtl-dev is absent. xtl is only needed for xsimd's optional xtl-complex support, which stochgrad
# does not use: look it up if present, else stand in an empty interface target.
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.3 NO_MODULE)
find_dependency(xsimd 8)
if(NOT TARGET xsimd AND TARGET xsimd::xsimd)
  add_library(xsimd ALIAS xsimd::xsimd)
endif()
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_sg_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_sg_xsimd_links MATCHES "(^|;)xtl(;|$)")
    find_package(xtl QUIET)
    if(NOT TARGET xtl)
      add_library(xtl INTERFACE IMPORTED)
    endif()
  endif()
endif()
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_dependency(Threads)
