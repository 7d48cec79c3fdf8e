#include "services/registry/sql.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/registry/sql_pool.h"

namespace stip::registry {
namespace {

// The value of `column` as an integer of type T; 0 for NULL.
template <typename T>
absl::StatusOr<T> ParseInteger(const std::vector<std::optional<std::string>>& columns,
                               size_t column, absl::string_view type) {
  if (column >= columns.size()) {
    return absl::InternalError(absl::StrCat("result column ", column,
                                            " does not exist (the row has ", columns.size(), ")"));
  }
  const std::optional<std::string>& value = columns[column];
  if (!value.has_value()) return T{0};
  const absl::string_view text(value->data(), value->size());
  T result{0};
  if (absl::SimpleAtoi(text, &result)) return result;
  // Only a short value is quoted: a message must stay readable whatever the column holds.
  const std::string quoted = text.size() <= 48 ? absl::StrCat(" (", text, ")") : "";
  if (!text.empty() && absl::c_all_of(text.substr(text[0] == '-' ? 1 : 0),
                                      [](char c) { return absl::ascii_isdigit(c); })) {
    return absl::OutOfRangeError(
        absl::StrCat("result column ", column, " holds an integer beyond ", type, quoted));
  }
  return absl::InternalError(absl::StrCat("result column ", column, " is not an integer", quoted));
}

}  // namespace

absl::StatusOr<int64_t> SqlRow::Int(size_t column) const {
  return ParseInteger<int64_t>(columns_, column, "int64");
}

absl::StatusOr<absl::int128> SqlRow::Int128(size_t column) const {
  return ParseInteger<absl::int128>(columns_, column, "int128");
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
