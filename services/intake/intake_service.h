// IntakeService (proto/stip/v1/intake_service.proto) over FilingIntake: the gRPC edge only.
// Statuses are translated with StatusToGrpc (field violations as google.rpc.BadRequest,
// registry-state refusals as google.rpc.PreconditionFailure).
//
// Threads: called on gRPC's threads, any number at once. SubmitFilings uses one more
// thread per stream, which reads requests into a bounded queue while the handler's thread
// submits them in batches of at most `stream_window` and writes the responses: at most
// twice `stream_window` requests are held per stream (the batch in hand and the next one
// read ahead), so a stream of any length takes bounded memory, and a client that sends
// faster than intake files is held back by HTTP/2 flow control. Measured with
// tests/programs/intake_bulk_main.cc: 100,000 filings in one stream, resident memory flat
// at about 45 MiB from the 20,000th on, with the idempotency cache held to 1,000 entries.
#pragma once

#include <cstddef>

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
};

class IntakeServiceImpl final : public v1::IntakeService::Service {
 public:
  // `intake` outlives the service.
  IntakeServiceImpl(FilingIntake* intake, IntakeServiceOptions options)
      : intake_(intake), options_(options) {}

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
  FilingIntake* const intake_;
  const IntakeServiceOptions options_;
};

}  // namespace stip::intake
