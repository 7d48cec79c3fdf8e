// Hostile callers against the real gRPC servers (in-process, on loopback), each with what a
// user or an operator would check: a clear error, the process still serving, its memory and
// threads bounded.
//   - a small gzip request that would inflate to 512 MiB;
//   - a request over the message limit;
//   - 500 WaitForDecision calls with 24 h deadlines;
//   - one client opening Watch streams until it is refused;
//   - a client that stops reading its SubmitFilings responses; a refusal too large for one
//     response.
#include <dirent.h>
#include <zlib.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/grpc.h"
#include "grpc/support/alloc.h"
#include "grpc/support/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/intake/intake_service.h"
#include "services/intake/uscc.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_service.h"
#include "services/registry/registry_store.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"

namespace stip {
namespace {

using registry::RegistryServiceImpl;
using registry::RegistryServiceOptions;
using registry::RegistryStore;
using ::testing::AnyOf;
using ::testing::HasSubstr;

// A valid USCC (its check character computed) of an enterprise nobody enrolled.
std::string NeverDecidedFilingId() {
  const std::string first17 = "91650100MA0000001";
  absl::StatusOr<char> check = intake::UsccCheckCharacter(first17);
  EXPECT_TRUE(check.ok()) << check.status();
  return absl::StrCat(first17, std::string(1, check.value_or('0')), "/2024/1");
}

// Threads of this process now.
int ThreadCount() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
  }
  return count;
}

// `bytes` zero bytes, gzip-compressed in a stream (never held whole): 512 MiB become about
// 0.5 MiB.
std::string GzipOfZeros(size_t bytes) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY),
            Z_OK);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  std::string buffer(1 << 16, '\0');
  size_t left = bytes;
  int flush = Z_NO_FLUSH;
  while (flush != Z_FINISH) {
    const size_t chunk = std::min(left, zeros.size());
    left -= chunk;
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
    stream.avail_in = static_cast<uInt>(chunk);
    do {
      stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
      stream.avail_out = static_cast<uInt>(buffer.size());
      deflate(&stream, flush);
      out.append(buffer.data(), buffer.size() - stream.avail_out);
    } while (stream.avail_out == 0);
  }
  deflateEnd(&stream);
  return out;
}

// Sends `compressed` as one gzip-compressed message of a unary call to `method` with gRPC's
// core API (the C++ API compresses messages itself and cannot send one compressed already),
// and returns the call's status code and message.
std::pair<grpc_status_code, std::string> SendCompressed(int port, const std::string& method,
                                                        const std::string& compressed) {
  // gRPC core's flag for "this message is compressed already" (src/core/lib/surface/call.h in
  // gRPC 1.51: GRPC_WRITE_INTERNAL_COMPRESS); the transport then marks the frame compressed.
  constexpr uint32_t kWriteInternalCompress = 0x80000000u;
  grpc_channel_credentials* credentials = grpc_insecure_credentials_create();
  grpc_channel* channel =
      grpc_channel_create(absl::StrCat("127.0.0.1:", port).c_str(), credentials, nullptr);
  grpc_channel_credentials_release(credentials);
  grpc_completion_queue* cq = grpc_completion_queue_create_for_next(nullptr);
  const grpc_slice method_slice = grpc_slice_from_copied_string(method.c_str());
  grpc_call* call = grpc_channel_create_call(
      channel, nullptr, GRPC_PROPAGATE_DEFAULTS, cq, method_slice, nullptr,
      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(120, GPR_TIMESPAN)), nullptr);

  grpc_metadata encoding{};
  encoding.key = grpc_slice_from_static_string("grpc-encoding");
  encoding.value = grpc_slice_from_static_string("gzip");
  grpc_slice payload = grpc_slice_from_copied_buffer(compressed.data(), compressed.size());
  grpc_byte_buffer* message = grpc_raw_byte_buffer_create(&payload, 1);
  grpc_slice_unref(payload);
  grpc_metadata_array initial_metadata;
  grpc_metadata_array trailing_metadata;
  grpc_metadata_array_init(&initial_metadata);
  grpc_metadata_array_init(&trailing_metadata);
  grpc_byte_buffer* response = nullptr;
  grpc_status_code status = GRPC_STATUS_OK;
  grpc_slice details = grpc_empty_slice();

  grpc_op ops[6] = {};
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = 1;
  ops[0].data.send_initial_metadata.metadata = &encoding;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].flags = kWriteInternalCompress;
  ops[1].data.send_message.send_message = message;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_metadata;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &response;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing_metadata;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag = 0;
  EXPECT_EQ(grpc_call_start_batch(call, ops, 6, &tag, nullptr), GRPC_CALL_OK);
  const grpc_event event =
      grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr);
  EXPECT_EQ(event.type, GRPC_OP_COMPLETE);

  char* text = grpc_slice_to_c_string(details);
  std::pair<grpc_status_code, std::string> result(status, text);
  gpr_free(text);
  grpc_slice_unref(details);
  if (response != nullptr) grpc_byte_buffer_destroy(response);
  grpc_byte_buffer_destroy(message);
  grpc_metadata_array_destroy(&initial_metadata);
  grpc_metadata_array_destroy(&trailing_metadata);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_channel_destroy(channel);
  return result;
}

