#include "tools/sample_year/sample_year.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <random>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "services/intake/uscc.h"

namespace stip::sample_year {
namespace {

// ---------------------------------------------------------------------------------------
// Random numbers: mt19937_64's output is fixed by the standard; every transform is here.

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}

  uint64_t Bits() { return engine_(); }
  // Uniform on [0, 1), 53 bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform on [0, n), unbiased (rejection below the largest multiple of n).
  uint64_t Below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
      const uint64_t r = engine_();
      if (r >= threshold) return r % n;
    }
  }
  int Between(int low, int high) {  // inclusive
    return low + static_cast<int>(Below(static_cast<uint64_t>(high - low) + 1));
  }
  bool Chance(double p) { return Uniform() < p; }
  // Standard normal by Box-Muller, one value per call (no cached second value, so that the
  // stream does not depend on how many normals were asked for before).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }
  // Poisson by Knuth's product of uniforms (small means only).
  int Poisson(double mean) {
    const double limit = std::exp(-mean);
    int k = 0;
    double product = Uniform();
    while (product > limit) {
      ++k;
      product *= Uniform();
    }
    return k;
  }
  template <typename T>
  void Shuffle(std::vector<T>& items) {  // Fisher-Yates
    for (std::size_t i = items.size(); i > 1; --i) {
      std::swap(items[i - 1], items[Below(i)]);
    }
  }
  template <typename T, std::size_t N>
  const T& Pick(const std::array<T, N>& items) {
    return items[Below(N)];
  }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(items.size())];
  }

 private:
  std::mt19937_64 engine_;
};

