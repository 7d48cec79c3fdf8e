// The Kafka backend of the event log, on librdkafka. See event_log.h for the contract.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/common/event_log.h"

namespace stip {

// `bootstrap_servers` is librdkafka's bootstrap.servers ("host:port[,host:port]").
absl::StatusOr<std::unique_ptr<EventLog>> OpenKafkaEventLog(const std::string& bootstrap_servers,
                                                            const EventLogOptions& options);

}  // namespace stip
