# Writes OUTPUT, a C++ source defining stip::registry::kEmbeddedParkCatalogue, the contents
# of INPUT as a raw string literal. (A raw string keeps the data readable in the
# repository and needs no tool beyond CMake.)
file(READ ${INPUT} content)
string(FIND "${content}" ")stip_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter )stip_embed\"")
endif()
file(WRITE ${OUTPUT}
  "// Generated from ${INPUT} by cmake/EmbedText.cmake. Do not edit.\n"
  "namespace stip::registry {\n"
  "extern const char kEmbeddedParkCatalogue[];\n"
  "const char kEmbeddedParkCatalogue[] = R\"stip_embed(${content})stip_embed\";\n"
  "}  // namespace stip::registry\n")
