#include "services/intake/intake_service.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/grpc_server.h"
#include "spdlog/spdlog.h"

namespace stip::intake {

// Cancels the streams whose write has been outstanding for the write timeout. One thread for
// all streams: it sleeps until the earliest armed deadline. A synchronous Write cannot be
// given a deadline of its own; cancelling the call is what ends it.
class IntakeServiceImpl::WriteWatchdog {
 public:
  // One stream's writes. Registered for the life of the stream.
  struct Stream {
    grpc::ServerContext* context;
    absl::Time deadline = absl::InfiniteFuture();  // armed while a write is outstanding
    bool fired = false;
  };

  explicit WriteWatchdog(absl::Duration timeout) : timeout_(timeout), thread_([this] { Run(); }) {}
  ~WriteWatchdog() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      wake_.Signal();
    }
    thread_.join();
  }

  void Register(Stream* stream) {
    absl::MutexLock lock(&mu_);
    streams_.insert(stream);
  }
  // After Unregister the watchdog never touches `stream` or its context again.
  void Unregister(Stream* stream) {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream);
  }
  void Arm(Stream* stream) {
    absl::MutexLock lock(&mu_);
    stream->deadline = absl::Now() + timeout_;
    if (stream->deadline < next_wake_) wake_.Signal();
  }
  // True when the watchdog cancelled the stream.
  bool Disarm(Stream* stream) {
    absl::MutexLock lock(&mu_);
    stream->deadline = absl::InfiniteFuture();
    return stream->fired;
  }

 private:
  void Run() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      const absl::Time now = absl::Now();
      next_wake_ = absl::InfiniteFuture();
      for (Stream* stream : streams_) {
        if (stream->fired) continue;
        if (stream->deadline <= now) {
          stream->fired = true;
          stream->context->TryCancel();
        } else {
          next_wake_ = std::min(next_wake_, stream->deadline);
        }
      }
      wake_.WaitWithDeadline(&mu_, next_wake_);
    }
  }

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar wake_;
  absl::flat_hash_set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  absl::Time next_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

void FitResponse(size_t max_bytes, v1::SubmitFilingsResponse* response) {
  if (response->ByteSizeLong() <= max_bytes) return;
  constexpr size_t kMaxMessageBytes = 1024;
  if (response->error_message().size() > kMaxMessageBytes) {
    // On a UTF-8 character boundary.
    size_t cut = kMaxMessageBytes;
    while (cut > 0 && (static_cast<unsigned char>(response->error_message()[cut]) & 0xc0) == 0x80) {
      --cut;
    }
    response->mutable_error_message()->resize(cut);
  }
  // Room for the note that replaces the violations left out.
  constexpr size_t kNoteBytes = 400;
  const int total = response->violations_size();
  while (response->violations_size() > 0 && response->ByteSizeLong() + kNoteBytes > max_bytes) {
    response->mutable_violations()->RemoveLast();
  }
  if (const int omitted = total - response->violations_size(); omitted > 0) {
    v1::FilingViolation* note = response->add_violations();
    note->set_reason(std::string(kMoreViolationsReason));
    note->set_message(absl::StrCat(omitted, " more violations not shown: correct the ones above ",
                                   "and submit again to see them"));
    note->set_message_zh(
        absl::StrCat("另有 ", omitted, " 处错误未列出：请先更正以上错误后重新提交"));
  }
  v1::FilingReceipt* receipt = response->mutable_receipt();
  while (receipt->warnings_size() > 0 && response->ByteSizeLong() > max_bytes) {
    receipt->mutable_warnings()->RemoveLast();
  }
  // The response names the request already.
  if (response->ByteSizeLong() > max_bytes) receipt->clear_request_id();
  if (response->ByteSizeLong() > max_bytes) {
    const size_t over = response->ByteSizeLong() - max_bytes;
    std::string* id = response->mutable_request_id();
    id->resize(id->size() > over + 8 ? id->size() - over - 8 : 0);
  }
}

IntakeServiceImpl::IntakeServiceImpl(FilingIntake* intake, IntakeServiceOptions options)
    : intake_(intake),
      options_(options),
      watchdog_(std::make_unique<WriteWatchdog>(options.write_timeout)) {}

IntakeServiceImpl::~IntakeServiceImpl() = default;

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
  WriteWatchdog::Stream watched{context};
  watchdog_->Register(&watched);

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
      FitResponse(options_.max_response_bytes, &response);
      watchdog_->Arm(&watched);
      written = stream->Write(response);
      if (watchdog_->Disarm(&watched)) written = false;
    }
    batch.clear();
    if (!written) {
      result = grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed by the client");
      if (watchdog_->Disarm(&watched)) {
        spdlog::warn(
            "SubmitFilings from {}: a response waited more than {} to be read; the "
            "stream was cancelled",
            context->peer(), absl::FormatDuration(options_.write_timeout));
      }
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
  watchdog_->Unregister(&watched);
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
