# Writes OUTPUT, a C++ source defining `extern const char NAME[]` in namespace stip with
# the contents of INPUT, as a raw string literal. (A raw string keeps the data readable in
# the repository and needs no tool beyond CMake.) Used for what a binary ships inside
# itself: the park catalogue, the default policy.
file(READ ${INPUT} content)
string(FIND "${content}" ")stip_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter )stip_embed\"")
endif()
file(WRITE ${OUTPUT}
  "// Generated from ${INPUT} by cmake/EmbedText.cmake. Do not edit.\n"
  "namespace stip {\n"
  "extern const char ${NAME}[];\n"
  "const char ${NAME}[] = R\"stip_embed(${content})stip_embed\";\n"
  "}  // namespace stip\n")
