// What every producer of stip.v1.RejectedFiling (intake's inbound entry, the assessment, the
// registry's conflict path) shares: the refused bytes carried as a digest, their size and a
// bounded prefix, and a rejection that always fits in one event.
//
// Plain functions, no I/O; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "stip/v1/filing.pb.h"

namespace stip {

// How much of a refused payload a RejectedFiling carries (original_payload).
inline constexpr size_t kRejectedPayloadPrefixBytes = 4096;

// The SHA-256 of `bytes`, lowercase hex (OpenSSL's libcrypto).
std::string Sha256Hex(std::string_view bytes);

// Sets original_payload (at most the first kRejectedPayloadPrefixBytes of `payload`),
// original_size, original_sha256 and original_content_type.
void SetOriginalPayload(v1::RejectedFiling& rejected, std::string_view payload,
                        std::string_view content_type);

// Leaves the decoded filing out (filing_omitted) when the serialized rejection would be
// larger than `max_bytes`, so that a sender's oversized filing cannot make its own
// rejection unpublishable. The violations (bounded by the validator), the digest and the
// prefix stay.
void BoundRejectedFiling(v1::RejectedFiling& rejected, size_t max_bytes);

}  // namespace stip
