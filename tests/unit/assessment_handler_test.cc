// The decision stream's handler (services/assessment/decision_handler.h) over a fake
// BatchOutput: decisions as CloudEvents, supersedes links, dead letters for what cannot be
// assessed, rejections for years no policy covers, repeats, byte-identical output when a
// batch is handed over again, and the history catch-up when a batch starts above what this
// process has seen (read from a real SQLite event log).
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "services/assessment/assessment_service.h"
#include "services/assessment/decision_handler.h"
#include "services/assessment/evaluator.h"
#include "services/assessment/filing_history.h"
#include "services/assessment/policy.h"
#include "services/assessment/policy_store.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/metrics.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/filing.pb.h"
#include "tests/support/test_environment.h"

namespace stip::assessment {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kDefaultPolicy[] = R"(id: stip-default
version: 1
fiscal_years:
  from: 1991
  to: open
criteria:
  - metric: RD_INTENSITY
    comparison: ">="
    threshold_basis_points: 300
  - metric: TERTIARY_SHARE
    comparison: ">="
    threshold_basis_points: 3000
  - metric: RD_STAFF_SHARE
    comparison: ">="
    threshold_basis_points: 1000
)";

constexpr char kDecisions[] = "test.decisions";
constexpr char kRejected[] = "test.rejected";

std::string Uscc(int i) { return absl::StrCat("91650100MA", 10000000 + i); }

// A filing that qualifies when `qualifies`, else one that misses the R&D criterion by a fen.
v1::AcceptedFiling Filing(const std::string& uscc, int32_t year, int32_t revision,
                          bool qualifies = true) {
  v1::AcceptedFiling accepted;
  accepted.set_filing_id(absl::StrCat(uscc, "/", year, "/", revision));
  accepted.set_region(v1::ECONOMIC_REGION_WESTERN);
  accepted.set_content_sha256(absl::StrCat("sha-", uscc, year, revision, qualifies));
  v1::AnnualFiling* filing = accepted.mutable_filing();
  filing->set_uscc(uscc);
  filing->set_park_id("urumqi-hnz");
  filing->set_fiscal_year(year);
  filing->set_revision(revision);
  filing->set_gross_revenue_fen(1'000'000);
  filing->set_rd_expenditure_fen(qualifies ? 30'000 : 29'999);
  filing->set_total_employees(100);
  filing->set_tertiary_educated_employees(40);
  filing->set_rd_employees(15);
  return accepted;
}

// An event as the processor hands it over, in CloudEvents binary mode.
ConsumedEvent Event(std::string key, std::string value, int32_t partition, int64_t offset,
                    std::string type = std::string(kAcceptedFilingType)) {
  CloudEventAttributes attributes;
  attributes.id = absl::StrCat("filing-event-", offset);
  attributes.type = std::move(type);
  attributes.source = "/stip/intake";
  attributes.time = absl::FromUnixSeconds(1'700'000'000);
  OutgoingEvent out =
      MakeCloudEvent(std::string(kFilingsTopic), std::move(key), std::move(value), attributes);
  ConsumedEvent event;
  event.topic = out.topic;
  event.partition = partition;
  event.offset = offset;
  event.key = std::move(out.key);
  event.value = std::move(out.value);
  event.headers = std::move(out.headers);
  event.timestamp = absl::FromUnixMillis(1'700'000'000'000 + offset * 1000);
  return event;
}

ConsumedEvent Event(const v1::AcceptedFiling& filing, int32_t partition, int64_t offset) {
  return Event(filing.filing().uscc(), filing.SerializeAsString(), partition, offset);
}

class FakeOutput final : public BatchOutput {
 public:
  void Emit(OutgoingEvent event) override { emitted.push_back(std::move(event)); }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    dead_letters.emplace_back(event.Position(), std::string(reason));
  }

  // The decisions emitted, parsed, in order.
  std::vector<v1::QualificationDecision> Decisions() const {
    std::vector<v1::QualificationDecision> decisions;
    for (const OutgoingEvent& event : emitted) {
      if (event.topic != kDecisions) continue;
      v1::QualificationDecision decision;
      EXPECT_TRUE(decision.ParseFromString(event.value));
      decisions.push_back(std::move(decision));
    }
    return decisions;
  }

  std::vector<OutgoingEvent> emitted;
  std::vector<std::pair<std::string, std::string>> dead_letters;  // position, reason
};

