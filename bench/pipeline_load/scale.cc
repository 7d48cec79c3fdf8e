#include "bench/pipeline_load/scale.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/pipeline_load/decision_watch.h"
#include "bench/pipeline_load/kafka_producer.h"
#include "bench/pipeline_load/population.h"
#include "bench/pipeline_load/report.h"
#include "bench/raw_copy.h"
#include "services/common/event.h"
#include "stip/v1/filing.pb.h"
#include <librdkafka/rdkafka.h>

namespace stip::bench::load {

int Scale(const CommonOptions& common, const ScaleOptions& o) {
  if (o.filings < 1) Die("--filings must be at least 1");
  if (o.rate < 0) Die("--rate must not be negative (0: as fast as the producer goes)");
  if (!(o.interval_s > 0)) Die("--interval-s must be positive");
  if (!(o.timeout_s > 0)) Die("--timeout-s must be positive");
  std::atomic<int64_t> acked{0}, delivery_errors{0};
  Producer producer(o.kafka, o.linger_ms, [&](int64_t, rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++acked;
    } else if (delivery_errors++ == 0) {
      std::fprintf(stderr, "scale: delivery failed: %s\n", rd_kafka_err2str(err));
    }
  });
  if (PartitionCount(producer.get(), o.inbound_topic) == 0) {
    Die(absl::StrCat("--inbound-topic ", o.inbound_topic,
                     ": no such topic; start stip-intake with --inbound-topic ", o.inbound_topic,
                     " first"));
  }
  const auto prepared = Prepare(common, o.filings);
  const Population& population = prepared.first;
  const EnrollResult& enroll = prepared.second;
  DecisionWatch watch(common.registry, &population);
  watch.Start();

  struct Sample {
    double t_s;
    int64_t produced, decided;
    double decided_per_s;
  };
  std::vector<Sample> series;
  const int64_t start_ns = NowNs();
  std::atomic<int64_t> produce_end_ns{0};
  std::fprintf(stderr, "scale: producing %lld filings to %s%s\n", static_cast<long long>(o.filings),
               o.inbound_topic.c_str(),
               o.rate > 0 ? absl::StrFormat(" at %.0f/s", o.rate).c_str() : "");
  std::thread produce_thread([&] {
    const double period_ns = o.rate > 0 ? 1e9 / o.rate : 0;
    for (int64_t k = 0; k < o.filings; ++k) {
      if (period_ns > 0) {
        std::this_thread::sleep_until(
            FromNs(start_ns + static_cast<int64_t>(static_cast<double>(k) * period_ns)));
      }
      const stip::v1::AnnualFiling filing = population.Filing(k);
      stip::CloudEventAttributes attributes;
      attributes.id = absl::StrCat("pipeline-load-", common.run_id, "-", k);
      attributes.type = "stip.v1.AnnualFiling";
      attributes.source = "/bench/pipeline-load";
      attributes.time = absl::Now();
      producer.Produce(stip::MakeCloudEvent(o.inbound_topic, filing.uscc(),
                                            filing.SerializeAsString(), attributes),
                       k);
    }
    producer.Flush();
    produce_end_ns = NowNs();
  });