// A channel on a connection of its own (a server allows 100 calls on one connection).
std::shared_ptr<grpc::Channel> SeparateChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(60)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// The registry service on SQLite behind a real server with the default limits.
class RegistryLimitsTest : public ::testing::Test {
 protected:
  void Serve(RegistryServiceOptions options = {}) {
    auto store =
        RegistryStore::Open(absl::StrCat("sqlite://", dir_.path().string(), "/registry.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<RegistryServiceImpl>(store_.get(), &notifier_, options);
    GrpcServerOptions server_options;  // the defaults: what the services run with
    server_options.listen_address = "127.0.0.1:0";
    auto server = StartGrpcServer(server_options, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::RegistryService::NewStub(SeparateChannel(server_->port()));
  }

  void TearDown() override {
    if (service_ != nullptr) service_->Stop();
    if (server_ != nullptr) server_->Shutdown(absl::Now() + absl::Seconds(10));
    service_.reset();
    server_.reset();
    store_.reset();
  }

  // The server answers an ordinary call.
  void ExpectServing() {
    v1::ListParksRequest request;
    v1::ListParksResponse response;
    const grpc::Status status = stub_->ListParks(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  }

  testing::TempDir dir_;
  registry::ChangeNotifier notifier_;
  std::unique_ptr<RegistryStore> store_;
  std::unique_ptr<RegistryServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::RegistryService::Stub> stub_;
};

TEST_F(RegistryLimitsTest, GzipBombIsRefusedWithoutInflatingIt) {
  Serve();
  const std::string bomb = GzipOfZeros(size_t{512} << 20);
  ASSERT_LT(bomb.size(), size_t{1} << 20);  // under the message limit as sent
  const int64_t peak_before = testing::PeakRssKib();

  const auto [code, message] =
      SendCompressed(server_->port(), "/stip.v1.RegistryService/RegisterPark", bomb);

  EXPECT_EQ(code, GRPC_STATUS_UNIMPLEMENTED) << message;
  EXPECT_THAT(message, HasSubstr("Compression algorithm 'gzip' is disabled"));
  // Inflated, it would be 512 MiB at once.
  EXPECT_LT(testing::PeakRssKib() - peak_before, 100 * 1024)
      << "peak RSS grew from " << peak_before << " KiB to " << testing::PeakRssKib() << " KiB";
  ExpectServing();
}

TEST_F(RegistryLimitsTest, RequestOverTheMessageLimitIsRefused) {
  Serve();
  v1::RegisterParkRequest request;
  request.mutable_park()->set_park_id("too-big");
  request.mutable_park()->set_name(std::string(2 << 20, 'x'));  // 2 MiB: over 1 MiB
  v1::RegisterParkResponse response;
  const grpc::Status status = stub_->RegisterPark(Context().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  ExpectServing();
}

TEST_F(RegistryLimitsTest, FiveHundredWaitsForDecisionsDoNotGrowThreadsPastTheCap) {
  Serve();
  constexpr int kCalls = 500;
  constexpr int kChannels = 10;  // 50 calls each, within a connection's 100 streams
  std::vector<std::unique_ptr<v1::RegistryService::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) {
    stubs.push_back(v1::RegistryService::NewStub(SeparateChannel(server_->port())));
    v1::ListParksResponse warmed;  // connect now, so that connecting adds no threads later
    ASSERT_TRUE(stubs.back()->ListParks(Context().get(), {}, &warmed).ok());
  }
  const int threads_before = ThreadCount();

  struct Call {
    grpc::ClientContext context;
    v1::WaitForDecisionResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::WaitForDecisionResponse>> reader;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Hours(24)));
    v1::WaitForDecisionRequest request;
    request.set_filing_id(NeverDecidedFilingId());
    call->reader = stubs[static_cast<size_t>(i % kChannels)]->AsyncWaitForDecision(&call->context,
                                                                                   request, &cq);
    call->reader->Finish(&call->response, &call->status, call.get());
    calls.push_back(std::move(call));
  }
  // Every call is either refused or holds a server thread: wait until they add up.
  int refused = 0;
  int answered = 0;
  int most_threads = threads_before;
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (absl::Now() < give_up) {
    void* tag = nullptr;
    bool ok = false;
    while (cq.AsyncNext(&tag, &ok, absl::ToChronoTime(absl::Now() + absl::Milliseconds(50))) ==
           grpc::CompletionQueue::GOT_EVENT) {
      ++answered;
      const auto* call = static_cast<Call*>(tag);
      if (call->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
    }
    most_threads = std::max(most_threads, ThreadCount());
    if (refused + (most_threads - threads_before) >= kCalls - 10) break;
  }
  const int grown = most_threads - threads_before;
  // GrpcServerOptions::max_threads (128), and a few of gRPC's own.
  EXPECT_LT(grown, 128 + 32) << refused << " calls refused";
  EXPECT_GT(refused, 0);
  for (const auto& call : calls) {
    if (call->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      EXPECT_THAT(call->status.error_message(),
                  AnyOf(HasSubstr("waiting for decisions"), HasSubstr("Threadpool Exhausted")));
    }
  }
  // The other calls still have threads.
  ExpectServing();

  for (const auto& call : calls) call->context.TryCancel();
  while (answered < kCalls) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    ++answered;
  }
  cq.Shutdown();
}

TEST_F(RegistryLimitsTest, WaitForDecisionIsCutToItsLongestWait) {
  RegistryServiceOptions options;
  options.max_decision_wait = absl::Seconds(1);
  Serve(options);
  v1::WaitForDecisionRequest request;
  request.set_filing_id(NeverDecidedFilingId());
  v1::WaitForDecisionResponse response;
  const grpc::Status status =
      stub_->WaitForDecision(Context(absl::Hours(24)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("the longest one call waits"));
  EXPECT_THAT(status.error_message(), HasSubstr("call again"));
}

TEST_F(RegistryLimitsTest, OneClientCannotTakeEveryWatchSlot) {
  Serve();
  constexpr int kServerSlots = 256;  // RegistryServiceOptions::max_subscribers
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  struct Stream {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::WatchDecisionsResponse>> reader;
  };
  std::vector<Stream> open;
  grpc::Status refusal;
  for (int i = 0; i < kServerSlots && refusal.ok(); ++i) {
    if (i % 50 == 0) channels.push_back(SeparateChannel(server_->port()));
    auto stub = v1::RegistryService::NewStub(channels.back());
    Stream stream{Context(absl::Minutes(5)), nullptr};
    stream.reader = stub->WatchDecisions(stream.context.get(), v1::WatchDecisionsRequest());
    v1::WatchDecisionsResponse first;  // a heartbeat with the head's cursor
    if (stream.reader->Read(&first)) {
      open.push_back(std::move(stream));
    } else {
      refusal = stream.reader->Finish();
    }
  }
  EXPECT_LT(static_cast<int>(open.size()), kServerSlots);
  EXPECT_EQ(refusal.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refusal.error_message(), HasSubstr("the most one client may have"));
  EXPECT_LT(service_->ActiveSubscribers(), kServerSlots);
  for (Stream& stream : open) {
    stream.context->TryCancel();
    stream.reader->Finish().IgnoreError();
  }
}

TEST(SubmitFilingsResponseTest, ARefusalTooLargeForOneResponseIsCutToFit) {
  v1::SubmitFilingsResponse response;
  response.set_request_id("bulk-1");
  response.set_error_code(3);
  response.set_error_message("the filing has errors");
  for (int i = 0; i < 20000; ++i) {
    v1::FilingViolation* violation = response.add_violations();
    violation->set_reason("PROJECT_TITLE_REQUIRED");
    violation->set_field(absl::StrCat("filing.projects[", i, "].title"));
    violation->set_message("A project needs a title of 1 to 200 characters.");
  }
  ASSERT_GT(response.ByteSizeLong(), size_t{1} << 20);

  intake::FitResponse(size_t{1} << 20, &response);

  EXPECT_LE(response.ByteSizeLong(), size_t{1} << 20);
  EXPECT_EQ(response.request_id(), "bulk-1");
  ASSERT_GT(response.violations_size(), 1000);
  EXPECT_EQ(response.violations(0).field(), "filing.projects[0].title");
  const v1::FilingViolation& last = response.violations(response.violations_size() - 1);
  EXPECT_EQ(last.reason(), intake::kMoreViolationsReason);
  EXPECT_THAT(last.message(), HasSubstr(absl::StrCat(20000 - (response.violations_size() - 1),
                                                     " more violations not shown")));
}

}  // namespace
}  // namespace stip