std::string Header(const OutgoingEvent& event, const std::string& name) {
  for (const auto& [header, value] : event.headers) {
    if (header == name) return value;
  }
  return "";
}

bool SameEvents(const std::vector<OutgoingEvent>& a, const std::vector<OutgoingEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].topic != b[i].topic || a[i].key != b[i].key || a[i].value != b[i].value ||
        a[i].headers != b[i].headers) {
      return false;
    }
  }
  return true;
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

PolicySet DefaultPolicies() {
  absl::StatusOr<PolicySet> set = PolicySet::Parse({{"stip-default.yaml", kDefaultPolicy}});
  EXPECT_TRUE(set.ok()) << set.status();
  return *std::move(set);
}

// One assessment instance: its policies, history and handler, over an event log.
struct Instance {
  explicit Instance(EventLog* log)
      : policies(DefaultPolicies()),
        history(log, {.topic = std::string(kFilingsTopic)}, HistoryClassifier(&policies)),
        handler(&policies, &history, {.decisions = kDecisions, .rejected = kRejected}) {}

  FakeOutput Handle(const std::vector<ConsumedEvent>& batch) {
    FakeOutput output;
    const absl::Status status = handler.HandleBatch(batch, output);
    EXPECT_TRUE(status.ok()) << status;
    return output;
  }

  PolicyStore policies;
  FilingHistory history;
  DecisionHandler handler;
};

class DecisionHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto log = OpenEventLog(absl::StrCat("sqlite://", (dir_.path() / "events.db").string()));
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    const TopicSpec spec{std::string(kFilingsTopic), 1};
    ASSERT_TRUE(log_->EnsureTopics({&spec, 1}).ok());
    instance_ = std::make_unique<Instance>(log_.get());
  }

  std::string DecisionIdOf(const v1::AcceptedFiling& filing) {
    return DecisionId(filing.filing_id(), "stip-default", 1);
  }

  testing::TempDir dir_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Instance> instance_;
};

