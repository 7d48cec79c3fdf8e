// stip-intake's readiness tells the truth about the registry: with a real stip-registry
// (SQLite event log and database in a temporary folder) it is SERVING; once the registry is
// stopped, every filing is refused, and readiness goes NOT_SERVING within a few health-check
// rounds (the test allows a generous minute; intake checks every 5 s with a 3 s limit), not
// after the 10 minutes its cached park list would last; once the registry is back on the
// same port it is SERVING again.
//
// The binaries are found beside the test's build folder (build/services/registry/,
// build/services/intake/).
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "tests/support/test_environment.h"

namespace stip {
namespace {

std::filesystem::path BuildFolder() {
  return testing::TestProgramPath("stip-intake").parent_path().parent_path();
}
std::filesystem::path RegistryBinary() {
  return BuildFolder() / "services" / "registry" / "stip-registry";
}
std::filesystem::path IntakeBinary() {
  return BuildFolder() / "services" / "intake" / "stip-intake";
}

constexpr int kServing = 1;
constexpr int kNotServing = 2;

// grpc.health.v1.Health/Check of the whole server (""): 1 SERVING, 2 NOT_SERVING, -1 when
// the call fails.
int Readiness(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer request(nullptr, 0);  // HealthCheckRequest{service: ""}
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  if (!done.get_future().get().ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  google::protobuf::UnknownFieldSet fields;  // HealthCheckResponse{ServingStatus status = 1}
  if (!fields.ParseFromString(bytes)) return -1;
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == 1) return static_cast<int>(fields.field(i).varint());
  }
  return 0;
}

// Polls until readiness is `wanted` or `limit` passed; how long it took, or nullopt.
std::optional<absl::Duration> WaitForReadiness(const std::shared_ptr<grpc::Channel>& channel,
                                               int wanted, absl::Duration limit) {
  const absl::Time start = absl::Now();
  while (absl::Now() - start < limit) {
    if (Readiness(channel) == wanted) return absl::Now() - start;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return std::nullopt;
}

std::unique_ptr<testing::ChildProcess> StartRegistry(const std::string& events,
                                                     const std::string& db, int port) {
  return std::make_unique<testing::ChildProcess>(std::vector<std::string>{
      RegistryBinary().string(), "--events=" + events, "--db=" + db,
      absl::StrCat("--grpc-listen=127.0.0.1:", port), "--admin-listen=127.0.0.1:0",
      "--partitions=2", "--log-format=text", "--log-level=warn"});
}

TEST(IntakeReadinessTest, NotServingWhileTheRegistryIsDownAndServingOnceItIsBack) {
  ASSERT_TRUE(std::filesystem::exists(RegistryBinary())) << RegistryBinary() << " is not built";
  ASSERT_TRUE(std::filesystem::exists(IntakeBinary())) << IntakeBinary() << " is not built";
  testing::TempDir dir;
  const std::string events = absl::StrCat("sqlite://", (dir.path() / "events.db").string());
  const std::string db = absl::StrCat("sqlite://", (dir.path() / "registry.db").string());
  const int registry_port = testing::FreeLoopbackPort();
  const int intake_port = testing::FreeLoopbackPort();
  ASSERT_GT(registry_port, 0);
  ASSERT_GT(intake_port, 0);

  std::unique_ptr<testing::ChildProcess> registry = StartRegistry(events, db, registry_port);
  ASSERT_TRUE(MakeChannel(absl::StrCat("127.0.0.1:", registry_port), GrpcLimits{})
                  ->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60)))
      << "stip-registry did not start listening";
  testing::ChildProcess intake(
      {IntakeBinary().string(), "--events=" + events,
       absl::StrCat("--grpc-listen=127.0.0.1:", intake_port), "--admin-listen=127.0.0.1:0",
       absl::StrCat("--registry=127.0.0.1:", registry_port), "--inbound=false",
       "--instance-id=readiness", "--partitions=2", "--log-format=text", "--log-level=warn"});
  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", intake_port), GrpcLimits{});
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60)))
      << "stip-intake did not start listening";
  // Serving: it has the park list from the registry now (the cache that used to lie).
  ASSERT_TRUE(WaitForReadiness(channel, kServing, absl::Minutes(1)).has_value())
      << "stip-intake never became ready with the registry up";

  registry->Signal(SIGKILL);
  registry->Wait();
  const std::optional<absl::Duration> down =
      WaitForReadiness(channel, kNotServing, absl::Minutes(1));
  ASSERT_TRUE(down.has_value()) << "stip-intake still SERVING a minute after the registry died";
  std::cout << "NOT_SERVING " << absl::FormatDuration(*down) << " after the registry died\n";
  EXPECT_TRUE(intake.running());

  registry = StartRegistry(events, db, registry_port);
  const std::optional<absl::Duration> up = WaitForReadiness(channel, kServing, absl::Minutes(1));
  ASSERT_TRUE(up.has_value()) << "stip-intake not SERVING a minute after the registry returned";
  std::cout << "SERVING " << absl::FormatDuration(*up) << " after the registry restarted\n";
}

}  // namespace
}  // namespace stip
