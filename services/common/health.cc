#include "services/common/health.h"

#include <utility>

#include "absl/strings/str_join.h"
#include "prometheus/gauge.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

prometheus::Gauge& ServingGauge() {
  static prometheus::Gauge* gauge = &prometheus::BuildGauge()
                                         .Name("stip_health_serving")
                                         .Help("1 when the process reports SERVING, 0 otherwise")
                                         .Register(MetricsRegistry())
                                         .Add({});
  return *gauge;
}

}  // namespace

HealthReporter::HealthReporter() { ServingGauge().Set(1); }

HealthReporter::Subscription::Subscription(Subscription&& other) noexcept
    : reporter_(std::exchange(other.reporter_, nullptr)), id_(other.id_) {}

HealthReporter::Subscription& HealthReporter::Subscription::operator=(
    Subscription&& other) noexcept {
  if (this != &other) {
    if (reporter_ != nullptr) reporter_->Unsubscribe(id_);
    reporter_ = std::exchange(other.reporter_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

HealthReporter::Subscription::~Subscription() {
  if (reporter_ != nullptr) reporter_->Unsubscribe(id_);
}

void HealthReporter::SetServing(bool serving, std::string_view reason) {
  absl::MutexLock lock(&mu_);
  const bool was_serving = reasons_.empty();
  if (serving) {
    auto it = reasons_.find(reason);
    if (it == reasons_.end()) return;
    reasons_.erase(it);
  } else {
    if (!reasons_.emplace(reason).second) return;
  }
  const bool now_serving = reasons_.empty();
  if (now_serving == was_serving) {
    spdlog::info("health: still NOT_SERVING ({})", absl::StrJoin(reasons_, ", "));
    return;
  }
  if (now_serving) {
    spdlog::info("health: SERVING ({} cleared)", reason);
  } else {
    spdlog::warn("health: NOT_SERVING ({})", reason);
  }
  ServingGauge().Set(now_serving ? 1 : 0);
  for (const auto& [id, listener] : listeners_) listener(now_serving);
}

bool HealthReporter::serving() const {
  absl::MutexLock lock(&mu_);
  return reasons_.empty();
}

std::vector<std::string> HealthReporter::NotServingReasons() const {
  absl::MutexLock lock(&mu_);
  return {reasons_.begin(), reasons_.end()};
}

HealthReporter::Subscription HealthReporter::Subscribe(Listener listener) {
  absl::MutexLock lock(&mu_);
  const int64_t id = next_id_++;
  listener(reasons_.empty());
  listeners_.emplace(id, std::move(listener));
  return Subscription(this, id);
}

void HealthReporter::Unsubscribe(int64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

}  // namespace stip
