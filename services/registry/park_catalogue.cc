#include "services/registry/park_catalogue.h"

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace stip {
extern const char kEmbeddedParkCatalogue[];  // cmake/EmbedText.cmake
}  // namespace stip

namespace stip::registry {

absl::Status ValidatePark(const v1::Park& park) {
  static const std::regex kSlug("^[a-z0-9][a-z0-9-]{1,62}$");
  if (!std::regex_match(park.park_id(), kSlug)) {
    return absl::InvalidArgumentError(
        absl::StrCat("park.park_id \"", park.park_id(),
                     "\" must be a slug of 2 to 63 characters: lowercase letters, digits and '-', "
                     "starting with a letter or digit"));
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"name", &park.name()},
        {"city", &park.city()},
        {"province", &park.province()}}) {
    if (value->empty() || value->size() > 200) {
      return absl::InvalidArgumentError(
          absl::StrCat("park.", field, " must be 1 to 200 bytes of text"));
    }
  }
  if (park.region() == v1::ECONOMIC_REGION_UNSPECIFIED ||
      !v1::EconomicRegion_IsValid(park.region())) {
    return absl::InvalidArgumentError(
        "park.region must be EASTERN, CENTRAL, WESTERN or NORTHEASTERN");
  }
  if (park.year_founded() < 1980 || park.year_founded() > 2100) {
    return absl::InvalidArgumentError(
        absl::StrCat("park.year_founded ", park.year_founded(), " must be between 1980 and 2100"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Park>> ParseParkCatalogue(std::string_view json) {
  v1::ParkCatalogue catalogue;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &catalogue);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the park catalogue is not a stip.v1.ParkCatalogue in JSON: ",
                     std::string(parsed.message())));
  }
  std::set<std::string> seen;
  for (int i = 0; i < catalogue.parks_size(); ++i) {
    const v1::Park& park = catalogue.parks(i);
    if (absl::Status valid = ValidatePark(park); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parks[", i, "] (\"", park.park_id(), "\"): ", valid.message()));
    }
    if (!seen.insert(park.park_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("parks[", i, "]: park_id \"", park.park_id(), "\" is given twice"));
    }
  }
  return std::vector<v1::Park>(catalogue.parks().begin(), catalogue.parks().end());
}

const std::vector<v1::Park>& EmbeddedParkCatalogue() {
  static const std::vector<v1::Park>* const parks = [] {
    auto parsed = ParseParkCatalogue(kEmbeddedParkCatalogue);
    if (!parsed.ok()) {
      // The build embeds the file the tests check; a broken one is a broken build.
      std::fprintf(stderr, "stip: the embedded park catalogue is invalid: %s\n",
                   std::string(parsed.status().message()).c_str());
      std::abort();
    }
    return new std::vector<v1::Park>(std::move(*parsed));
  }();
  return *parks;
}

}  // namespace stip::registry
