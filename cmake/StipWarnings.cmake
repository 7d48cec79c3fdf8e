# Warnings for our own targets only: generated protobuf code and Debian's headers are
# included as SYSTEM so that their warnings are not ours to fix.
function(stip_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # librdkafka's RD_KAFKA_V_* macros type-check their arguments in GNU statement
    # expressions; GCC exempts what a system header's macro expands to, clang (the
    # sanitizer and fuzz builds) reports it at our call.
    target_compile_options(${target} PRIVATE -Wno-gnu-statement-expression)
  endif()
  if(STIP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
