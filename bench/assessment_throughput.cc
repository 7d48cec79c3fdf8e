// assessment-throughput: filings decided per second by the decision stream (the
// DecisionHandler of stip-assessment in the Kafka backend's ExactlyOnceProcessor) beside a
// minimal transactional consume-produce copy written on librdkafka's C API with the same
// commit interval, both over the same input topic in the same run. The copy is the floor of
// what any exactly-once Kafka step costs (consume, produce, send offsets, commit); the ratio
// says what decoding, evaluating, indexing the history and encoding a decision add, with our
// event-log layer. Prints a Markdown table.
//
//   assessment-throughput --kafka 127.0.0.1:19092 [--filings 200000] [--partitions 6]
//                         [--commit-interval 100ms] [--rounds 2]
//
// Each round runs the copy, then the stream, each in a consumer group of its own from the
// start of the input; the table gives the best round of each. Time runs from the first event
// handed over (the first HandleBatch, the first message polled) to the commit of the last,
// so that group joins and producer start-up are left out of both.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/raw_copy.h"
#include "services/assessment/decision_handler.h"
#include "services/assessment/filing_history.h"
#include "services/assessment/policy.h"
#include "services/assessment/policy_store.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/logging.h"
#include "stip/v1/filing.pb.h"
#include <librdkafka/rdkafka.h>

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kDefaultPolicy[] = R"(id: stip-default
version: 1
fiscal_years: {from: 1991, to: open}
criteria:
  - {metric: RD_INTENSITY, comparison: ">=", threshold_basis_points: 300}
  - {metric: TERTIARY_SHARE, comparison: ">=", threshold_basis_points: 3000}
  - {metric: RD_STAFF_SHARE, comparison: ">=", threshold_basis_points: 1000}
)";

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "assessment-throughput: " << what << "\n";
  std::exit(1);
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// `count` accepted filings: one enterprise in ten files a second revision.
void PublishFilings(stip::EventLog& log, const std::string& topic, int count) {
  auto publisher = log.NewPublisher();
  if (!publisher.ok()) Die(publisher.status().ToString());
  std::vector<stip::OutgoingEvent> batch;
  for (int i = 0; i < count; ++i) {
    const int enterprise = i < count * 10 / 11 ? i : (i - count * 10 / 11) * 10;
    const int32_t revision = i < count * 10 / 11 ? 1 : 2;
    stip::v1::AcceptedFiling accepted;
    const std::string uscc = absl::StrCat("91650100MA", 10000000 + enterprise);
    accepted.set_filing_id(absl::StrCat(uscc, "/2024/", revision));
    accepted.set_region(stip::v1::ECONOMIC_REGION_WESTERN);
    accepted.set_content_sha256(std::string(64, 'c'));
    stip::v1::AnnualFiling* filing = accepted.mutable_filing();
    filing->set_uscc(uscc);
    filing->set_park_id("urumqi-hnz");
    filing->set_fiscal_year(2024);
    filing->set_revision(revision);
    filing->set_gross_revenue_fen(123'456'789 + i);
    filing->set_rd_expenditure_fen(3'703'704 - i % 2);
    filing->set_total_employees(250);
    filing->set_tertiary_educated_employees(80);
    filing->set_rd_employees(30);
    filing->set_enterprise_name("Xinjiang Example Technology Co., Ltd.");
    stip::CloudEventAttributes attributes;
    attributes.id = accepted.filing_id();
    attributes.type = std::string(stip::assessment::kAcceptedFilingType);
    attributes.source = "/stip/intake";
    attributes.time = absl::Now();
    batch.push_back(stip::MakeCloudEvent(topic, uscc, accepted.SerializeAsString(), attributes));
    if (batch.size() == 5000 || i == count - 1) {
      if (absl::Status status = (*publisher)->Publish(batch, absl::Seconds(60)); !status.ok()) {
        Die(status.ToString());
      }
      batch.clear();
    }
  }
}

// Times the stream: the first HandleBatch starts the clock.
class TimedHandler final : public stip::BatchHandler {
 public:
  explicit TimedHandler(stip::BatchHandler* inner) : inner_(inner) {}
  absl::Status HandleBatch(absl::Span<const stip::ConsumedEvent> batch,
                           stip::BatchOutput& output) override {
    if (!started_) {
      start_ = Clock::now();
      started_ = true;
    }
    return inner_->HandleBatch(batch, output);
  }
  Clock::time_point start() const { return start_; }

 private:
  stip::BatchHandler* const inner_;
  std::atomic<bool> started_{false};
  Clock::time_point start_;
};