  const int64_t interval_ns = static_cast<int64_t>(o.interval_s * 1e9);
  const int64_t give_up_ns = start_ns + static_cast<int64_t>(o.timeout_s * 1e9);
  int64_t next_sample = start_ns + interval_ns;
  int64_t last_decided = 0;
  int64_t last_sample_ns = start_ns;
  bool timed_out = false;
  while (true) {
    const int64_t decided = watch.decided();
    const int64_t now = NowNs();
    if (decided >= o.filings) break;
    if (now >= give_up_ns) {
      timed_out = true;
      break;
    }
    if (now >= next_sample) {
      const Sample sample{static_cast<double>(now - start_ns) / 1e9, acked.load(), decided,
                          static_cast<double>(decided - last_decided) /
                              (static_cast<double>(now - last_sample_ns) / 1e9)};
      series.push_back(sample);
      std::fprintf(stderr, "scale: %7.1f s  produced %lld  decided %lld  (%.0f decisions/s)\n",
                   sample.t_s, static_cast<long long>(sample.produced),
                   static_cast<long long>(sample.decided), sample.decided_per_s);
      last_decided = decided;
      last_sample_ns = now;
      next_sample += interval_ns;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The last decision's arrival, exactly: the latest arrival time recorded.
  int64_t last_decision_ns = 0;
  for (int64_t k = 0; k < o.filings; ++k) {
    last_decision_ns = std::max(last_decision_ns, watch.ArrivalNs(k));
  }
  const int64_t end_ns = NowNs();
  const Sample final_sample{static_cast<double>(end_ns - start_ns) / 1e9, acked.load(),
                            watch.decided(),
                            static_cast<double>(watch.decided() - last_decided) /
                                (static_cast<double>(end_ns - last_sample_ns) / 1e9)};
  series.push_back(final_sample);
  produce_thread.join();
  watch.Stop();

  const double produce_s = static_cast<double>(produce_end_ns.load() - start_ns) / 1e9;
  const double decide_s =
      last_decision_ns > 0 ? static_cast<double>(last_decision_ns - start_ns) / 1e9 : 0;
  const int64_t decided = watch.decided();
  const double decisions_per_s = decide_s > 0 ? static_cast<double>(decided) / decide_s : 0;
  std::vector<std::string> samples;
  for (const Sample& s : series) {
    samples.push_back(absl::StrFormat(
        "{\"t_s\":%s,\"produced\":%d,\"decided\":%d,\"decided_per_s_in_interval\":%.1f}",
        Num(s.t_s), s.produced, s.decided, s.decided_per_s));
  }
  WriteJson(common.json,
            absl::StrFormat(
                "{\"tool\":\"pipeline-load\",\"mode\":\"scale\",\"run_id\":%s,\"kafka\":%s,"
                "\"inbound_topic\":%s,\"registry\":%s,\"filings\":%d,\"target_rate_per_s\":%s,"
                "\"fiscal_years\":[%d,%d],\"enroll\":%s,\"produced\":%d,\"delivery_errors\":%d,"
                "\"produce_s\":%s,\"produce_per_s\":%.1f,\"decided\":%d,\"missing\":%d,"
                "\"timed_out\":%s,\"decide_s\":%s,\"decisions_per_s\":%.1f,\"watch\":%s,"
                "\"interval_s\":%s,\"series\":[%s]}",
                Quote(common.run_id), Quote(o.kafka), Quote(o.inbound_topic),
                Quote(common.registry), o.filings, Num(o.rate), population.first_year(),
                population.first_year() + population.years() - 1, Json(enroll), acked.load(),
                delivery_errors.load(), Num(produce_s),
                produce_s > 0 ? static_cast<double>(acked.load()) / produce_s : 0.0, decided,
                o.filings - decided, timed_out ? "true" : "false", Num(decide_s), decisions_per_s,
                Json(watch), Num(o.interval_s), absl::StrJoin(samples, ",")));
  std::printf("pipeline-load scale (run %s): enrolled %lld enterprises in %.2f s (%.0f/s)\n",
              common.run_id.c_str(), static_cast<long long>(enroll.enterprises), enroll.seconds,
              enroll.per_s);
  std::printf(
      "produced %lld filings in %.2f s (%.0f/s); %lld decided in %.2f s from the first "
      "produce (%.0f decisions/s); %lld qualified, %lld outcome mismatches\n",
      static_cast<long long>(acked.load()), produce_s,
      produce_s > 0 ? static_cast<double>(acked.load()) / produce_s : 0.0,
      static_cast<long long>(decided), decide_s, decisions_per_s,
      static_cast<long long>(watch.qualified()),
      static_cast<long long>(watch.outcome_mismatches()));
  if (timed_out) {
    std::fprintf(stderr, "pipeline-load: scale: %lld of %lld decisions missing after %.0f s\n",
                 static_cast<long long>(o.filings - decided), static_cast<long long>(o.filings),
                 o.timeout_s);
    return 2;
  }
  return 0;
}

}  // namespace stip::bench::load
