// Fuzzes intake's Kafka entry (services/intake/inbound_handler.h): the bytes of an event on
// stip.filings.inbound.v1, decoded as protobuf or as its JSON mapping, validated, checked
// with a registry and turned into an accepted filing, a refusal or a dead letter.
//
// Input: the first byte chooses the event's content-type header, the rest is the event's
// value; a value holding kSeparator is two events of one batch (a repeat or a conflict in
// the batch).
//   'J' application/json   'j' application/json; charset=utf-8   'P' application/protobuf
//   'N' no content-type    anything else: text/plain (unsupported: a dead letter)
// The registry is EnrollEveryoneRegistry (every enterprise enrolled in urumqi-hnz, nothing
// recorded) served in this process, so that valid filings go all the way to acceptance.
//
// Checked beyond the sanitizers: the batch never fails (the registry is up); every event
// ends in exactly one place (at most one output each, and exactly one unless it repeats an
// earlier event of the batch); every output parses as the type its ce_type names; and the
// JSON mapping and the protobuf encoding round-trip whatever they accepted.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/registry_client.h"
#include "spdlog/spdlog.h"
#include "stip/v1/filing.pb.h"
#include "tests/support/enroll_everyone_registry.h"

namespace {

using stip::ConsumedEvent;
using stip::OutgoingEvent;

// absl::string_view: Debian's Abseil keeps its own type, which StrSplit wants.
constexpr absl::string_view kSeparator = "\n--8<--\n";

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "inbound_fuzz: %s\n", what);
    std::abort();
  }
}

class CollectingOutput final : public stip::BatchOutput {
 public:
  void Emit(OutgoingEvent event) override { emitted.push_back(std::move(event)); }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    Check(!reason.empty(), "a dead letter without a reason");
    dead_letters.push_back(event.offset);
  }
  std::vector<OutgoingEvent> emitted;
  std::vector<int64_t> dead_letters;
};

struct Intake {
  stip::testing::EnrollEveryoneRegistry registry_service;
  std::unique_ptr<stip::GrpcServer> server;
  std::unique_ptr<stip::intake::RegistryClient> registry;
  std::unique_ptr<stip::intake::InboundFilingHandler> handler;
};

Intake& TheIntake() {
  static Intake* intake = [] {
    // The handler logs refusals and repeats; millions of lines would only slow the run.
    spdlog::set_level(spdlog::level::off);
    // Likewise protobuf's "invalid UTF-8" line for every undecodable event (a dead letter).
    google::protobuf::SetLogHandler(nullptr);
    auto* made = new Intake;
    stip::GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto server = stip::StartGrpcServer(options, {&made->registry_service});
    Check(server.ok(), "the in-process registry did not start");
    made->server = std::move(*server);
    made->registry = std::make_unique<stip::intake::RegistryClient>(
        made->server->server()->InProcessChannel(grpc::ChannelArguments()));
    made->handler = std::make_unique<stip::intake::InboundFilingHandler>(
        made->registry.get(), stip::intake::InboundTopics{});
    return made;
  }();
  return *intake;
}

std::string ContentType(char selector) {
  switch (selector) {
    case 'J':
      return "application/json";
    case 'j':
      return "application/json; charset=utf-8";
    case 'P':
      return "application/protobuf";
    case 'N':
      return "";
    default:
      return "text/plain";
  }
}

// What the intake accepted from JSON or protobuf, it must read back the same way.
void CheckRoundTrips(const ConsumedEvent& event, bool json) {
  stip::v1::AnnualFiling filing;
  if (json) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    if (!google::protobuf::util::JsonStringToMessage(event.value, &filing, options).ok()) return;
    std::string printed;
    Check(google::protobuf::util::MessageToJsonString(filing, &printed).ok(),
          "a filing parsed from JSON does not print as JSON");
    stip::v1::AnnualFiling again;
    Check(google::protobuf::util::JsonStringToMessage(printed, &again, options).ok(),
          "the JSON printed for a filing does not parse");
    Check(google::protobuf::util::MessageDifferencer::Equals(filing, again),
          "a filing changed in a JSON round trip");
  } else {
    if (!filing.ParseFromString(event.value)) return;
    stip::v1::AnnualFiling again;
    Check(again.ParseFromString(filing.SerializeAsString()),
          "a parsed filing's serialization does not parse");
    Check(google::protobuf::util::MessageDifferencer::Equals(filing, again),
          "a filing changed in a protobuf round trip");
  }
}

void CheckOutput(const OutgoingEvent& event) {
  std::string_view type;
  for (const auto& [name, value] : event.headers) {
    if (name == "ce_type") type = value;
  }
  if (type == "stip.v1.AcceptedFiling") {
    stip::v1::AcceptedFiling accepted;
    Check(accepted.ParseFromString(event.value), "an AcceptedFiling that does not parse");
    Check(!accepted.filing_id().empty(), "an AcceptedFiling without a filing id");
    Check(event.key == accepted.filing().uscc(), "an AcceptedFiling not keyed by its USCC");
  } else if (type == "stip.v1.RejectedFiling") {
    stip::v1::RejectedFiling rejected;
    Check(rejected.ParseFromString(event.value), "a RejectedFiling that does not parse");
    Check(rejected.violations_size() > 0, "a RejectedFiling without a violation");
  } else {
    Check(false, "an output of an unknown ce_type");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Intake& intake = TheIntake();
  const std::string content_type = ContentType(static_cast<char>(data[0]));
  const absl::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::vector<ConsumedEvent> batch;
  for (absl::string_view part : absl::StrSplit(value, absl::MaxSplits(kSeparator, 1))) {
    ConsumedEvent event;
    event.topic = std::string(stip::kFilingsInboundTopic);
    event.partition = 0;
    event.offset = static_cast<int64_t>(batch.size());
    event.key = "fuzz";
    event.value = std::string(part);
    if (!content_type.empty()) event.headers.emplace_back("content-type", content_type);
    batch.push_back(std::move(event));
  }

  CollectingOutput output;
  const absl::Status status = intake.handler->HandleBatch(batch, output);
  if (!status.ok()) {
    std::fprintf(stderr, "inbound_fuzz: the batch failed: %s\n", status.ToString().c_str());
    std::abort();
  }
  const size_t placed = output.emitted.size() + output.dead_letters.size();
  Check(placed <= batch.size(), "an event ended in more than one place");
  // The first event of a batch repeats nothing: it always ends somewhere.
  Check(placed >= 1, "an event ended nowhere");
  for (const OutgoingEvent& event : output.emitted) CheckOutput(event);
  for (const ConsumedEvent& event : batch) {
    CheckRoundTrips(event, content_type.rfind("application/json", 0) == 0);
  }
  return 0;
}
