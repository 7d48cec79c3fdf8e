# Every dependency comes from Debian's packages (Debian 12 "bookworm" and 13 "trixie").
# Versions are checked here rather than assumed: the floor is what Debian 12 ships.
#   gRPC 1.51, protobuf 3.21, librdkafka 2.0.2 (2.8 on Debian 13), Abseil 20220623
#   (20240722 on Debian 13), SQLite 3.40, libpq 15, prometheus-cpp 1.0, spdlog 1.10, CLI11 2.1.
find_package(PkgConfig REQUIRED)

find_package(Threads REQUIRED)

find_package(Protobuf 3.21 REQUIRED)
if(NOT Protobuf_PROTOC_EXECUTABLE)
  message(FATAL_ERROR "protoc not found: apt-get install protobuf-compiler")
endif()

find_package(gRPC CONFIG REQUIRED)
if(gRPC_VERSION VERSION_LESS 1.51)
  message(FATAL_ERROR "gRPC ${gRPC_VERSION} found, 1.51 or newer needed (apt-get install libgrpc++-dev)")
endif()
find_program(STIP_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

find_package(absl CONFIG REQUIRED)
if(absl_VERSION AND absl_VERSION VERSION_LESS 20220623)
  message(FATAL_ERROR "Abseil ${absl_VERSION} found, 20220623 or newer needed")
endif()

pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=2.0.2)

find_package(SQLite3 3.35 REQUIRED)
find_package(PostgreSQL REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(spdlog 1.10 CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)  # policies as data (policies/*.yaml)
find_package(OpenSSL REQUIRED)          # libcrypto's SHA-256, for decision ids
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  # Debian 12's libcli11-dev ships a pkg-config file; Debian 13's also a CMake package.
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()

if(STIP_BUILD_TESTS)
  find_package(GTest REQUIRED)
  # GMP's exact rationals: the independent oracle the evaluator's property test checks against.
  pkg_check_modules(GMPXX REQUIRED IMPORTED_TARGET gmpxx)
endif()
if(STIP_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# google/rpc/{status,error_details}.proto, for google.rpc.BadRequest error details. Debian
# ships them in golang-github-gogo-googleapis-dev (plain .proto files, usable from any language).
find_path(STIP_GOOGLEAPIS_PROTO_DIR google/rpc/error_details.proto
  PATHS /usr/share/gocode/src/github.com/gogo/googleapis
  NO_DEFAULT_PATH)
if(NOT STIP_GOOGLEAPIS_PROTO_DIR)
  message(FATAL_ERROR "google/rpc/error_details.proto not found: apt-get install golang-github-gogo-googleapis-dev")
endif()

message(STATUS "stip: protobuf ${Protobuf_VERSION}, gRPC ${gRPC_VERSION}, librdkafka ${RDKAFKA_VERSION}, "
               "Abseil ${absl_VERSION}, SQLite ${SQLite3_VERSION}, libpq ${PostgreSQL_VERSION_STRING}, "
               "prometheus-cpp ${prometheus-cpp_VERSION}, spdlog ${spdlog_VERSION}")
