#include "services/common/rejected_filing.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include <openssl/evp.h>

namespace stip {

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), size));
}

void SetOriginalPayload(v1::RejectedFiling& rejected, std::string_view payload,
                        std::string_view content_type) {
  rejected.set_original_payload(
      std::string(payload.substr(0, std::min(payload.size(), kRejectedPayloadPrefixBytes))));
  rejected.set_original_size(static_cast<int64_t>(payload.size()));
  rejected.set_original_sha256(Sha256Hex(payload));
  rejected.set_original_content_type(std::string(content_type));
}

void BoundRejectedFiling(v1::RejectedFiling& rejected, size_t max_bytes) {
  if (rejected.ByteSizeLong() <= max_bytes || !rejected.has_filing()) return;
  rejected.clear_filing();
  rejected.set_filing_omitted(true);
}

}  // namespace stip
