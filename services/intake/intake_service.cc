#include "services/intake/intake_service.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/grpc_server.h"

namespace stip::intake {

grpc::Status IntakeServiceImpl::SubmitFiling(grpc::ServerContext* context,
                                             const v1::SubmitFilingRequest* request,
                                             v1::SubmitFilingResponse* response) {
  const absl::Time deadline = EffectiveDeadline(*context, options_.default_deadline);
  Submission submission{request->request_id(), request->filing()};
  std::vector<SubmissionOutcome> outcomes =
      intake_->Submit(absl::MakeConstSpan(&submission, 1), deadline);
  if (!outcomes[0].status.ok()) return StatusToGrpc(outcomes[0].status);
  *response->mutable_receipt() = std::move(outcomes[0].receipt);
  return grpc::Status::OK;
}

grpc::Status IntakeServiceImpl::SubmitFilings(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::SubmitFilingsResponse, v1::SubmitFilingsRequest>* stream) {
  // Requests read ahead, shared by the reader thread and this one.
  struct ReadAhead {
    size_t window = 0;
    absl::Mutex mu;
    std::deque<Submission> queue ABSL_GUARDED_BY(mu);
    bool end_of_input ABSL_GUARDED_BY(mu) = false;
    bool stop ABSL_GUARDED_BY(mu) = false;
    bool HasRoom() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return stop || queue.size() < window; }
    bool HasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return end_of_input || !queue.empty(); }
  };
  const size_t window = std::max<size_t>(options_.stream_window, 1);
  ReadAhead ahead;
  ahead.window = window;

  // gRPC allows one reader and one writer on a stream at once: reading here while the
  // handler's thread writes lets the next requests arrive while a batch is published.
  std::thread reader([stream, &ahead] {
    v1::SubmitFilingsRequest request;
    while (stream->Read(&request)) {
      absl::MutexLock lock(&ahead.mu);
      ahead.mu.Await(absl::Condition(&ahead, &ReadAhead::HasRoom));
      if (ahead.stop) break;
      ahead.queue.push_back(Submission{std::move(*request.mutable_request_id()),
                                       std::move(*request.mutable_filing())});
      request.Clear();
    }
    absl::MutexLock lock(&ahead.mu);
    ahead.end_of_input = true;
  });

  grpc::Status result = grpc::Status::OK;
  std::vector<Submission> batch;
  batch.reserve(window);
  while (true) {
    {
      absl::MutexLock lock(&ahead.mu);
      ahead.mu.Await(absl::Condition(&ahead, &ReadAhead::HasWork));
      if (ahead.queue.empty()) break;  // and end of input
      while (!ahead.queue.empty() && batch.size() < window) {
        batch.push_back(std::move(ahead.queue.front()));
        ahead.queue.pop_front();
      }
    }
    const absl::Time deadline = std::min(EffectiveDeadline(*context, options_.default_deadline),
                                         absl::Now() + options_.default_deadline);
    std::vector<SubmissionOutcome> outcomes = intake_->Submit(batch, deadline);
    bool written = true;
    for (size_t i = 0; i < batch.size() && written; ++i) {
      v1::SubmitFilingsResponse response;
      response.set_request_id(std::move(batch[i].request_id));
      SubmissionOutcome& outcome = outcomes[i];
      if (outcome.status.ok()) {
        *response.mutable_receipt() = std::move(outcome.receipt);
      } else {
        // The per-filing answer is an RPC edge of its own: the same rules as StatusToGrpc.
        const absl::Status shown = ForCaller(outcome.status);
        response.set_error_code(static_cast<int32_t>(shown.code()));
        response.set_error_message(std::string(shown.message()));
        for (v1::FilingViolation& violation : outcome.violations) {
          *response.add_violations() = std::move(violation);
        }
      }
      written = stream->Write(response);
    }
    batch.clear();
    if (!written) {
      result = grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed by the client");
      break;
    }
  }
  {
    absl::MutexLock lock(&ahead.mu);
    ahead.stop = true;
  }
  // A pending Read returns once the call is cancelled; after a clean end of input there is
  // none left, and cancelling a finished call does nothing.
  if (!result.ok()) context->TryCancel();
  reader.join();
  return result;
}

grpc::Status IntakeServiceImpl::ValidateFiling(grpc::ServerContext* context,
                                               const v1::ValidateFilingRequest* request,
                                               v1::ValidateFilingResponse* response) {
  const absl::Time deadline = EffectiveDeadline(*context, options_.default_deadline);
  absl::StatusOr<ValidationResult> result = intake_->Validate(request->filing(), deadline);
  if (!result.ok()) return StatusToGrpc(result.status());
  response->set_valid(result->ok());
  for (v1::FilingViolation& violation : result->violations) {
    *response->add_violations() = std::move(violation);
  }
  for (v1::FilingWarning& warning : result->warnings) {
    *response->add_warnings() = std::move(warning);
  }
  return grpc::Status::OK;
}

}  // namespace stip::intake
