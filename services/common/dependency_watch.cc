#include "services/common/dependency_watch.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace stip {

DependencyCheck ProgressCheck(std::string name, std::string what,
                              std::function<int64_t()> failures_in_a_row, int64_t limit) {
  return {std::move(name),
          [what = std::move(what), failures = std::move(failures_in_a_row), limit] {
            const int64_t count = failures();
            if (count < limit) return absl::OkStatus();
            return absl::UnavailableError(
                absl::StrCat(what, " failed ", count, " times in a row and makes no progress"));
          }};
}

DependencyWatch::DependencyWatch(HealthReporter* health, std::vector<DependencyCheck> checks,
                                 absl::Duration interval)
    : health_(health),
      checks_(std::move(checks)),
      interval_(interval),
      last_ok_(checks_.size(), true) {}

void DependencyWatch::CheckAll() {
  for (size_t i = 0; i < checks_.size(); ++i) {
    const absl::Status status = checks_[i].check();
    if (status.ok() == last_ok_[i]) continue;
    last_ok_[i] = status.ok();
    if (status.ok()) {
      spdlog::info("{} answers again", checks_[i].name);
    } else {
      spdlog::error("{} does not answer: {}", checks_[i].name, status.ToString());
    }
    health_->SetServing(status.ok(), checks_[i].name);
  }
}

absl::Status DependencyWatch::Run() {
  do {
    CheckAll();
  } while (!stop_.WaitForNotificationWithTimeout(interval_));
  return absl::OkStatus();
}

}  // namespace stip
