// Filings the tests build: one that meets the default policy's three rules, so a test names
// only what it changes (the USCC, the park, a field made hostile).
#pragma once

#include <string>

#include "stip/v1/filing.pb.h"

namespace stip::testing {

// Fiscal year 2024, revision 1; R&D 5% of revenue, 40% tertiary-educated, 15% in R&D.
inline v1::AnnualFiling QualifyingFiling(const std::string& uscc,
                                         const std::string& park_id = "urumqi-hnz") {
  v1::AnnualFiling filing;
  filing.set_uscc(uscc);
  filing.set_park_id(park_id);
  filing.set_fiscal_year(2024);
  filing.set_revision(1);
  filing.set_gross_revenue_fen(100'000'000);
  filing.set_rd_expenditure_fen(5'000'000);
  filing.set_total_employees(100);
  filing.set_tertiary_educated_employees(40);
  filing.set_rd_employees(15);
  return filing;
}

}  // namespace stip::testing
