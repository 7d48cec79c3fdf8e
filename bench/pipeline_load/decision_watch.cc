#include "bench/pipeline_load/decision_watch.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/pipeline_load/grpc_channel.h"
#include "bench/pipeline_load/report.h"
#include "bench/raw_copy.h"

namespace stip::bench::load {

DecisionWatch::DecisionWatch(const std::string& target, const Population* population)
    : stub_(stip::v1::RegistryService::NewStub(NewChannel(target))),
      population_(population),
      arrival_ns_(static_cast<size_t>(population->capacity())) {}

void DecisionWatch::Start() {
  thread_ = std::thread([this] { Run(); });
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return started_; })) {
    Die("--registry: WatchDecisions sent nothing within 30 s");
  }
}

void DecisionWatch::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void DecisionWatch::Run() {
  std::string cursor;
  while (true) {
    grpc::ClientContext context;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      context_ = &context;
    }
    stip::v1::WatchDecisionsRequest request;
    request.set_cursor(cursor);
    auto reader = stub_->WatchDecisions(&context, request);
    stip::v1::WatchDecisionsResponse response;
    while (reader->Read(&response)) {
      if (!response.cursor().empty()) cursor = response.cursor();
      if (!started_) {
        std::lock_guard lock(mu_);
        started_ = true;
        cv_.notify_all();
      }
      if (response.has_decision()) Record(response.decision());
    }
    const grpc::Status status = reader->Finish();
    {
      std::lock_guard lock(mu_);
      context_ = nullptr;
      if (stopping_) return;
      if (!started_) {
        Die(absl::StrCat("--registry: WatchDecisions: ", status.error_message(), " (code ",
                         static_cast<int>(status.error_code()), ")"));
      }
    }
    ++reconnects_;
    std::fprintf(stderr, "watch: the stream ended (%s); resuming from %s\n",
                 status.error_message().c_str(), cursor.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void DecisionWatch::Record(const stip::v1::QualificationDecision& decision) {
  const int64_t now = NowNs();
  const std::optional<int64_t> k =
      decision.filing_revision() == 1
          ? population_->IndexOf(decision.uscc(), decision.fiscal_year())
          : std::nullopt;
  if (!k.has_value()) {
    ++foreign_;
    return;
  }
  int64_t expected = 0;
  if (!arrival_ns_[static_cast<size_t>(*k)].compare_exchange_strong(expected, now)) {
    ++duplicates_;
    return;
  }
  const bool qualified = decision.outcome() == stip::v1::DECISION_OUTCOME_QUALIFIED;
  if (qualified) ++qualified_;
  if (qualified != population_->Qualifies(*k)) ++mismatches_;
  ++decided_;
}

std::string Json(const DecisionWatch& watch) {
  return absl::StrFormat(
      "{\"decided\":%d,\"qualified\":%d,\"not_qualified\":%d,\"outcome_mismatches\":%d,"
      "\"duplicates\":%d,\"other_decisions\":%d,\"reconnects\":%d}",
      watch.decided(), watch.qualified(), watch.decided() - watch.qualified(),
      watch.outcome_mismatches(), watch.duplicates(), watch.foreign(), watch.reconnects());
}

}  // namespace stip::bench::load
