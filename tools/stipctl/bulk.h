// What the bulk commands share: running many independent calls with bounded concurrency,
// and waiting for the decisions of many filings at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/stipctl/clients.h"

namespace stip::ctl {

// Calls `work(i)` for every i in [0, count) on `threads` threads, and `done(finished)` on
// the calling thread about ten times a second and at the end (for a progress bar).
void ParallelFor(size_t count, int threads, const std::function<void(size_t)>& work,
                 const std::function<void(int64_t)>& done);

struct DecisionTally {
  std::map<std::string, int64_t> by_outcome;  // "QUALIFIED", "NOT_QUALIFIED"
  int64_t undecided = 0;                      // no decision within the timeout
  std::string first_error;                    // e.g. the registry unreachable
};

// Waits, 16 calls at a time, for each filing's decision (RegistryService.WaitForDecision),
// each at most `timeout`, showing a progress bar on a terminal.
DecisionTally WaitForDecisions(Clients& clients, const std::vector<std::string>& filing_ids,
                               absl::Duration timeout);

}  // namespace stip::ctl