// splitmix64's finalizer: independent engine seeds for each park from one --seed.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The inverse of the standard normal CDF (Acklam's rational approximation, relative error
// below 1.2e-9): sets each distribution's centre from its pass probability.
double InverseNormal(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  p = std::clamp(p, 1e-9, 1.0 - 1e-9);
  if (p < 0.02425) {
    const double q = std::sqrt(-2.0 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  if (p > 1.0 - 0.02425) return -InverseNormal(1.0 - p);
  const double q = p - 0.5;
  const double r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

double Logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double Logit(double p) { return std::log(p / (1.0 - p)); }

// ---------------------------------------------------------------------------------------
// The default rules, exactly: value / base >= threshold_bp / 10000, in 128-bit integers.

constexpr int64_t kRdIntensityBp = 300;
constexpr int64_t kTertiaryShareBp = 3000;
constexpr int64_t kRdStaffShareBp = 1000;

bool AtLeast(int64_t value, int64_t base, int64_t threshold_bp) {
  return absl::int128(value) * 10000 >= absl::int128(base) * threshold_bp;
}
bool RdIntensityPasses(const v1::AnnualFiling& f) {
  return AtLeast(f.rd_expenditure_fen(), f.gross_revenue_fen(), kRdIntensityBp);
}
bool TertiaryPasses(const v1::AnnualFiling& f) {
  return AtLeast(f.tertiary_educated_employees(), f.total_employees(), kTertiaryShareBp);
}
bool RdStaffPasses(const v1::AnnualFiling& f) {
  return AtLeast(f.rd_employees(), f.total_employees(), kRdStaffShareBp);
}
// floor(base * bp / 10000) and its ceiling, for corrections placed on either side of a rule.
int64_t FloorShare(int64_t base, int64_t bp) {
  return static_cast<int64_t>(absl::int128(base) * bp / 10000);
}
int64_t CeilShare(int64_t base, int64_t bp) {
  return static_cast<int64_t>((absl::int128(base) * bp + 9999) / 10000);
}
int RoundedBp(int64_t part, int64_t whole) {
  return whole == 0 ? 0 : static_cast<int>((part * 20000 + whole) / (2 * whole));
}

// ---------------------------------------------------------------------------------------
// The parks and what makes each one look like itself.

using Field = v1::TechnologyField;

struct ParkTraits {
  ParkSpec spec;
  // GB/T 2260 code of the park's district: positions 3-8 of its enterprises' USCCs.
  const char* division;
  std::vector<const char*> local_brands;
  // Relative weights of the eight fields (index = enum value - 1) for an enterprise's main
  // field.
  std::array<int, 8> field_weights;
  double revenue_median_fen;
  double employees_median;
  // Mean projects per enterprise, for qualifying and other enterprises.
  double projects_qualified;
  double projects_other;
};

const std::vector<ParkTraits>& Traits() {
  //                                  EI  BIO AERO MAT SVC NRG ENV MFG
  static const auto* traits = new std::vector<ParkTraits>{
      {{"urumqi-hnz", "Urumqi", 679, 51, 2165},
       "650104",
       {"Tianshan", "Kunlun", "Junggar", "Bogda", "Silk Road", "Hongshan", "Xinjiang"},
       {10, 8, 1, 18, 10, 20, 18, 15},
       2.6e9,
       55,
       1.20,
       0.23},
      {{"kunming-hnz", "Kunming", 878, 62, 1378},
       "530112",
       {"Dianchi", "Yunling", "Spring City", "Cangshan", "Yunnan", "Jinma", "Biji"},
       {12, 26, 1, 12, 12, 10, 17, 10},
       2.4e9,
       50,
       1.30,
       0.25},
      {{"zhongguancun", "Beijing", 4000, 520, 4500},
       "110108",
       {"Zhongguancun", "Haidian", "Yanyuan", "Shangdi", "Xishan", "Jingshi", "Yuquan"},
       {36, 14, 4, 8, 22, 6, 4, 6},
       4.0e9,
       80,
       2.00,
       0.60},
      {{"wuhan-east-lake", "Wuhan", 600, 54, 3000},
       "420111",
       {"East Lake", "Optics Valley", "Chutian", "Jiangcheng", "Yellow Crane", "Luojia"},
       {30, 16, 2, 10, 10, 10, 6, 16},
       3.0e9,
       65,
       1.60,
       0.40},
      {{"changchun-hnz", "Changchun", 450, 63, 2400},
       "220104",
       {"Jingyue", "Changbai", "Songhua", "Yitong", "Jilin", "Nanhu"},
       {12, 18, 2, 14, 8, 8, 6, 32},
       3.2e9,
       70,
       1.40,
       0.30},
  };
  return *traits;
}

constexpr std::array<const char*, 24> kSyllables = {
    "Hua",  "Xin", "Rui", "Tai", "Heng",  "Tong",  "Jin",   "Long",
    "Yuan", "Da",  "Bo",  "Kai", "Hong",  "Sheng", "Ming",  "Chuang",
    "Lian", "Jia", "An",  "Ke",  "Guang", "Zhi",   "Cheng", "Wei"};

struct FieldWords {
  Field field;
  std::array<const char*, 4> industries;
  std::array<const char*, 6> titles;
};

const std::array<FieldWords, 8>& Fields() {
  static const std::array<FieldWords, 8> fields = {{
      {v1::TECHNOLOGY_FIELD_ELECTRONIC_INFORMATION,
       {"Information Technology", "Electronics", "Software", "Digital Technology"},
       {"Industrial internet platform", "Edge computing gateway", "Embedded vision module",
        "Enterprise data security suite", "Low-power IoT sensor chip",
        "Natural language search engine"}},
      {v1::TECHNOLOGY_FIELD_BIOMEDICINE,
       {"Biotechnology", "Pharmaceutical", "Bio-Pharma", "Medical Devices"},
       {"Recombinant protein expression line", "Traditional medicine extraction process",
        "Point-of-care diagnostic kit", "Monoclonal antibody candidate",
        "Minimally invasive surgical stapler", "Veterinary vaccine adjuvant"}},
      {v1::TECHNOLOGY_FIELD_AEROSPACE,
       {"Aerospace Technology", "Aviation Equipment", "Satellite Applications", "Avionics"},
       {"Composite airframe panel", "Satellite ground terminal", "UAV flight controller",
        "Turbine blade coating", "Remote sensing data service", "Cabin pressure sensor"}},
      {v1::TECHNOLOGY_FIELD_NEW_MATERIALS,
       {"New Materials", "Advanced Materials", "Polymer Materials", "Special Alloys"},
       {"High-purity polysilicon process", "Basalt fibre reinforcement",
        "Rare-earth permanent magnet", "Graphene conductive coating", "Biodegradable mulch film",
        "Aluminium-lithium alloy sheet"}},
      {v1::TECHNOLOGY_FIELD_HIGH_TECH_SERVICES,
       {"Technology Services", "Testing and Certification", "Data Services",
        "Technology Consulting"},
       {"Product testing laboratory", "Technology transfer platform",
        "Cloud design collaboration service", "Calibration service network",
        "Industrial design studio", "Patent analytics service"}},
      {v1::TECHNOLOGY_FIELD_NEW_ENERGY,
       {"New Energy", "Solar Energy", "Wind Power Equipment", "Energy Storage"},
       {"Direct-drive wind turbine", "Bifacial photovoltaic module", "Lithium iron phosphate pack",
        "Smart micro-grid controller", "Hydrogen electrolyser", "Solar thermal collector"}},
      {v1::TECHNOLOGY_FIELD_RESOURCES_AND_ENVIRONMENT,
       {"Environmental Technology", "Water Treatment", "Resource Recycling",
        "Ecological Engineering"},
       {"Drip irrigation control system", "Saline-alkali soil remediation",
        "Industrial wastewater membrane", "Tailings resource recovery", "Desulfurisation catalyst",
        "Desert vegetation restoration"}},
      {v1::TECHNOLOGY_FIELD_ADVANCED_MANUFACTURING,
       {"Intelligent Equipment", "Precision Machinery", "Automation", "Robotics"},
       {"Automotive welding robot cell", "CNC machining centre", "Servo drive unit",
        "Intelligent logistics sorter", "Precision bearing line", "Machine vision inspector"}},
  }};
  return fields;
}

const FieldWords& WordsOf(Field field) { return Fields()[static_cast<int>(field) - 1]; }

// ---------------------------------------------------------------------------------------
// One park's generation.

// Where an enterprise stands before any amendment.
enum class Role { kNonFiler, kInvalid, kQualified, kNotQualified };

// The centres and spreads of the three measures for one park (see the header's comment).
struct MeasureModel {
  double log_rd_mean, log_rd_sigma;                  // ln(R&D / revenue)
  double tertiary_logit_mean, tertiary_logit_sigma;  // logit(tertiary / total)
  double staff_logit_mean, staff_logit_sigma;        // logit(R&D staff / total)

  // Pass probabilities p_rd * p_tertiary * p_staff = `qualified_share`; R&D intensity is the
  // hardest criterion in practice, so it takes the largest share of the failures.
  static MeasureModel For(double qualified_share) {
    const double q = std::clamp(qualified_share, 0.001, 0.999);
    MeasureModel m{};
    m.log_rd_sigma = 0.85;
    m.tertiary_logit_sigma = 1.0;
    m.staff_logit_sigma = 0.9;
    m.log_rd_mean = std::log(0.03) + m.log_rd_sigma * InverseNormal(std::pow(q, 0.4));
    m.tertiary_logit_mean = Logit(0.30) + m.tertiary_logit_sigma * InverseNormal(std::pow(q, 0.3));
    m.staff_logit_mean = Logit(0.10) + m.staff_logit_sigma * InverseNormal(std::pow(q, 0.3));
    return m;
  }
};

class ParkGenerator {
 public:
  ParkGenerator(const ParkTraits& traits, const Options& options, int index,
                absl::flat_hash_set<std::string>& usccs, absl::flat_hash_set<std::string>& names)
      : traits_(traits),
        options_(options),
        random_(Mix(Mix(options.seed) ^ static_cast<uint64_t>(index + 1))),
        usccs_(usccs),
        names_(names) {}

  ParkSummary Run(SampleYear& out);

 private:
  std::string NewUscc();
  std::string NewName(Field main_field);
  Field MainField();
  int64_t DrawRd(int64_t revenue) {
    const double intensity = std::exp(model_.log_rd_mean + model_.log_rd_sigma * random_.Normal());
    return std::clamp<int64_t>(std::llround(static_cast<double>(revenue) * intensity), 0, revenue);
  }
  int DrawShare(int total, double mean, double sigma) {
    const double share = Logistic(mean + sigma * random_.Normal());
    return std::clamp<int>(static_cast<int>(std::lround(share * total)), 0, total);
  }
  int DrawTertiary(int total) {
    return DrawShare(total, model_.tertiary_logit_mean, model_.tertiary_logit_sigma);
  }
  int DrawStaff(int total) {
    return DrawShare(total, model_.staff_logit_mean, model_.staff_logit_sigma);
  }
  void DrawMeasures(v1::AnnualFiling& filing, Role role);
  void AddProjects(v1::AnnualFiling& filing, Field main_field, Role role);
  v1::HiTechProject NewProject(Field field, int number, double nominate_chance);
  void MakeInvalid(v1::AnnualFiling& filing, int kind, Field main_field);

  const ParkTraits& traits_;
  const Options& options_;
  Random random_;
  absl::flat_hash_set<std::string>& usccs_;
  absl::flat_hash_set<std::string>& names_;
  MeasureModel model_{};
};

int Scaled(int count, double scale) {
  return static_cast<int>(std::llround(static_cast<double>(count) * scale));
}
int PerTenThousand(int count, int bp) { return (count * bp + 5000) / 10000; }

std::string ParkGenerator::NewUscc() {
  // "9" market regulation, "1" enterprise, the district, then a GB 11714 organization code
  // (eight symbols and its mod-11 check), then the GB 32100 check character.
  static constexpr std::string_view kDigits = "0123456789";
  for (;;) {
    std::string body;
    if (random_.Chance(0.6)) {
      body = "MA";  // codes issued since 2015 mostly start so
      for (int i = 0; i < 6; ++i) body += intake::kUsccAlphabet[random_.Below(31)];
    } else {
      for (int i = 0; i < 8; ++i) body += kDigits[random_.Below(10)];
    }
    static constexpr int kWeights[] = {3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int i = 0; i < 8; ++i) {
      const char ch = body[static_cast<std::size_t>(i)];
      const int value = ch <= '9' ? ch - '0' : ch - 'A' + 10;
      sum += kWeights[i] * value;
    }
    const int check = 11 - sum % 11;
    body += check == 11 ? '0' : check == 10 ? 'X' : static_cast<char>('0' + check);
    std::string uscc = absl::StrCat("91", traits_.division, body);
    const absl::StatusOr<char> last = intake::UsccCheckCharacter(uscc);
    if (!last.ok()) continue;  // cannot happen: every symbol is from the alphabet
    uscc += *last;
    if (usccs_.insert(uscc).second) return uscc;
  }
}

Field ParkGenerator::MainField() {
  int total = 0;
  for (int w : traits_.field_weights) total += w;
  int pick = static_cast<int>(random_.Below(static_cast<uint64_t>(total)));
  for (int i = 0; i < 8; ++i) {
    pick -= traits_.field_weights[static_cast<std::size_t>(i)];
    if (pick < 0) return static_cast<Field>(i + 1);
  }
  return v1::TECHNOLOGY_FIELD_ELECTRONIC_INFORMATION;
}

std::string ParkGenerator::NewName(Field main_field) {
  for (int attempt = 0;; ++attempt) {
    std::string brand;
    if (random_.Chance(0.3)) {
      brand = std::string(random_.Pick(traits_.local_brands));
    } else {
      const char* first = random_.Pick(kSyllables);
      std::string second(random_.Pick(kSyllables));
      second[0] = static_cast<char>(second[0] - 'A' + 'a');
      brand = absl::StrCat(first, second);
    }
    const double suffix_pick = random_.Uniform();
    const char* suffix = suffix_pick < 0.85   ? "Co., Ltd."
                         : suffix_pick < 0.95 ? "Group Co., Ltd."
                                              : "Development Co., Ltd.";
    std::string name = absl::StrCat(traits_.spec.city, " ", brand, " ",
                                    random_.Pick(WordsOf(main_field).industries), " ", suffix);
    // A registered name is unique; after many collisions (only at large scales) a branch
    // number tells the new one apart, as registries do.
    if (attempt >= 20) absl::StrAppend(&name, " No. ", attempt - 18);
    if (names_.insert(name).second) return name;
  }
}

void ParkGenerator::DrawMeasures(v1::AnnualFiling& f, Role role) {
  const int64_t revenue = f.gross_revenue_fen();
  const int total = f.total_employees();
  // Rejection sampling judged by the exact rules; the caps are never reached in practice
  // (the smallest acceptance rate is about one half), and then a value on the right side of
  // the threshold is set directly.
  constexpr int kMaxDraws = 10000;
  if (role == Role::kQualified) {
    int draws = 0;
    do f.set_rd_expenditure_fen(DrawRd(revenue));
    while (!RdIntensityPasses(f) && ++draws < kMaxDraws);
    if (!RdIntensityPasses(f)) f.set_rd_expenditure_fen(CeilShare(revenue, kRdIntensityBp));
    draws = 0;
    do f.set_tertiary_educated_employees(DrawTertiary(total));
    while (!TertiaryPasses(f) && ++draws < kMaxDraws);
    if (!TertiaryPasses(f)) {
      f.set_tertiary_educated_employees(static_cast<int>(CeilShare(total, kTertiaryShareBp)));
    }
    draws = 0;
    do f.set_rd_employees(DrawStaff(total));
    while (!RdStaffPasses(f) && ++draws < kMaxDraws);
    if (!RdStaffPasses(f)) f.set_rd_employees(static_cast<int>(CeilShare(total, kRdStaffShareBp)));
    return;
  }
  for (int draws = 0; draws < kMaxDraws; ++draws) {
    f.set_rd_expenditure_fen(DrawRd(revenue));
    f.set_tertiary_educated_employees(DrawTertiary(total));
    f.set_rd_employees(DrawStaff(total));
    if (!QualifiesUnderDefaultRules(f)) return;
  }
  f.set_rd_expenditure_fen(FloorShare(revenue, kRdIntensityBp - 1));
}

v1::HiTechProject ParkGenerator::NewProject(Field field, int number, double nominate_chance) {
  v1::HiTechProject project;
  project.set_project_id(absl::StrFormat("HT%d-%02d", options_.fiscal_year, number));
  std::string title(random_.Pick(WordsOf(field).titles));
  if (random_.Chance(0.15)) absl::StrAppend(&title, " (phase II)");
  project.set_title(std::move(title));
  project.set_field(field);
  project.set_stage(random_.Chance(0.45) ? v1::PROJECT_STAGE_COMMERCIALIZED
                                         : v1::PROJECT_STAGE_DEVELOPMENT);
  project.set_torch_nominated(random_.Chance(nominate_chance));
  return project;
}

void ParkGenerator::AddProjects(v1::AnnualFiling& f, Field main_field, Role role) {
  const bool strong = role == Role::kQualified;
  const int count =
      std::min(6, random_.Poisson(strong ? traits_.projects_qualified : traits_.projects_other));
  // Qualifying enterprises put more of their projects forward for the Torch program.
  const double nominate_chance = strong ? 0.30 : 0.08;
  for (int i = 1; i <= count; ++i) {
    const Field field =
        random_.Chance(0.7) ? main_field : static_cast<Field>(random_.Between(1, 8));
    *f.add_projects() = NewProject(field, i, nominate_chance);
  }
}

// Violations intake's validator refuses (filing_validator.h), one kind per invalid filing in
// turn: the mistakes people make on a form.
void ParkGenerator::MakeInvalid(v1::AnnualFiling& f, int kind, Field main_field) {
  const int total = f.total_employees();
  switch (kind % 5) {
    case 0:  // the headcounts swapped or mistyped: EMPLOYEES_EXCEED_TOTAL
      f.set_tertiary_educated_employees(total + random_.Between(1, std::max(1, total / 4)));
      break;
    case 1:  // a project without a title: FIELD_REQUIRED on projects[i].title
      if (f.projects_size() == 0) *f.add_projects() = NewProject(main_field, 1, 0.0);
      f.mutable_projects(static_cast<int>(random_.Below(static_cast<uint64_t>(f.projects_size()))))
          ->clear_title();
      break;
    case 2:  // a sign error: MONEY_NEGATIVE
      f.set_rd_expenditure_fen(-std::max<int64_t>(1, f.rd_expenditure_fen()));
      break;
    case 3:  // R&D staff above the total: EMPLOYEES_EXCEED_TOTAL
      f.set_rd_employees(total + random_.Between(1, std::max(1, total / 10)));
      break;
    default:  // a project's stage left blank: FIELD_REQUIRED on projects[i].stage
      if (f.projects_size() == 0) *f.add_projects() = NewProject(main_field, 1, 0.0);
      f.mutable_projects(f.projects_size() - 1)->set_stage(v1::PROJECT_STAGE_UNSPECIFIED);
      break;
  }
}

ParkSummary ParkGenerator::Run(SampleYear& out) {
  const ParkSpec& spec = traits_.spec;
  ParkSummary summary;
  summary.park_id = spec.park_id;
  summary.target_qualified_bp = spec.target_qualified_bp;
  const int n = std::max(1, Scaled(spec.enterprises, options_.scale));
  const int foreign = std::min(n, Scaled(spec.foreign_invested, options_.scale));
  const int non_filers = PerTenThousand(n, 300);
  const int invalid = PerTenThousand(n, 100);
  const int valid = n - non_filers - invalid;
  const int qualified = std::min(valid, PerTenThousand(n, spec.target_qualified_bp));
  model_ = MeasureModel::For(valid > 0 ? static_cast<double>(qualified) / valid : 0.5);

  std::vector<Role> roles;
  roles.insert(roles.end(), static_cast<std::size_t>(non_filers), Role::kNonFiler);
  roles.insert(roles.end(), static_cast<std::size_t>(invalid), Role::kInvalid);
  roles.insert(roles.end(), static_cast<std::size_t>(qualified), Role::kQualified);
  roles.insert(roles.end(), static_cast<std::size_t>(valid - qualified), Role::kNotQualified);
  random_.Shuffle(roles);
  std::vector<char> foreign_flags(static_cast<std::size_t>(n), 0);
  std::fill(foreign_flags.begin(), foreign_flags.begin() + foreign, 1);
  random_.Shuffle(foreign_flags);

  // Revision-1 filings of this park and the role each was drawn for, in enterprise order.
  std::vector<v1::AnnualFiling> filings;
  std::vector<Role> filing_roles;
  int invalid_made = 0;
  for (int i = 0; i < n; ++i) {
    const Field main_field = MainField();
    v1::EnrollEnterpriseRequest& enterprise = out.enterprises.emplace_back();
    enterprise.set_uscc(NewUscc());
    enterprise.set_name(NewName(main_field));
    enterprise.set_park_id(spec.park_id);
    enterprise.set_foreign_invested(foreign_flags[static_cast<std::size_t>(i)] != 0);
    summary.enterprises++;
    if (enterprise.foreign_invested()) summary.foreign_invested++;

    // Drawn for every enterprise, so that one that files nothing still moves the stream
    // the same way and the others' data do not depend on who files.
    const double z_employees = random_.Normal();
    const double z_revenue = 0.6 * z_employees + 0.8 * random_.Normal();
    const int employees = std::clamp<int>(
        static_cast<int>(std::lround(traits_.employees_median * std::exp(1.1 * z_employees))), 10,
        5000);
    const int64_t revenue =
        std::clamp<int64_t>(std::llround(traits_.revenue_median_fen * std::exp(1.3 * z_revenue)),
                            5'000'000, 50'000'000'000'000);
    const Role role = roles[static_cast<std::size_t>(i)];
    if (role == Role::kNonFiler) continue;

    v1::AnnualFiling f;
    f.set_uscc(enterprise.uscc());
    f.set_park_id(spec.park_id);
    f.set_fiscal_year(options_.fiscal_year);
    f.set_revision(1);
    f.set_gross_revenue_fen(revenue);
    f.set_total_employees(employees);
    f.set_enterprise_name(enterprise.name());
    DrawMeasures(f, role == Role::kQualified ? Role::kQualified : Role::kNotQualified);
    AddProjects(f, main_field, role);
    if (role == Role::kInvalid) MakeInvalid(f, invalid_made++, main_field);
    filings.push_back(std::move(f));
    filing_roles.push_back(role);
  }

  // Amendments among the valid filers: a third correct a qualifying filing below a threshold
  // (R&D spending or R&D staff overstated), a third correct a filing that failed only on one
  // of those two above it, the rest correct revenue without changing the outcome.
  const int amendments = std::min(PerTenThousand(n, 300), valid);
  const int flips_each_way = amendments / 3;
  std::vector<int> order(filings.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  random_.Shuffle(order);
  std::vector<int> kind(filings.size(), 0);  // 0 none, 1 to NQ, 2 to Q, 3 no change
  int down = 0, up = 0, same = 0;
  for (int i : order) {
    const v1::AnnualFiling& f = filings[static_cast<std::size_t>(i)];
    const Role role = filing_roles[static_cast<std::size_t>(i)];
    if (role == Role::kInvalid) continue;
    const bool rd = RdIntensityPasses(f), tertiary = TertiaryPasses(f), staff = RdStaffPasses(f);
    if (role == Role::kQualified && down < flips_each_way) {
      kind[static_cast<std::size_t>(i)] = 1;
      ++down;
    } else if (role == Role::kNotQualified && up < flips_each_way && tertiary && (rd != staff)) {
      kind[static_cast<std::size_t>(i)] = 2;
      ++up;
    }
  }
  // Balance the flips when too few filings fail on one fixable criterion (small scales).
  for (int i : order) {
    if (down <= up) break;
    if (kind[static_cast<std::size_t>(i)] == 1) {
      kind[static_cast<std::size_t>(i)] = 0;
      --down;
    }
  }
  for (int i : order) {
    if (down + up + same >= amendments) break;
    if (kind[static_cast<std::size_t>(i)] == 0 &&
        filing_roles[static_cast<std::size_t>(i)] != Role::kInvalid) {
      kind[static_cast<std::size_t>(i)] = 3;
      ++same;
    }
  }

  // Counts over the latest valid filing of each filer.
  const auto count_latest = [&summary](const v1::AnnualFiling& f) {
    const bool ok = QualifiesUnderDefaultRules(f);
    if (ok) summary.qualified_final++;
    for (const v1::HiTechProject& project : f.projects()) {
      summary.projects++;
      if (project.stage() == v1::PROJECT_STAGE_COMMERCIALIZED) summary.commercialized_projects++;
      if (project.torch_nominated()) {
        summary.nominated_projects++;
        if (ok) summary.listed_projects++;
      }
    }
  };
  for (std::size_t i = 0; i < filings.size(); ++i) {
    const v1::AnnualFiling& f = filings[i];
    summary.filings++;
    if (filing_roles[i] == Role::kInvalid) {
      summary.invalid_filings++;
      continue;
    }
    const bool before = QualifiesUnderDefaultRules(f);
    if (before) summary.qualified_revision1++;
    if (kind[i] == 0) {
      count_latest(f);
      continue;
    }
    v1::AnnualFiling amended = f;
    amended.set_revision(2);
    const int64_t revenue = amended.gross_revenue_fen();
    const int total = amended.total_employees();
    if (kind[i] == 1) {
      if (random_.Chance(0.5)) {
        amended.set_rd_expenditure_fen(FloorShare(revenue, random_.Between(120, 299)));
      } else {
        amended.set_rd_employees(static_cast<int>(FloorShare(total, random_.Between(300, 999))));
      }
    } else if (kind[i] == 2) {
      if (!RdIntensityPasses(amended)) {
        amended.set_rd_expenditure_fen(CeilShare(revenue, random_.Between(300, 650)));
      } else {
        amended.set_rd_employees(static_cast<int>(CeilShare(total, random_.Between(1000, 1800))));
      }
    } else {
      const int64_t delta = FloorShare(revenue, random_.Between(50, 300));
      amended.set_gross_revenue_fen(random_.Chance(0.5) ? revenue + delta : revenue - delta);
      if (QualifiesUnderDefaultRules(amended) != before ||
          amended.rd_expenditure_fen() > amended.gross_revenue_fen()) {
        // The revenue correction would cross a threshold: correct a project's stage instead.
        amended.set_gross_revenue_fen(revenue);
        if (amended.projects_size() == 0) {
          *amended.add_projects() =
              NewProject(static_cast<Field>(random_.Between(1, 8)), 1, before ? 0.30 : 0.08);
        } else {
          amended.mutable_projects(0)->set_stage(v1::PROJECT_STAGE_COMMERCIALIZED);
        }
      }
    }
    const bool after = QualifiesUnderDefaultRules(amended);
    summary.amendments++;
    if (after && !before) summary.amendments_to_qualified++;
    if (!after && before) summary.amendments_to_not_qualified++;
    count_latest(amended);
    out.amendments.push_back(std::move(amended));
  }
  summary.expected_qualified_bp = RoundedBp(summary.qualified_final, summary.enterprises);
  for (v1::AnnualFiling& f : filings) out.filings.push_back(std::move(f));
  return summary;
}

void AppendSummaryFields(std::string& json, const ParkSummary& s, const char* indent) {
  const auto field = [&](const char* key, int value, bool last = false) {
    absl::StrAppend(&json, indent, "\"", key, "\": ", value, last ? "\n" : ",\n");
  };
  field("enterprises", s.enterprises);
  field("foreign_invested", s.foreign_invested);
  field("filings", s.filings);
  field("non_filers", s.enterprises - s.filings);
  field("invalid_filings", s.invalid_filings);
  field("amendments", s.amendments);
  field("amendments_to_qualified", s.amendments_to_qualified);
  field("amendments_to_not_qualified", s.amendments_to_not_qualified);
  field("qualified_revision1", s.qualified_revision1);
  field("qualified_final", s.qualified_final);
  field("target_qualified_bp", s.target_qualified_bp);
  field("expected_qualified_bp", s.expected_qualified_bp);
  field("projects", s.projects);
  field("commercialized_projects", s.commercialized_projects);
  field("nominated_projects", s.nominated_projects);
  field("listed_projects", s.listed_projects, /*last=*/true);
}

}  // namespace

const std::vector<ParkSpec>& DefaultParks() {
  static const auto* parks = [] {
    auto* specs = new std::vector<ParkSpec>();
    for (const ParkTraits& traits : Traits()) specs->push_back(traits.spec);
    return specs;
  }();
  return *parks;
}

bool QualifiesUnderDefaultRules(const v1::AnnualFiling& filing) {
  return RdIntensityPasses(filing) && TertiaryPasses(filing) && RdStaffPasses(filing);
}

absl::StatusOr<SampleYear> Generate(const Options& options) {
  if (options.fiscal_year < 1992 || options.fiscal_year > 9999) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--year must be between 1992 (the youngest generated park was founded then) and 9999; "
        "it is ",
        options.fiscal_year));
  }
  if (!(options.scale > 0.0 && options.scale <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--scale must be more than 0 and at most 100; it is ", options.scale));
  }
  SampleYear sample;
  absl::flat_hash_set<std::string> usccs;
  absl::flat_hash_set<std::string> names;
  int index = 0;
  for (const ParkTraits& traits : Traits()) {
    ParkGenerator generator(traits, options, index++, usccs, names);
    sample.parks.push_back(generator.Run(sample));
  }
  return sample;
}

std::string SummaryJson(const Options& options, const SampleYear& sample) {
  std::string json = "{\n";
  absl::StrAppend(&json, "  \"fiscal_year\": ", options.fiscal_year, ",\n");
  absl::StrAppend(&json, "  \"seed\": ", options.seed, ",\n");
  absl::StrAppend(&json, "  \"scale\": ", absl::StrFormat("%.6g", options.scale), ",\n");
  absl::StrAppend(&json,
                  "  \"policy\": \"stip-default v1: R&D >= 3.00% of revenue, tertiary >= 30.00% "
                  "and R&D staff >= 10.00% of employees\",\n");
  json += "  \"parks\": [\n";
  ParkSummary total;
  for (std::size_t i = 0; i < sample.parks.size(); ++i) {
    const ParkSummary& s = sample.parks[i];
    absl::StrAppend(&json, "    {\n      \"park_id\": \"", s.park_id, "\",\n");
    AppendSummaryFields(json, s, "      ");
    json += i + 1 < sample.parks.size() ? "    },\n" : "    }\n";
    total.enterprises += s.enterprises;
    total.foreign_invested += s.foreign_invested;
    total.filings += s.filings;
    total.invalid_filings += s.invalid_filings;
    total.amendments += s.amendments;
    total.amendments_to_qualified += s.amendments_to_qualified;
    total.amendments_to_not_qualified += s.amendments_to_not_qualified;
    total.qualified_revision1 += s.qualified_revision1;
    total.qualified_final += s.qualified_final;
    total.projects += s.projects;
    total.commercialized_projects += s.commercialized_projects;
    total.nominated_projects += s.nominated_projects;
    total.listed_projects += s.listed_projects;
  }
  total.expected_qualified_bp = RoundedBp(total.qualified_final, total.enterprises);
  total.target_qualified_bp = 0;
  json += "  ],\n  \"total\": {\n";
  AppendSummaryFields(json, total, "    ");
  json += "  }\n}\n";
  return json;
}

absl::Status WriteSampleYear(const Options& options, const SampleYear& sample,
                             const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the folder ", dir.string(), ": ", error.message()));
  }
  const auto write = [&](const std::string& name, const auto& produce) -> absl::Status {
    const std::filesystem::path path = dir / name;
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    if (!file) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path.string()));
    absl::Status status = produce(file);
    if (!status.ok()) return status;
    file.flush();
    if (!file) return absl::DataLossError(absl::StrCat("writing ", path.string(), " failed"));
    return absl::OkStatus();
  };
  const auto lines = [](const auto& messages) {
    return [&messages](std::ofstream& file) -> absl::Status {
      std::string json;
      for (const auto& message : messages) {
        json.clear();
        const auto status = google::protobuf::util::MessageToJsonString(message, &json);
        if (!status.ok()) {
          return absl::InternalError(absl::StrCat("JSON mapping failed: ", status.ToString()));
        }
        file << json << '\n';
      }
      return absl::OkStatus();
    };
  };
  absl::Status status = write("enterprises.ndjson", lines(sample.enterprises));
  if (status.ok()) status = write("filings.ndjson", lines(sample.filings));
  if (status.ok()) status = write("amendments.ndjson", lines(sample.amendments));
  if (status.ok()) {
    status = write("summary.json", [&](std::ofstream& file) {
      file << SummaryJson(options, sample);
      return absl::OkStatus();
    });
  }
  return status;
}

}  // namespace stip::sample_year
