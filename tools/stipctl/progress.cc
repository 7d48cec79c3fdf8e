#include "tools/stipctl/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace stip::ctl {
namespace {

constexpr int kBarWidth = 30;

std::string Clock(int64_t seconds) {
  if (seconds >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", seconds / 3600, seconds / 60 % 60, seconds % 60);
  }
  return absl::StrFormat("%d:%02d", seconds / 60, seconds % 60);
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, bool enabled, std::ostream& out)
    : total_(total), enabled_(enabled), out_(out), start_(absl::Now()) {}

absl::Duration ProgressBar::Elapsed() const { return absl::Now() - start_; }

double ProgressBar::Rate(int64_t done) const {
  const double seconds = absl::ToDoubleSeconds(Elapsed());
  return seconds > 0 ? static_cast<double>(done) / seconds : 0;
}

void ProgressBar::Update(int64_t done) {
  if (!enabled_) return;
  const absl::Time now = absl::Now();
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  Draw(done);
}

void ProgressBar::Finish(int64_t done) {
  if (!enabled_) return;
  Draw(done);
  out_ << "\n";
  out_.flush();
}

void ProgressBar::Draw(int64_t done) {
  const double fraction =
      total_ > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0)
                 : 1.0;
  const int filled = static_cast<int>(fraction * kBarWidth);
  const double rate = Rate(done);
  std::string eta = "--:--";
  if (rate > 0 && done <= total_) {
    eta = Clock(static_cast<int64_t>(std::ceil(static_cast<double>(total_ - done) / rate)));
  }
  // \r and \x1b[K: redraw in place and clear what a longer previous line left.
  out_ << absl::StrFormat("\r[%s%s] %d/%d %3.0f%% %.0f/s ETA %s\x1b[K", std::string(filled, '#'),
                          std::string(kBarWidth - filled, '.'), done, total_, fraction * 100, rate,
                          eta);
  out_.flush();
}

}  // namespace stip::ctl