TEST_F(DecisionHandlerTest, DecidesAFilingAsACloudEventKeyedByUscc) {
  const v1::AcceptedFiling filing = Filing(Uscc(1), 2024, 1);
  const ConsumedEvent event = Event(filing, 0, 0);
  const FakeOutput output = instance_->Handle({event});

  ASSERT_THAT(output.emitted, SizeIs(1));
  EXPECT_THAT(output.dead_letters, IsEmpty());
  const OutgoingEvent& out = output.emitted[0];
  EXPECT_EQ(out.topic, kDecisions);
  EXPECT_EQ(out.key, Uscc(1));
  EXPECT_EQ(Header(out, "ce_id"), DecisionIdOf(filing));
  EXPECT_EQ(Header(out, "ce_type"), "stip.v1.QualificationDecision");
  EXPECT_EQ(Header(out, "ce_source"), "/stip/assessment");
  EXPECT_EQ(Header(out, "ce_specversion"), "1.0");
  EXPECT_EQ(Header(out, "content-type"), "application/protobuf");
  EXPECT_EQ(Header(out, "ce_time"), "2023-11-14T22:13:20+00:00");

  const v1::QualificationDecision decision = output.Decisions().at(0);
  EXPECT_EQ(decision.decision_id(), DecisionIdOf(filing));
  EXPECT_EQ(decision.filing_id(), filing.filing_id());
  EXPECT_EQ(decision.outcome(), v1::DECISION_OUTCOME_QUALIFIED);
  EXPECT_EQ(decision.filing_revision(), 1);
  EXPECT_EQ(decision.policy_id(), "stip-default");
  EXPECT_EQ(decision.supersedes_decision_id(), "");
  // The filing event's timestamp, not the clock.
  EXPECT_EQ(decision.decide_time().seconds(), 1'700'000'000);
  EXPECT_EQ(decision.decide_time().nanos(), 0);
}

TEST_F(DecisionHandlerTest, NotQualifiedIsADecisionToo) {
  const FakeOutput output = instance_->Handle({Event(Filing(Uscc(1), 2024, 1, false), 0, 0)});
  ASSERT_THAT(output.Decisions(), SizeIs(1));
  EXPECT_EQ(output.Decisions()[0].outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);
  EXPECT_THAT(output.Decisions()[0].explanation(), HasSubstr("short by 1 fen"));
}

TEST_F(DecisionHandlerTest, LaterRevisionsNameTheDecisionOfThePreviousRevisionFiled) {
  const auto a1 = Filing(Uscc(1), 2024, 1), a2 = Filing(Uscc(1), 2024, 2, false),
             a3 = Filing(Uscc(1), 2024, 3);
  const auto b1 = Filing(Uscc(2), 2024, 1);
  const auto c1 = Filing(Uscc(3), 2024, 1), c3 = Filing(Uscc(3), 2024, 3);  // 2 never filed
  const auto d2 = Filing(Uscc(4), 2024, 2);  // its revision 1 is not in the log
  const auto e2023 = Filing(Uscc(5), 2023, 1), e2024 = Filing(Uscc(5), 2024, 2);
  // Revisions one batch after another, and within one batch.
  const FakeOutput first = instance_->Handle({Event(a1, 0, 0), Event(b1, 0, 1), Event(c1, 0, 2)});
  const FakeOutput second =
      instance_->Handle({Event(a2, 0, 3), Event(c3, 0, 4), Event(a3, 0, 5), Event(d2, 0, 6),
                         Event(e2023, 0, 7), Event(e2024, 0, 8)});

  ASSERT_THAT(first.Decisions(), SizeIs(3));
  for (const auto& decision : first.Decisions()) EXPECT_EQ(decision.supersedes_decision_id(), "");
  const std::vector<v1::QualificationDecision> decisions = second.Decisions();
  ASSERT_THAT(decisions, SizeIs(6));
  EXPECT_EQ(decisions[0].decision_id(), DecisionIdOf(a2));
  EXPECT_EQ(decisions[0].supersedes_decision_id(), DecisionIdOf(a1));
  EXPECT_EQ(decisions[1].decision_id(), DecisionIdOf(c3));
  EXPECT_EQ(decisions[1].supersedes_decision_id(), DecisionIdOf(c1));
  EXPECT_EQ(decisions[2].decision_id(), DecisionIdOf(a3));
  EXPECT_EQ(decisions[2].supersedes_decision_id(), DecisionIdOf(a2));
  EXPECT_EQ(decisions[3].supersedes_decision_id(), "");  // nothing earlier filed
  EXPECT_EQ(decisions[4].supersedes_decision_id(), "");
  EXPECT_EQ(decisions[5].supersedes_decision_id(), "");  // another fiscal year
}

TEST_F(DecisionHandlerTest, ARevisionFiledOutOfOrderSupersedesOnlyLowerRevisions) {
  const auto r1 = Filing(Uscc(1), 2024, 1), r2 = Filing(Uscc(1), 2024, 2),
             r3 = Filing(Uscc(1), 2024, 3);
  const FakeOutput output = instance_->Handle({Event(r2, 0, 0), Event(r1, 0, 1), Event(r3, 0, 2)});
  const std::vector<v1::QualificationDecision> decisions = output.Decisions();
  ASSERT_THAT(decisions, SizeIs(3));
  EXPECT_EQ(decisions[0].supersedes_decision_id(), "");
  EXPECT_EQ(decisions[1].supersedes_decision_id(), "");                // revision 2 is not below it
  EXPECT_EQ(decisions[2].supersedes_decision_id(), DecisionIdOf(r2));  // the greatest below 3
}

TEST_F(DecisionHandlerTest, WhatCannotBeAssessedIsDeadLetteredWithTheReasonAndTheRestDecided) {
  v1::AcceptedFiling no_id = Filing(Uscc(3), 2024, 1);
  no_id.clear_filing_id();
  v1::AcceptedFiling negative = Filing(Uscc(4), 2024, 1);
  negative.mutable_filing()->set_gross_revenue_fen(-5);
  v1::AcceptedFiling bad_region = Filing(Uscc(5), 2024, 1);
  bad_region.set_region(static_cast<v1::EconomicRegion>(42));
  ConsumedEvent json = Event(Filing(Uscc(6), 2024, 1), 0, 6);
  for (auto& [name, value] : json.headers) {
    if (name == "content-type") value = "application/json";
  }
  ConsumedEvent no_type = Event(Filing(Uscc(7), 2024, 1), 0, 7);
  std::erase_if(no_type.headers, [](const auto& header) { return header.first == "ce_type"; });

  const FakeOutput output = instance_->Handle({
      Event(Uscc(1), "\xff\xff not a protobuf", 0, 0),
      Event(Filing(Uscc(2), 2024, 1), 0, 1),
      Event(Uscc(2), Filing(Uscc(2), 2024, 2).SerializeAsString(), 0, 2, "stip.v1.Other"),
      Event(no_id, 0, 3),
      Event(negative, 0, 4),
      Event(bad_region, 0, 5),
      json,
      no_type,
  });

  ASSERT_THAT(output.Decisions(), SizeIs(1));
  EXPECT_EQ(output.Decisions()[0].uscc(), Uscc(2));
  ASSERT_THAT(output.dead_letters, SizeIs(7));
  const std::string topic(kFilingsTopic);
  EXPECT_EQ(output.dead_letters[0].first, topic + "/0@0");
  EXPECT_THAT(output.dead_letters[0].second, HasSubstr("is not a stip.v1.AcceptedFiling"));
  EXPECT_THAT(output.dead_letters[1].second, HasSubstr("ce_type is \"stip.v1.Other\""));
  EXPECT_THAT(output.dead_letters[2].second, HasSubstr("no filing_id"));
  EXPECT_THAT(output.dead_letters[3].second, HasSubstr("negative gross_revenue_fen"));
  EXPECT_THAT(output.dead_letters[4].second, HasSubstr("unknown economic region 42"));
  EXPECT_THAT(output.dead_letters[5].second, HasSubstr("content-type is \"application/json\""));
  EXPECT_THAT(output.dead_letters[6].second, HasSubstr("no ce_type"));
}

TEST_F(DecisionHandlerTest, AFilingNoPolicyCoversIsRejectedWithPolicyNotFound) {
  const auto old = Filing(Uscc(1), 1985, 1);
  const ConsumedEvent event = Event(old, 0, 0);
  const FakeOutput output = instance_->Handle({event, Event(Filing(Uscc(1), 1985, 2), 0, 1)});

  EXPECT_THAT(output.Decisions(), IsEmpty());
  EXPECT_THAT(output.dead_letters, IsEmpty());
  ASSERT_THAT(output.emitted, SizeIs(2));
  const OutgoingEvent& out = output.emitted[0];
  EXPECT_EQ(out.topic, kRejected);
  EXPECT_EQ(out.key, Uscc(1));
  EXPECT_EQ(Header(out, "ce_type"), "stip.v1.RejectedFiling");
  EXPECT_EQ(Header(out, "ce_source"), "/stip/assessment");
  EXPECT_EQ(Header(out, "ce_id"), old.filing_id() + "/POLICY_NOT_FOUND");
  v1::RejectedFiling rejected;
  ASSERT_TRUE(rejected.ParseFromString(out.value));
  ASSERT_EQ(rejected.violations_size(), 1);
  EXPECT_EQ(rejected.violations(0).reason(), "POLICY_NOT_FOUND");
  EXPECT_EQ(rejected.violations(0).field(), "filing.fiscal_year");
  EXPECT_THAT(rejected.violations(0).message(), HasSubstr("fiscal year 1985"));
  EXPECT_FALSE(rejected.violations(0).message_zh().empty());
  EXPECT_EQ(rejected.filing().uscc(), Uscc(1));
  EXPECT_EQ(rejected.source(), std::string(kFilingsTopic) + "/0@0");
  EXPECT_EQ(rejected.original_payload(), event.value);
  EXPECT_EQ(rejected.original_content_type(), "application/protobuf");
  EXPECT_EQ(rejected.reject_time().seconds(), 1'700'000'000);
}

TEST_F(DecisionHandlerTest, ARevisionAfterOneThatGotNoDecisionSupersedesNothing) {
  v1::AcceptedFiling broken = Filing(Uscc(1), 2024, 1);
  broken.mutable_filing()->set_rd_employees(-1);
  const FakeOutput output =
      instance_->Handle({Event(broken, 0, 0), Event(Filing(Uscc(1), 2024, 2), 0, 1)});
  ASSERT_THAT(output.Decisions(), SizeIs(1));
  EXPECT_EQ(output.Decisions()[0].supersedes_decision_id(), "");
}

TEST_F(DecisionHandlerTest, ARepeatedRevisionGetsNoSecondDecision) {
  const auto r1 = Filing(Uscc(1), 2024, 1);
  v1::AcceptedFiling r1_other = r1;
  r1_other.mutable_filing()->set_total_employees(101);
  r1_other.set_content_sha256("other");
  const FakeOutput output =
      instance_->Handle({Event(r1, 0, 0), Event(r1, 0, 1), Event(r1_other, 0, 2),
                         Event(Filing(Uscc(1), 2024, 2), 0, 3)});
  const std::vector<v1::QualificationDecision> decisions = output.Decisions();
  ASSERT_THAT(decisions, SizeIs(2));
  EXPECT_EQ(decisions[0].decision_id(), DecisionIdOf(r1));
  EXPECT_EQ(decisions[1].supersedes_decision_id(), DecisionIdOf(r1));
}

// A mixed batch of `count` events from offset 0 over three partitions: revisions, repeats,
// years without a policy and garbage.
std::vector<ConsumedEvent> MixedBatch(int count) {
  std::vector<ConsumedEvent> batch;
  std::map<int32_t, int64_t> next;
  for (int i = 0; i < count; ++i) {
    const int enterprise = i % 37;
    const int32_t partition = PartitionForKey(Uscc(enterprise), 3);
    const int64_t offset = next[partition]++;
    if (i % 29 == 0) {
      batch.push_back(Event(Uscc(enterprise), "garbage", partition, offset));
    } else if (i % 31 == 0) {
      batch.push_back(Event(Filing(Uscc(enterprise), 1980, 1), partition, offset));
    } else {
      batch.push_back(Event(Filing(Uscc(enterprise), 2020 + (i / 37) % 2, 1 + i / 74, i % 3 != 0),
                            partition, offset));
    }
  }
  return batch;
}

TEST_F(DecisionHandlerTest, ABatchHandedOverAgainGivesByteIdenticalOutput) {
  const std::vector<ConsumedEvent> batch = MixedBatch(400);
  const double decided_before = CounterValue("stip_assessment_filings_total", "result", "decided");
  const FakeOutput once = instance_->Handle(batch);
  const double decided = CounterValue("stip_assessment_filings_total", "result", "decided");
  ASSERT_GT(once.Decisions().size(), 200u);
  size_t linked = 0;
  for (const auto& decision : once.Decisions()) {
    linked += !decision.supersedes_decision_id().empty();
  }
  EXPECT_GT(linked, 100u);

  // The processor aborted the transaction and hands the same batch over again: the history
  // now holds the batch's own filings, above each filing's offset, and must not count them.
  const FakeOutput again = instance_->Handle(batch);
  EXPECT_TRUE(SameEvents(once.emitted, again.emitted));
  EXPECT_EQ(once.dead_letters, again.dead_letters);
  // Counted once per event, not per attempt.
  EXPECT_EQ(CounterValue("stip_assessment_filings_total", "result", "decided"), decided);
  EXPECT_EQ(decided - decided_before, static_cast<double>(once.Decisions().size()));

  // After a crash another instance starts from the same committed offsets.
  Instance other(log_.get());
  const FakeOutput elsewhere = other.Handle(batch);
  EXPECT_TRUE(SameEvents(once.emitted, elsewhere.emitted));

  // A first half committed, then the second half handed over twice.
  Instance split(log_.get());
  const std::vector<ConsumedEvent> first(batch.begin(), batch.begin() + 200);
  const std::vector<ConsumedEvent> second(batch.begin() + 200, batch.end());
  FakeOutput halves = split.Handle(first);
  split.Handle(second);
  const FakeOutput second_again = split.Handle(second);
  halves.emitted.insert(halves.emitted.end(), second_again.emitted.begin(),
                        second_again.emitted.end());
  // Events are emitted in batch order, so the halves concatenate to the whole.
  EXPECT_TRUE(SameEvents(once.emitted, halves.emitted));
}

// The log holds what earlier instances decided: 60 filings, revision 1 of 20 enterprises,
// then their revisions 2 and 3. Returns the events as a consumer of the log sees them.
std::vector<ConsumedEvent> PublishSixtyFilings(EventLog& log) {
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 60; ++i) {
    const v1::AcceptedFiling filing = Filing(Uscc(i % 20), 2024, 1 + i / 20);
    events.push_back(MakeCloudEvent(std::string(kFilingsTopic), filing.filing().uscc(),
                                    filing.SerializeAsString(),
                                    {.id = filing.filing_id(),
                                     .type = std::string(kAcceptedFilingType),
                                     .source = "/stip/intake",
                                     .time = absl::Now()}));
  }
  auto publisher = log.NewPublisher();
  EXPECT_TRUE(publisher.ok()) << publisher.status();
  if (!publisher.ok()) return {};
  const absl::Status published = (*publisher)->Publish(events, absl::Seconds(10));
  EXPECT_TRUE(published.ok()) << published;

  std::vector<ConsumedEvent> all;
  auto consumer = log.NewConsumer({.group = "reader", .topics = {std::string(kFilingsTopic)}});
  EXPECT_TRUE(consumer.ok()) << consumer.status();
  if (!consumer.ok()) return {};
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (all.size() < events.size() && absl::Now() < give_up) {
    auto polled = (*consumer)->Poll(100, absl::Milliseconds(100));
    EXPECT_TRUE(polled.ok()) << polled.status();
    if (!polled.ok()) break;
    all.insert(all.end(), polled->begin(), polled->end());
  }
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(5)).ok());
  return all;
}

