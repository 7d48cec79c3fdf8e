# Warnings for our own targets only: generated protobuf code and Debian's headers are
# included as SYSTEM so that their warnings are not ours to fix.
function(stip_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(STIP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