double StreamSeconds(stip::EventLog& log, const std::string& input, const std::string& output,
                     int count, absl::Duration commit_interval, int round) {
  stip::assessment::PolicyStore policies(
      *stip::assessment::PolicySet::Parse({{"stip-default.yaml", kDefaultPolicy}}));
  const std::string group = absl::StrCat("bench-assess-", getpid(), "-", round);
  stip::assessment::FilingHistory history(
      &log, {.topic = input, .reader_group_prefix = group + ".history"},
      stip::assessment::HistoryClassifier(&policies));
  stip::assessment::DecisionHandler handler(&policies, &history,
                                            {.decisions = output, .rejected = output});
  TimedHandler timed(&handler);
  stip::ProcessorOptions options;
  options.group = group;
  options.input_topics = {input};
  options.instance_id = "bench";
  options.commit_interval = commit_interval;
  auto processor = log.NewProcessor(options, &timed);
  if (!processor.ok()) Die(processor.status().ToString());
  absl::Status result;
  std::thread runner([&] { result = (*processor)->Run(); });
  while ((*processor)->Counters().events_consumed < count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const Clock::time_point end = Clock::now();
  (*processor)->Stop();
  runner.join();
  if (!result.ok()) Die(result.ToString());
  const stip::ProcessorCounters counters = (*processor)->Counters();
  if (counters.events_produced != count || counters.batches_aborted != 0) {
    Die(absl::StrCat("the stream produced ", counters.events_produced, " of ", count, " with ",
                     counters.batches_aborted, " batches aborted"));
  }
  return Seconds(timed.start(), end);
}

// The baseline (bench/raw_copy.h), in a consumer group and transactional id of its own.
double RawCopySeconds(const std::string& bootstrap, const std::string& input,
                      const std::string& output, int count, absl::Duration commit_interval,
                      int round) {
  return stip::bench::RawCopy(bootstrap, input, output,
                              absl::StrCat("bench-raw-", getpid(), "-", round), commit_interval,
                              count)
      .elapsed_s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Filings decided per second by stip-assessment's stream beside a raw "
      "librdkafka transactional copy"};
  std::string bootstrap = "127.0.0.1:19092";
  int filings = 200000;
  int partitions = 6;
  int rounds = 2;
  std::string commit_interval_text = "100ms";
  app.add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  app.add_option("--filings", filings, "Filings in the input topic")->capture_default_str();
  app.add_option("--partitions", partitions, "Partitions of the topics")->capture_default_str();
  app.add_option("--commit-interval", commit_interval_text, "Both pipelines' commit interval")
      ->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds of both; the best of each is reported")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  absl::Duration commit_interval;
  if (!absl::ParseDuration(commit_interval_text, &commit_interval)) {
    Die("--commit-interval: " + commit_interval_text);
  }
  stip::InitLogging("assessment-throughput", spdlog::level::warn, stip::LogFormat::kText);

  auto log = stip::OpenEventLog(absl::StrCat("kafka://", bootstrap));
  if (!log.ok()) Die(log.status().ToString());
  const std::string run = absl::StrCat(getpid());
  const std::string input = absl::StrCat("bench-assess-in-", run);
  const std::string decisions = absl::StrCat("bench-assess-decisions-", run);
  const std::string copies = absl::StrCat("bench-assess-copies-", run);
  std::vector<stip::TopicSpec> topics = {
      {input, partitions}, {decisions, partitions}, {copies, partitions}};
  for (const stip::TopicSpec& spec : stip::StandardTopics(partitions)) topics.push_back(spec);
  if (absl::Status status = (*log)->EnsureTopics(topics); !status.ok()) Die(status.ToString());
  std::cerr << "publishing " << filings << " filings...\n";
  PublishFilings(**log, input, filings);

  double best_raw = 1e9, best_stream = 1e9;
  for (int round = 0; round < rounds; ++round) {
    const double raw = RawCopySeconds(bootstrap, input, copies, filings, commit_interval, round);
    std::cerr << absl::StrFormat("round %d: raw copy %.3f s\n", round + 1, raw);
    const double stream = StreamSeconds(**log, input, decisions, filings, commit_interval, round);
    std::cerr << absl::StrFormat("round %d: stip-assessment %.3f s\n", round + 1, stream);
    best_raw = std::min(best_raw, raw);
    best_stream = std::min(best_stream, stream);
  }

  std::cout << absl::StrFormat(
      "%d filings (one in eleven a revision 2), %d partitions, commit interval %s, best of %d "
      "rounds\n\n"
      "| pipeline | seconds | filings/s | vs raw |\n|---|---:|---:|---:|\n",
      filings, partitions, absl::FormatDuration(commit_interval), rounds);
  std::cout << absl::StrFormat(
      "| librdkafka %s transactional copy, C API (baseline) | %.3f | %.0f | 1.00 |\n",
      rd_kafka_version_str(), best_raw, filings / best_raw);
  std::cout << absl::StrFormat(
      "| stip-assessment DecisionHandler in the Kafka ExactlyOnceProcessor | %.3f | %.0f | "
      "%.2f |\n",
      best_stream, filings / best_stream, best_raw / best_stream);
  return 0;
}