// Retries the batch, as the processor does after its back-off, until the history is read.
absl::Status HandleUntilRead(Instance& instance, const std::vector<ConsumedEvent>& batch,
                             FakeOutput& output) {
  absl::Status status = instance.handler.HandleBatch(batch, output);
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::IsUnavailable(status) && absl::Now() < give_up) {
    EXPECT_THAT(output.emitted, IsEmpty()) << "a failed batch published something";
    absl::SleepFor(absl::Milliseconds(20));
    output = FakeOutput();
    status = instance.handler.HandleBatch(batch, output);
  }
  return status;
}

TEST_F(DecisionHandlerTest, ABatchAboveTheHistoryWaitsForItToBeReadFromTheLog) {
  const std::vector<ConsumedEvent> all = PublishSixtyFilings(*log_);
  ASSERT_THAT(all, SizeIs(60));
  const FakeOutput whole = Instance(log_.get()).Handle(all);

  // A fresh instance whose first batch starts at offset 40: the filings below it, which it
  // never handled, decide the links of revision 3.
  const std::vector<ConsumedEvent> tail(all.begin() + 40, all.end());
  FakeOutput output;
  absl::Status status = instance_->handler.HandleBatch(tail, output);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("not read up to the batch"));
  EXPECT_THAT(output.emitted, IsEmpty());
  output = FakeOutput();
  status = HandleUntilRead(*instance_, tail, output);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(instance_->history.catch_ups(), 1);
  ASSERT_THAT(output.Decisions(), SizeIs(20));
  for (const auto& decision : output.Decisions()) {
    EXPECT_EQ(decision.filing_revision(), 3);
    EXPECT_EQ(decision.supersedes_decision_id(),
              DecisionId(FilingIdFor(decision.uscc(), 2024, 2), "stip-default", 1));
  }
  const std::vector<OutgoingEvent> whole_tail(whole.emitted.begin() + 40, whole.emitted.end());
  EXPECT_TRUE(SameEvents(whole_tail, output.emitted));
}

