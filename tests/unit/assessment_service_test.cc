// AssessmentService over a real in-process gRPC server (StartGrpcServer on port 0): the dry
// run, paged policies and one policy, errors with field violations; and the policy reload
// (PolicyStore::Reload, and SIGHUP through the ShutdownCoordinator as stip-assessment wires
// it): a refused directory keeps the policies in force.
#include "services/assessment/assessment_service.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "services/assessment/evaluator.h"
#include "services/assessment/policy_store.h"
#include "services/common/grpc_server.h"
#include "services/common/metrics.h"
#include "services/common/shutdown.h"
#include "services/intake/filing_intake.h"
#include "services/intake/filing_validator.h"
#include "stip/v1/assessment_service.grpc.pb.h"
#include "tests/support/test_environment.h"

namespace stip::assessment {
namespace {

// The SIGHUP test sends the signal to this process: it must reach only the coordinator's
// thread, so the signals are blocked before main, hence before gRPC or any test starts a
// thread (threads inherit the mask), as stip-assessment's main does first thing.
[[maybe_unused]] const bool kSignalsBlocked = [] {
  BlockShutdownSignals();
  return true;
}();

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::string PolicyYaml(const std::string& id, int version, int from, const std::string& to,
                       int rd_basis_points, const std::string& extra = "") {
  return absl::StrCat("id: ", id, "\nversion: ", version, "\nfiscal_years:\n  from: ", from,
                      "\n  to: ", to,
                      "\ncriteria:\n"
                      "  - metric: RD_INTENSITY\n    comparison: \">=\"\n"
                      "    threshold_basis_points: ",
                      rd_basis_points,
                      "\n"
                      "  - metric: TERTIARY_SHARE\n    comparison: \">=\"\n"
                      "    threshold_basis_points: 3000\n"
                      "  - metric: RD_STAFF_SHARE\n    comparison: \">=\"\n"
                      "    threshold_basis_points: 1000\n",
                      extra);
}

constexpr char kWesternOverride[] =
    "region_overrides:\n"
    "  - region: WESTERN\n"
    "    criteria:\n"
    "      - metric: RD_INTENSITY\n"
    "        comparison: \">=\"\n"
    "        threshold_basis_points: 250\n";

// Three policies in fiscal-year order: stip-default 1 and 2, then hnte 1 (with a western
// override).
std::vector<PolicySource> ThreePolicies() {
  return {{"a.yaml", PolicyYaml("stip-default", 1, 1991, "2009", 300)},
          {"b.yaml", PolicyYaml("stip-default", 2, 2010, "2019", 300)},
          {"c.yaml", PolicyYaml("hnte", 1, 2020, "open", 300, kWesternOverride)}};
}

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

v1::AnnualFiling Draft(int64_t rd_fen) {
  v1::AnnualFiling filing;
  filing.set_uscc("91650100MA77ABCD1P");
  filing.set_park_id("urumqi-hnz");
  filing.set_fiscal_year(2024);
  filing.set_gross_revenue_fen(1'000'000);
  filing.set_rd_expenditure_fen(rd_fen);
  filing.set_total_employees(100);
  filing.set_tertiary_educated_employees(30);
  filing.set_rd_employees(10);
  return filing;
}

double CounterValue(const std::string& family, const std::string& label, const std::string& value) {
  for (const prometheus::MetricFamily& metrics : MetricsRegistry().Collect()) {
    if (metrics.name != family) continue;
    for (const prometheus::ClientMetric& metric : metrics.metric) {
      for (const auto& pair : metric.label) {
        if (pair.name == label && pair.value == value) return metric.counter.value;
      }
    }
  }
  return 0;
}

class AssessmentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<PolicySet> set = PolicySet::Parse(ThreePolicies());
    ASSERT_TRUE(set.ok()) << set.status();
    store_ = std::make_unique<PolicyStore>(*std::move(set));
    Serve(store_.get());
  }

