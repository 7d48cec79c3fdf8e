// A loop that runs on a thread of its own until asked to stop: the event processors, the
// registry's applier and outbox relay. ProcessorThread (shutdown.h) runs and stops one.
#pragma once

#include "absl/status/status.h"

namespace stip {

class Runnable {
 public:
  virtual ~Runnable() = default;
  // Runs until Stop(); OK after a clean stop, an error for what a retry cannot mend.
  virtual absl::Status Run() = 0;
  // Asks Run to return soon. Non-blocking; any thread.
  virtual void Stop() = 0;
};

}  // namespace stip