TEST_F(DecisionHandlerTest, APartitionThatComesBackIsReadOnlyFromWhereItsHistoryStopped) {
  const std::vector<ConsumedEvent> all = PublishSixtyFilings(*log_);
  ASSERT_THAT(all, SizeIs(60));
  const FakeOutput whole = Instance(log_.get()).Handle(all);

  // This instance decides offsets 0-19; another then has the partition for 20-39; it comes
  // back at 40. Only 20-39 are missing, and only they (and what follows) are read.
  const FakeOutput first = instance_->Handle({all.begin(), all.begin() + 20});
  ASSERT_THAT(first.Decisions(), SizeIs(20));
  FakeOutput output;
  const absl::Status status = HandleUntilRead(*instance_, {all.begin() + 40, all.end()}, output);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(instance_->history.catch_ups(), 1);
  EXPECT_LE(instance_->history.events_read(), 40);  // from offset 20, not from 0
  EXPECT_GE(instance_->history.events_read(), 20);
  const std::vector<OutgoingEvent> whole_tail(whole.emitted.begin() + 40, whole.emitted.end());
  EXPECT_TRUE(SameEvents(whole_tail, output.emitted));
  for (const auto& decision : output.Decisions()) {
    EXPECT_EQ(decision.supersedes_decision_id(),
              DecisionId(FilingIdFor(decision.uscc(), 2024, 2), "stip-default", 1));
  }
}

}  // namespace
}  // namespace stip::assessment
