#include "services/registry/sql.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/registry/sql_pool.h"

namespace stip::registry {

int64_t SqlRow::Int(size_t column) const {
  const std::optional<std::string>& value = columns_.at(column);
  if (!value.has_value()) return 0;
  int64_t result = 0;
  if (!absl::SimpleAtoi(absl::string_view(value->data(), value->size()), &result)) {
    // The query selected a non-integer column where the caller expects one: a bug in it.
    std::fprintf(stderr, "stip: SqlRow::Int(%zu): column is not an integer: '%s'\n", column,
                 value->c_str());
    std::abort();
  }
  return result;
}

const std::string& SqlRow::Text(size_t column) const {
  static const std::string* const kEmpty = new std::string();
  const std::optional<std::string>& value = columns_.at(column);
  return value.has_value() ? *value : *kEmpty;
}

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqlDatabase(std::string_view url,
                                                             const SqlDatabaseOptions& options) {
  constexpr std::string_view kSqlite = "sqlite://";
  const std::string accepted =
      "use sqlite:///absolute/path.db (three slashes) or "
      "postgresql://user[:password]@host[:port]/dbname[?params] (or postgres://)";
  if (url.starts_with(kSqlite)) {
    std::string_view path = url.substr(kSqlite.size());
    if (path.empty() || path.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("database URL '", std::string(url), "' needs an absolute path: ", accepted));
    }
    return OpenSqliteSqlDatabase(std::string(path), options);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return OpenPostgresSqlDatabase(std::string(url), options);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("database URL '", std::string(url), "' is not supported: ", accepted));
}

}  // namespace stip::registry
