// Early returns for absl::Status and absl::StatusOr, for code that reads several fallible
// values in a row (a row of a query, the steps of a transaction).
//
//   STIP_RETURN_IF_ERROR(session.Commit());
//   STIP_ASSIGN_OR_RETURN(const int64_t seq, row.Int(0));
//
// The enclosing function returns absl::Status or any absl::StatusOr<T>.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define STIP_RETURN_IF_ERROR(expr)                                    \
  do {                                                                \
    if (absl::Status _status = (expr); !_status.ok()) return _status; \
  } while (0)
#define STIP_CONCAT_INNER(a, b) a##b
#define STIP_CONCAT(a, b) STIP_CONCAT_INNER(a, b)
// `lhs` may be a declaration ("Type name"), so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define STIP_ASSIGN_OR_RETURN(lhs, expr) \
  STIP_ASSIGN_OR_RETURN_IMPL(STIP_CONCAT(_statusor_, __LINE__), lhs, expr)
#define STIP_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(*statusor)
// NOLINTEND(bugprone-macro-parentheses)
