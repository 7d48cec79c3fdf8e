// The SQLite backend of the event log: the embedded mode. See event_log.h for the contract.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/event_log.h"

namespace stip {

// Opens (creating when missing) the event log in the SQLite file at `path`.
absl::StatusOr<std::unique_ptr<EventLog>> OpenSqliteEventLog(const std::string& path,
                                                             const EventLogOptions& options);

}  // namespace stip
