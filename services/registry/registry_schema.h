// The registry's schema, as numbered migrations applied in order at start-up. A migration
// is never edited once released: a change is a new migration. Both dialects run the same
// SQL except for the two spellings that differ (an identity key and a bytes column).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/registry/sql.h"

namespace stip::registry {

// The newest migration this binary knows.
int LatestSchemaVersion();

// Applies the migrations `session`'s database lacks, each in one write transaction (which
// serializes instances starting together: the second finds the work done).
// kFailedPrecondition when the database is at a version newer than this binary knows.
absl::Status MigrateSchema(SqlSession& session);

// The version in force, on a database MigrateSchema has run on. A cheap read: the
// registry's health check.
absl::StatusOr<int> CurrentSchemaVersion(SqlSession& session);

}  // namespace stip::registry
