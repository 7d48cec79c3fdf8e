// The national STIPs the registry loads on its first start: catalogue/national_stips.json,
// embedded in the binary at build time (so no install path to get wrong), in protobuf's
// JSON mapping of stip.v1.ParkCatalogue.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "stip/v1/park.pb.h"

namespace stip::registry {

// Parses a catalogue: protobuf's JSON mapping of stip.v1.ParkCatalogue. kInvalidArgument
// naming the park (by position and id) and the field for anything the registry would
// refuse from RegisterPark, and for a park id given twice.
absl::StatusOr<std::vector<v1::Park>> ParseParkCatalogue(std::string_view json);

// The catalogue shipped with this build (146 national STIPs approved by the end of 2015).
const std::vector<v1::Park>& EmbeddedParkCatalogue();

// Why `park` cannot be registered (the field and the rule), or OK. Shared with
// RegisterPark's request validation.
absl::Status ValidatePark(const v1::Park& park);

}  // namespace stip::registry
