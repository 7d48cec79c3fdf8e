#include "tools/stipctl/clients.h"

#include <chrono>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/grpc_server.h"

namespace stip::ctl {

std::shared_ptr<grpc::Channel> Clients::ChannelTo(const std::string& address) {
  auto it = channels_.find(address);
  if (it != channels_.end()) return it->second;
  // The services' own limits: a 1 MiB message either way, keepalive pings on idle Watch
  // streams so that a dead connection is noticed.
  std::shared_ptr<grpc::Channel> channel = MakeChannel(address, GrpcLimits{});
  channels_.emplace(address, channel);
  return channel;
}

v1::IntakeService::Stub& Clients::Intake() {
  if (intake_ == nullptr) intake_ = v1::IntakeService::NewStub(ChannelTo(options_.IntakeAddress()));
  return *intake_;
}

v1::AssessmentService::Stub& Clients::Assessment() {
  if (assessment_ == nullptr) {
    assessment_ = v1::AssessmentService::NewStub(ChannelTo(options_.AssessmentAddress()));
  }
  return *assessment_;
}

v1::RegistryService::Stub& Clients::Registry() {
  if (registry_ == nullptr) {
    registry_ = v1::RegistryService::NewStub(ChannelTo(options_.RegistryAddress()));
  }
  return *registry_;
}

std::unique_ptr<grpc::ClientContext> Clients::ContextFor(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

grpc::Status WaitForDecision(v1::RegistryService::Stub& registry, const std::string& filing_id,
                             absl::Duration timeout, v1::WaitForDecisionResponse* response) {
  const absl::Time deadline = absl::Now() + timeout;
  v1::WaitForDecisionRequest request;
  request.set_filing_id(filing_id);
  while (true) {
    grpc::Status status = registry.WaitForDecision(
        Clients::ContextFor(deadline - absl::Now()).get(), request, response);
    // The server's own limit, before ours: call again.
    if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED ||
        absl::Now() + absl::Seconds(1) >= deadline) {
      return status;
    }
  }
}

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("code ", static_cast<int>(code));
  }
}

int ReportRpcError(const grpc::Status& status, const std::string& address, absl::Duration timeout) {
  const grpc::StatusCode code = status.error_code();
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT: {
      std::cerr << "stipctl: the server refused the request: " << status.error_message() << "\n";
      for (const FieldViolation& violation : FieldViolations(GrpcToStatus(status))) {
        std::cerr << "  " << violation.field << ": " << violation.description << "\n";
      }
      break;
    }
    case grpc::StatusCode::UNAVAILABLE:
      std::cerr << "stipctl: the server cannot be reached at " << address << " ("
                << status.error_message() << ").\n"
                << "  Start one with `stip-local` (all three services on " << kDefaultServer
                << "), or point --server (or STIP_SERVER) at a running one.\n";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::cerr << "stipctl: no answer from " << address << " within "
                << absl::FormatDuration(timeout) << " (" << status.error_message()
                << "); try a longer --timeout.\n";
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      std::cerr << "stipctl: the server at " << address
                << " does not serve this call; is it the right service? (" << status.error_message()
                << ")\n";
      break;
    default:
      std::cerr << "stipctl: " << CodeName(code) << ": " << status.error_message() << "\n";
      break;
  }
  return kRpcExitBase + static_cast<int>(code);
}

int UsageError(const std::string& message) {
  std::cerr << "stipctl: " << message << "\nRun with --help for more information.\n";
  return kExitUsage;
}

}  // namespace stip::ctl
