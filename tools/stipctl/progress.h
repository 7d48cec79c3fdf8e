// A progress bar for long uploads, on stderr, drawn only when stderr is a terminal (so that
// logs and CI output stay clean): "[#####.....]  1200/5000  24%  850/s  ETA 0:04".
#pragma once

#include <cstdint>
#include <ostream>

#include "absl/time/time.h"

namespace stip::ctl {

// Not thread-safe: one thread calls Update and Finish.
class ProgressBar {
 public:
  // `total` items; `enabled` false draws nothing (e.g. !isatty(STDERR_FILENO)).
  ProgressBar(int64_t total, bool enabled, std::ostream& out);

  // `done` items so far. Redraws at most ten times a second.
  void Update(int64_t done);
  // Draws the final state and ends the line.
  void Finish(int64_t done);

  // Items per second since the start.
  double Rate(int64_t done) const;
  absl::Duration Elapsed() const;

 private:
  void Draw(int64_t done);

  const int64_t total_;
  const bool enabled_;
  std::ostream& out_;
  const absl::Time start_;
  absl::Time last_draw_ = absl::InfinitePast();
};

}  // namespace stip::ctl