  void Serve(const PolicyStore* store) {
    service_ = std::make_unique<AssessmentServiceImpl>(store);
    GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto server = StartGrpcServer(options, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::AssessmentService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", server_->port()), options.limits));
  }

  std::unique_ptr<grpc::ClientContext> Context() { return ContextWithTimeout(absl::Seconds(10)); }

  absl::StatusOr<v1::EvaluateFilingResponse> Evaluate(const v1::EvaluateFilingRequest& request) {
    v1::EvaluateFilingResponse response;
    const grpc::Status status = stub_->EvaluateFiling(Context().get(), request, &response);
    if (!status.ok()) return GrpcToStatus(status);
    return response;
  }

  absl::StatusOr<v1::ListPoliciesResponse> List(int32_t page_size, const std::string& token) {
    v1::ListPoliciesRequest request;
    request.set_page_size(page_size);
    request.set_page_token(token);
    v1::ListPoliciesResponse response;
    const grpc::Status status = stub_->ListPolicies(Context().get(), request, &response);
    if (!status.ok()) return GrpcToStatus(status);
    return response;
  }

  absl::StatusOr<v1::Policy> Get(const std::string& id, int32_t version) {
    v1::GetPolicyRequest request;
    request.set_policy_id(id);
    request.set_version(version);
    v1::GetPolicyResponse response;
    const grpc::Status status = stub_->GetPolicy(Context().get(), request, &response);
    if (!status.ok()) return GrpcToStatus(status);
    return response.policy();
  }

  std::unique_ptr<PolicyStore> store_;
  std::unique_ptr<AssessmentServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::AssessmentService::Stub> stub_;
};

std::vector<std::string> Fields(const absl::Status& status) {
  std::vector<std::string> fields;
  for (const FieldViolation& violation : FieldViolations(status)) fields.push_back(violation.field);
  return fields;
}

TEST_F(AssessmentServiceTest, EvaluateFilingAnswersTheDecisionADraftWouldGet) {
  v1::EvaluateFilingRequest request;
  *request.mutable_filing() = Draft(26'000);  // 2.60%: enough in the west only
  request.set_region(v1::ECONOMIC_REGION_WESTERN);
  const absl::Time before = absl::Now();
  absl::StatusOr<v1::EvaluateFilingResponse> western = Evaluate(request);
  ASSERT_TRUE(western.ok()) << western.status();
  const v1::QualificationDecision& decision = western->decision();
  EXPECT_EQ(decision.outcome(), v1::DECISION_OUTCOME_QUALIFIED);
  EXPECT_EQ(decision.filing_id(), "91650100MA77ABCD1P/2024/1");  // revision 0 is taken as 1
  EXPECT_EQ(decision.filing_revision(), 1);
  EXPECT_EQ(decision.policy_id(), "hnte");
  EXPECT_EQ(decision.policy_version(), 1);
  EXPECT_EQ(decision.decision_id(), DecisionId("91650100MA77ABCD1P/2024/1", "hnte", 1));
  EXPECT_EQ(decision.supersedes_decision_id(), "");
  EXPECT_GE(decision.decide_time().seconds(), absl::ToUnixSeconds(before));
  EXPECT_LE(decision.decide_time().seconds(), absl::ToUnixSeconds(absl::Now()));
  ASSERT_EQ(decision.criteria_size(), 3);
  EXPECT_EQ(decision.criteria(0).threshold_basis_points(), 250);

  request.set_region(v1::ECONOMIC_REGION_EASTERN);
  request.mutable_filing()->set_revision(2);
  absl::StatusOr<v1::EvaluateFilingResponse> eastern = Evaluate(request);
  ASSERT_TRUE(eastern.ok()) << eastern.status();
  EXPECT_EQ(eastern->decision().outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);
  EXPECT_EQ(eastern->decision().filing_id(), "91650100MA77ABCD1P/2024/2");
  EXPECT_EQ(eastern->decision().criteria(0).shortfall().rd_expenditure_fen(), 4'000);
  EXPECT_THAT(eastern->decision().explanation(), HasSubstr("R&D intensity"));
}

TEST_F(AssessmentServiceTest, EvaluateFilingRefusesWhatItCannotEvaluateFieldByField) {
  v1::EvaluateFilingRequest empty;
  absl::Status status = Evaluate(empty).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Fields(status), ElementsAre("filing"));

  v1::EvaluateFilingRequest bad;
  *bad.mutable_filing() = Draft(-1);
  bad.mutable_filing()->clear_uscc();
  bad.mutable_filing()->set_total_employees(-3);
  bad.mutable_filing()->set_revision(-1);
  bad.set_region(static_cast<v1::EconomicRegion>(17));
  status = Evaluate(bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Fields(status),
              ElementsAre("filing.uscc", "filing.revision", "filing.rd_expenditure_fen",
                          "filing.total_employees", "region"));

  // A valid year before the first policy (1991).
  v1::EvaluateFilingRequest old;
  *old.mutable_filing() = Draft(30'000);
  old.mutable_filing()->set_fiscal_year(1989);
  status = Evaluate(old).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("fiscal year 1989"));
  EXPECT_THAT(Fields(status), ElementsAre("filing.fiscal_year"));
}

// The dry run judges a draft by intake's own field rules (one validator): what intake
// would refuse is never QUALIFIED here. It used to say QUALIFIED for 1,000 tertiary-educated
// employees of 10 and to take any USCC or amount.
TEST_F(AssessmentServiceTest, EvaluateFilingRefusesWhatIntakeRefusesWithTheSameViolations) {
  v1::EvaluateFilingRequest request;
  *request.mutable_filing() = Draft(40'000);
  request.mutable_filing()->set_total_employees(10);
  request.mutable_filing()->set_tertiary_educated_employees(1000);
  request.mutable_filing()->set_rd_employees(5);
  request.mutable_filing()->set_uscc("91650100MA77ABCD1X");  // wrong check character
  request.mutable_filing()->set_gross_revenue_fen(intake::kMaxMoneyFen + 1);
  request.mutable_filing()->set_revision(1);  // intake requires it; a draft may leave it 0
  const absl::Status status = Evaluate(request).status();
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  // Intake's verdict on the same filing, and its refusal as the gRPC edge sends it.
  static const intake::InMemoryParkDirectory kParks({{"urumqi-hnz", intake::ParkFacts{}}});
  intake::ValidationResult intake_says = intake::ValidateFiling(
      request.filing(), kParks, intake::ValidationOptions::ForTime(absl::Now()));
  std::vector<std::string> reasons;
  for (const v1::FilingViolation& violation : intake_says.violations) {
    reasons.push_back(violation.reason());
  }
  EXPECT_THAT(reasons,
              ElementsAre("USCC_CHECK_CHARACTER", "MONEY_TOO_LARGE", "EMPLOYEES_EXCEED_TOTAL"));
  const absl::Status intake_status =
      intake::InvalidFiling(std::move(intake_says.violations)).ToStatus();
  EXPECT_EQ(std::string(status.message()), std::string(intake_status.message()));
  EXPECT_EQ(FieldViolations(status), FieldViolations(intake_status));
  EXPECT_THAT(Fields(status), ElementsAre("filing.uscc", "filing.gross_revenue_fen",
                                          "filing.tertiary_educated_employees"));

  // A request_id-free draft that intake accepts is evaluated.
  *request.mutable_filing() = Draft(40'000);
  EXPECT_TRUE(Evaluate(request).ok());
}

TEST_F(AssessmentServiceTest, ListPoliciesPagesInFiscalYearOrder) {
  absl::StatusOr<v1::ListPoliciesResponse> first = List(2, "");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_THAT(first->policies(), SizeIs(2));
  EXPECT_EQ(first->policies(0).version(), 1);
  EXPECT_EQ(first->policies(1).version(), 2);
  ASSERT_FALSE(first->next_page_token().empty());
  absl::StatusOr<v1::ListPoliciesResponse> second = List(2, first->next_page_token());
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_THAT(second->policies(), SizeIs(1));
  EXPECT_EQ(second->policies(0).policy_id(), "hnte");
  EXPECT_EQ(second->policies(0).first_fiscal_year(), 2020);
  EXPECT_FALSE(second->policies(0).has_last_fiscal_year());
  EXPECT_EQ(second->next_page_token(), "");

  absl::StatusOr<v1::ListPoliciesResponse> all = List(0, "");  // the default page size
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(all->policies(), SizeIs(3));
  EXPECT_EQ(all->next_page_token(), "");
  absl::StatusOr<v1::ListPoliciesResponse> capped = List(1'000'000, "");
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_THAT(capped->policies(), SizeIs(3));

  const absl::Status bad_token = List(2, "not-a-token").status();
  EXPECT_EQ(bad_token.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Fields(bad_token), ElementsAre("page_token"));
  const absl::Status negative = List(-1, "").status();
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Fields(negative), ElementsAre("page_size"));
}

TEST_F(AssessmentServiceTest, GetPolicyByIdAndVersion) {
  absl::StatusOr<v1::Policy> newest = Get("stip-default", 0);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->version(), 2);
  EXPECT_EQ(newest->first_fiscal_year(), 2010);
  absl::StatusOr<v1::Policy> first = Get("stip-default", 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->last_fiscal_year(), 2009);
  EXPECT_EQ(first->source_file(), "a.yaml");

  EXPECT_EQ(Get("stip-default", 7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Get("nope", 0).status().code(), absl::StatusCode::kNotFound);
  const absl::Status invalid = Get("", -1).status();
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Fields(invalid), ElementsAre("policy_id", "version"));
}

class PolicyReloadTest : public AssessmentServiceTest {
 protected:
  void SetUp() override {
    WriteFile(dir_.path() / "a.yaml", PolicyYaml("stip-default", 1, 1991, "2019", 300));
    auto store = PolicyStore::Open(dir_.path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    Serve(store_.get());
  }

  testing::TempDir dir_;
};

TEST_F(PolicyReloadTest, AGoodDirectoryReplacesThePoliciesAndARefusedOneKeepsThem) {
  const std::shared_ptr<const PolicySet> first = store_->Current();
  ASSERT_THAT(first->List(), SizeIs(1));

  WriteFile(dir_.path() / "b.yaml", PolicyYaml("hnte", 1, 2020, "open", 500));
  ASSERT_TRUE(store_->Reload().ok());
  const std::shared_ptr<const PolicySet> second = store_->Current();
  EXPECT_THAT(second->List(), SizeIs(2));
  EXPECT_THAT(first->List(), SizeIs(1));  // a snapshot taken before stays as it was
  absl::StatusOr<v1::ListPoliciesResponse> listed = List(0, "");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(listed->policies(), SizeIs(2));

  // A typo on line 5 of a new file: nothing changes, and the error says where.
  WriteFile(dir_.path() / "c.yaml",
            "id: broken\nversion: 1\nfiscal_years: {from: 1980, to: 1985}\ncriteria:\n"
            "  - metric: RD_INTENSITTY\n    comparison: \">=\"\n    threshold_basis_points: 1\n");
  const double refused_before = CounterValue("stip_policy_reloads_total", "result", "refused");
  const absl::Status refused = store_->Reload();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("c.yaml:5:"));
  EXPECT_EQ(store_->Current(), second);
  EXPECT_EQ(CounterValue("stip_policy_reloads_total", "result", "refused"), refused_before + 1);
  listed = List(0, "");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(listed->policies(), SizeIs(2));

  // A directory that is gone is refused the same way.
  std::filesystem::remove_all(dir_.path());
  EXPECT_EQ(store_->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Current(), second);
}

TEST_F(PolicyReloadTest, SighupReloadsAndARefusedDirectoryKeepsThePoliciesInForce) {
  ShutdownCoordinator coordinator(absl::Seconds(5));
  coordinator.OnReload(PolicyReloader(store_.get()));
  ASSERT_TRUE(coordinator.Start().ok());
  auto wait_for = [](const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (!done() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
    return done();
  };

  WriteFile(dir_.path() / "b.yaml", PolicyYaml("hnte", 1, 2020, "open", 500));
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for([&] { return store_->Current()->List().size() == 2; }));
  const std::shared_ptr<const PolicySet> good = store_->Current();

  // Overlapping years: refused, and the two policies stay in force.
  WriteFile(dir_.path() / "c.yaml", PolicyYaml("overlap", 1, 2015, "2025", 300));
  const double refused_before = CounterValue("stip_policy_reloads_total", "result", "refused");
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for([&] {
    return CounterValue("stip_policy_reloads_total", "result", "refused") > refused_before;
  }));
  EXPECT_EQ(store_->Current(), good);
  v1::EvaluateFilingRequest request;
  *request.mutable_filing() = Draft(40'000);
  absl::StatusOr<v1::EvaluateFilingResponse> decided = Evaluate(request);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->decision().policy_id(), "hnte");
  EXPECT_EQ(decided->decision().outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);  // 4% < 5%
  EXPECT_FALSE(coordinator.shutdown_requested());

  coordinator.RequestShutdown("test over");
  EXPECT_TRUE(coordinator.WaitForShutdown().ok());
}

}  // namespace
}  // namespace stip::assessment
