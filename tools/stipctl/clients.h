// stipctl's connection to the services: where each one is, the stubs, a context per call
// with the --timeout deadline, and the one place where an RPC failure becomes words on
// stderr and an exit code.
//
// Single-threaded use, except where a command says otherwise (submit-bulk's writer thread
// shares the intake stub, which gRPC allows).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "stip/v1/assessment_service.grpc.pb.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tools/stipctl/output.h"

namespace stip::ctl {

// Exit codes. RPC failures are kRpcExitBase + the gRPC status code (UNAVAILABLE: 78).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kRpcExitBase = 64;

// The default address: stip-local serves the three services on this one port.
inline constexpr char kDefaultServer[] = "127.0.0.1:50050";

// What every command shares, from the global flags.
struct GlobalOptions {
  // --server / STIP_SERVER; --intake, --assessment, --registry override it per service
  // (empty: the server's).
  std::string server = kDefaultServer;
  std::string intake;
  std::string assessment;
  std::string registry;
  OutputFormat output = OutputFormat::kTable;
  // --timeout: the deadline of each call (not of a Watch stream or WaitForDecision).
  absl::Duration timeout = absl::Seconds(30);

  const std::string& IntakeAddress() const { return intake.empty() ? server : intake; }
  const std::string& AssessmentAddress() const { return assessment.empty() ? server : assessment; }
  const std::string& RegistryAddress() const { return registry.empty() ? server : registry; }
};

// Channels and stubs, made on first use. Channels to the same address are shared.
class Clients {
 public:
  explicit Clients(const GlobalOptions& options) : options_(options) {}

  const GlobalOptions& options() const { return options_; }
  v1::IntakeService::Stub& Intake();
  v1::AssessmentService::Stub& Assessment();
  v1::RegistryService::Stub& Registry();
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);

  // A context whose deadline is now + --timeout.
  std::unique_ptr<grpc::ClientContext> Context() const { return ContextFor(options_.timeout); }
  static std::unique_ptr<grpc::ClientContext> ContextFor(absl::Duration timeout);

 private:
  const GlobalOptions& options_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
  std::unique_ptr<v1::IntakeService::Stub> intake_;
  std::unique_ptr<v1::AssessmentService::Stub> assessment_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
};

// Waits up to `timeout` for the decision on `filing_id`. The registry answers one
// WaitForDecision call after a minute at most (DEADLINE_EXCEEDED, "call again"), so this calls
// again until `timeout` has passed.
grpc::Status WaitForDecision(v1::RegistryService::Stub& registry, const std::string& filing_id,
                             absl::Duration timeout, v1::WaitForDecisionResponse* response);

// "UNAVAILABLE" for grpc::StatusCode::UNAVAILABLE.
std::string CodeName(grpc::StatusCode code);

// Prints a failed call in plain words on stderr and returns kRpcExitBase + its code.
// `address` is where the call went, `timeout` its deadline (for DEADLINE_EXCEEDED).
// INVALID_ARGUMENT lists every field violation as "field: description"; UNAVAILABLE says
// the server cannot be reached at `address` and how to start one.
int ReportRpcError(const grpc::Status& status, const std::string& address, absl::Duration timeout);

// A usage error: "stipctl: <message>" and the hint to --help on stderr; returns kExitUsage.
int UsageError(const std::string& message);

}  // namespace stip::ctl
