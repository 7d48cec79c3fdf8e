// IntakeService (proto/stip/v1/intake_service.proto) over FilingIntake: the gRPC edge only.
// Statuses are translated with StatusToGrpc (field violations as google.rpc.BadRequest,
// registry-state refusals as google.rpc.PreconditionFailure).
//
// Threads: called on gRPC's threads, any number at once. SubmitFilings uses one more
// thread per stream, which reads requests into a bounded queue while the handler's thread
// submits them in batches of at most `stream_window` and writes the responses: at most
// twice `stream_window` requests are held per stream (the batch in hand and the next one
// read ahead), so a stream of any length takes bounded memory, and a client that sends
// faster than intake files is held back by HTTP/2 flow control. A client that stops reading
// its responses is cut off: when a response has waited `write_timeout` to be taken, the
// stream is cancelled (one watchdog thread per service checks every stream's writes). The
// filings answered by the responses it did not read may have been accepted; sending them
// again with the same request_ids returns their receipts (idempotency), files nothing twice.
//
// Responses always fit in `max_response_bytes` (the server's message limit): a refusal with
// more violations than fit keeps its first ones and a last one (reason MORE_VIOLATIONS)
// saying how many were left out, so that no response can fail the stream after filings of
// its batch were accepted. Measured with
// tests/programs/intake_bulk_main.cc: 100,000 filings in one stream, resident memory flat
// at about 45 MiB from the 20,000th on, with the idempotency cache held to 1,000 entries.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/sync_stream.h"
#include "services/intake/filing_intake.h"
#include "stip/v1/intake_service.grpc.pb.h"

namespace stip::intake {

struct IntakeServiceOptions {
  // The deadline of the work done for a call whose caller set none (and, on a stream, for
  // each batch).
  absl::Duration default_deadline = absl::Seconds(30);
  // SubmitFilings: requests read ahead per stream, and the largest batch published at once.
  size_t stream_window = 256;
  // SubmitFilings: a stream whose response has not been taken by the client for this long
  // is cancelled.
  absl::Duration write_timeout = absl::Seconds(30);
  // SubmitFilings: the largest response (the server's --grpc-max-message-bytes).
  size_t max_response_bytes = 1024 * 1024;
};

// Reason of the last violation of a response cut to fit the message limit.
inline constexpr std::string_view kMoreViolationsReason = "MORE_VIOLATIONS";

// Cuts `response` to at most `max_bytes` serialized: the error message to 1 KiB, then its
// last violations (replaced by one saying how many were left out), then the receipt's
// warnings and its copy of the request_id. Unchanged when it fits.
void FitResponse(size_t max_bytes, v1::SubmitFilingsResponse* response);

class IntakeServiceImpl final : public v1::IntakeService::Service {
 public:
  // `intake` outlives the service.
  IntakeServiceImpl(FilingIntake* intake, IntakeServiceOptions options);
  ~IntakeServiceImpl() override;
  IntakeServiceImpl(const IntakeServiceImpl&) = delete;
  IntakeServiceImpl& operator=(const IntakeServiceImpl&) = delete;

  // Idempotent by request_id. OK only once the accepted filing is durable in the event log.
  grpc::Status SubmitFiling(grpc::ServerContext* context, const v1::SubmitFilingRequest* request,
                            v1::SubmitFilingResponse* response) override;
  // One response per request, in the order of the requests. A refused or failed filing is
  // answered in its response (error_code, error_message, violations) and the stream goes
  // on; the stream itself fails only when it is cancelled or a write fails.
  grpc::Status SubmitFilings(grpc::ServerContext* context,
                             grpc::ServerReaderWriter<v1::SubmitFilingsResponse,
                                                      v1::SubmitFilingsRequest>* stream) override;
  grpc::Status ValidateFiling(grpc::ServerContext* context,
                              const v1::ValidateFilingRequest* request,
                              v1::ValidateFilingResponse* response) override;

 private:
  class WriteWatchdog;
  FilingIntake* const intake_;
  const IntakeServiceOptions options_;
  std::unique_ptr<WriteWatchdog> watchdog_;
};

}  // namespace stip::intake
