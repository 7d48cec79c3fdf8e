# Sanitizer and fuzzing builds. The instrumentation applies to every target of the build, so
# each lives in a build directory of its own (scripts/sanitize.sh makes them: build-asan,
# build-tsan, build-fuzz) and builds only the targets it runs. Clang only: its libFuzzer,
# and one compiler for the three builds. Debian's libraries (gRPC, protobuf, Abseil,
# librdkafka) are not instrumented; what runs inside them is not checked.
#
#   STIP_SANITIZE=address   ASan + UBSan (every UB check fatal), for the unit tests
#   STIP_SANITIZE=thread    TSan, for the event log's contract suite
#   STIP_FUZZ=ON            ASan + UBSan + libFuzzer's coverage on every target, and the
#                           libFuzzer targets of tests/fuzz (linked with -fsanitize=fuzzer)
set(STIP_SANITIZE "" CACHE STRING "Instrument every target: address (ASan+UBSan) or thread (TSan)")
set_property(CACHE STIP_SANITIZE PROPERTY STRINGS "" address thread)
option(STIP_FUZZ "Build the libFuzzer targets of tests/fuzz, with ASan and UBSan (clang only)" OFF)

if(STIP_FUZZ)
  if(STIP_SANITIZE AND NOT STIP_SANITIZE STREQUAL "address")
    message(FATAL_ERROR "STIP_FUZZ=ON builds with ASan+UBSan; leave STIP_SANITIZE empty or 'address'")
  endif()
  set(STIP_SANITIZE address)
endif()

if(STIP_SANITIZE OR STIP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR
      "STIP_SANITIZE/STIP_FUZZ need clang (found ${CMAKE_CXX_COMPILER_ID}): configure a new build "
      "directory with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++, or run "
      "scripts/sanitize.sh, which does")
  endif()
  # Frame pointers: whole stacks in reports, cheaply. -O1 and line tables only: what
  # sanitizer reports need, and much quicker to build than -O2 -g on a shared machine.
  add_compile_options(-O1 -gline-tables-only)
  set(stip_sanitize_flags -fno-omit-frame-pointer)
  if(STIP_SANITIZE STREQUAL "address")
    # Every UBSan finding stops the run, as an ASan one does: a test or fuzzer that goes on
    # after undefined behaviour would pass with it.
    list(APPEND stip_sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=all)
  elseif(STIP_SANITIZE STREQUAL "thread")
    list(APPEND stip_sanitize_flags -fsanitize=thread)
  else()
    message(FATAL_ERROR "STIP_SANITIZE=${STIP_SANITIZE}: 'address' or 'thread'")
  endif()
  add_compile_options(${stip_sanitize_flags})
  add_link_options(${stip_sanitize_flags})
  if(STIP_FUZZ)
    # Coverage feedback from every library the fuzz targets reach; the targets themselves
    # link libFuzzer's main with -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
  message(STATUS "stip: instrumented build: sanitize=${STIP_SANITIZE} fuzz=${STIP_FUZZ}")
endif()
