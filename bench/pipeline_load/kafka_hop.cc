#include "bench/pipeline_load/kafka_hop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/pipeline_load/kafka_producer.h"
#include "bench/pipeline_load/population.h"
#include "bench/pipeline_load/report.h"
#include "bench/raw_copy.h"
#include "services/common/event.h"
#include "stip/v1/filing.pb.h"
#include <librdkafka/rdkafka.h>

namespace stip::bench::load {
namespace {

// The size of the AcceptedFiling intake publishes for `filing` (filing id, request id, content
// hash, region and receive time around it): what one hop of the pipeline carries.
size_t AcceptedFilingSize(const stip::v1::AnnualFiling& filing) {
  stip::v1::AcceptedFiling accepted;
  accepted.set_filing_id(absl::StrCat(filing.uscc(), "/", filing.fiscal_year(), "/1"));
  *accepted.mutable_filing() = filing;
  accepted.set_region(stip::v1::ECONOMIC_REGION_WESTERN);
  accepted.mutable_receive_time()->set_seconds(1764288000);
  accepted.mutable_receive_time()->set_nanos(123456789);
  accepted.set_request_id("pipeline-load-0123456789abcdef-1234567");
  accepted.set_content_sha256(std::string(64, 'f'));
  return accepted.ByteSizeLong();
}

struct HopResult {
  double target_per_s = 0;
  int64_t sent = 0, acked = 0, delivery_errors = 0, received = 0, missing = 0;
  double achieved_per_s = 0;
  Percentiles ack, end_to_end;
};

std::string Json(const HopResult& r) {
  return absl::StrFormat(
      "{\"target_per_s\":%s,\"sent\":%d,\"acked\":%d,\"delivery_errors\":%d,\"received\":%d,"
      "\"missing\":%d,\"achieved_per_s\":%.1f,%s,%s}",
      Num(r.target_per_s), r.sent, r.acked, r.delivery_errors, r.received, r.missing,
      r.achieved_per_s, PercentilesJson(r.ack, "ack_"), PercentilesJson(r.end_to_end, "e2e_"));
}

}  // namespace

int KafkaHop(const HopOptions& o) {
  const std::vector<double> rates = ParseRates(o.rates);
  if (!(o.seconds > 0)) Die("--seconds must be positive");
  if (o.partitions < 1) Die("--partitions must be at least 1");
  if (o.linger_ms < 0) Die("--linger-ms must not be negative");
  if (o.message_bytes < 0) Die("--message-bytes must not be negative");
  int64_t total = 0;
  std::vector<int64_t> counts;
  for (const double rate : rates) {
    counts.push_back(std::max<int64_t>(1, std::llround(rate * o.seconds)));
    total += counts.back();
  }
  // The size of the events the pipeline carries: a filing like latency's, with the
  // CloudEvents headers intake puts on it.
  // Keys: distinct USCCs, spread over the partitions as enterprises are.
  const Population keys("kafka-hop", 2015, 10, int64_t{1} << 40, {"zhongguancun"});
  const size_t value_size =
      std::max<size_t>(o.message_bytes > 0 ? static_cast<size_t>(o.message_bytes)
                                           : AcceptedFilingSize(keys.Filing(0)),
                       16);

  std::vector<int64_t> scheduled_ns(static_cast<size_t>(total), 0);
  std::vector<std::atomic<int64_t>> acked_ns(static_cast<size_t>(total));
  std::vector<std::atomic<int64_t>> received_ns(static_cast<size_t>(total));
  std::atomic<int64_t> delivery_errors{0};
  Producer producer(o.kafka, o.linger_ms, [&](int64_t index, rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (delivery_errors++ == 0) {
        std::fprintf(stderr, "kafka-hop: delivery failed: %s\n", rd_kafka_err2str(err));
      }
      return;
    }
    acked_ns[static_cast<size_t>(index)].store(NowNs());
  });
  int partitions = PartitionCount(producer.get(), o.topic);
  if (partitions == 0) {
    std::fprintf(stderr, "kafka-hop: creating %s with %d partitions\n", o.topic.c_str(),
                 o.partitions);
    CreateTopicsOrDie(o.kafka, {o.topic}, o.partitions);
    for (int i = 0; i < 50 && partitions == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      partitions = PartitionCount(producer.get(), o.topic);
    }
    if (partitions == 0) Die(absl::StrCat("--topic ", o.topic, ": not visible after creation"));
  }

  // The consumer: the services' consumer settings, assigned every partition at its current
  // end (queried, so that nothing produced after this point is skipped).
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", o.kafka);
  SetOrDie(conf, "client.id", "pipeline-load-consumer");
  SetOrDie(conf, "group.id", absl::StrCat("pipeline-load-hop-", getpid(), "-", time(nullptr)));
  SetOrDie(conf, "enable.auto.commit", "false");
  SetOrDie(conf, "isolation.level", "read_committed");
  SetOrDie(conf, "enable.partition.eof", "false");
  SetOrDie(conf, "queued.max.messages.kbytes", "16384");
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  if (consumer == nullptr) Die(absl::StrCat("--kafka: ", error));
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    if (rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(consumer, o.topic.c_str(), p, &low, &high, 10000);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Die(absl::StrCat("--kafka: the end of ", o.topic, "/", p, ": ", rd_kafka_err2str(err)));
    }
    rd_kafka_topic_partition_list_add(assignment, o.topic.c_str(), p)->offset = high;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer, assignment);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("--kafka: assign: ", rd_kafka_err2str(err)));
  }
  rd_kafka_topic_partition_list_destroy(assignment);
  // The run's messages start with this tag, so others on the topic are ignored.
  const uint64_t tag = Fnv1a(absl::StrCat(getpid(), "-", NowNs()));
  std::atomic<bool> stop_consumer{false};
  std::thread consumer_thread([&] {
    while (!stop_consumer) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
      if (message == nullptr) continue;
      const int64_t now = NowNs();
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && message->len >= 16) {
        uint64_t message_tag = 0;
        int64_t index = 0;
        std::memcpy(&message_tag, message->payload, 8);
        std::memcpy(&index, static_cast<const char*>(message->payload) + 8, 8);
        if (message_tag == tag && index >= 0 && index < total) {
          int64_t expected = 0;
          received_ns[static_cast<size_t>(index)].compare_exchange_strong(expected, now);
        }
      }
      rd_kafka_message_destroy(message);
    }
  });
  // Let the consumer fetch from the assigned offsets before the clock starts.
  std::this_thread::sleep_for(std::chrono::seconds(1));

  std::vector<HopResult> results;
  int64_t next = 0;
  for (size_t r = 0; r < rates.size(); ++r) {
    const double rate = rates[r];
    const int64_t first = next, count = counts[r];
    next += count;
    std::fprintf(stderr, "kafka-hop: %.0f messages/s for %.1f s (%lld messages)\n", rate, o.seconds,
                 static_cast<long long>(count));
    // Events made before the clock starts: the pacer only stamps and produces.
    std::vector<stip::OutgoingEvent> events;
    events.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      stip::CloudEventAttributes attributes;
      attributes.id = absl::StrCat("pipeline-load-hop-", first + i);
      attributes.type = "stip.v1.AcceptedFiling";
      attributes.source = "/stip/intake";
      attributes.time = absl::Now();
      std::string value(value_size, 'x');
      std::memcpy(value.data(), &tag, 8);
      const int64_t index = first + i;
      std::memcpy(value.data() + 8, &index, 8);
      events.push_back(
          stip::MakeCloudEvent(o.topic, keys.Uscc(index), std::move(value), attributes));
    }
    const int64_t start_ns = NowNs() + 20'000'000;
    const double period_ns = 1e9 / rate;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t at = start_ns + static_cast<int64_t>(static_cast<double>(i) * period_ns);
      scheduled_ns[static_cast<size_t>(first + i)] = at;
      std::this_thread::sleep_until(FromNs(at));
      producer.Produce(events[static_cast<size_t>(i)], first + i);
    }
    const int64_t drain_until = scheduled_ns[static_cast<size_t>(first + count - 1)] +
                                static_cast<int64_t>(o.drain_timeout_s * 1e9);
    auto all_received = [&] {
      for (int64_t i = first; i < first + count; ++i) {
        if (received_ns[static_cast<size_t>(i)].load() == 0) return false;
      }
      return true;
    };
    while (!all_received() && NowNs() < drain_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    producer.Flush();
    HopResult result;
    result.target_per_s = rate;
    result.sent = count;
    std::vector<double> ack_ms, e2e_ms;
    int64_t last = 0;
    for (int64_t i = first; i < first + count; ++i) {
      const auto s = static_cast<size_t>(i);
      if (const int64_t acked = acked_ns[s].load(); acked != 0) {
        ++result.acked;
        ack_ms.push_back(static_cast<double>(acked - scheduled_ns[s]) / 1e6);
      }
      if (const int64_t received = received_ns[s].load(); received != 0) {
        ++result.received;
        e2e_ms.push_back(static_cast<double>(received - scheduled_ns[s]) / 1e6);
        last = std::max(last, received);
      } else {
        ++result.missing;
      }
    }
    result.delivery_errors = delivery_errors.exchange(0);
    if (result.received > 0) {
      result.achieved_per_s =
          static_cast<double>(result.received) / (static_cast<double>(last - start_ns) / 1e9);
    }
    result.ack = PercentilesOf(ack_ms);
    result.end_to_end = PercentilesOf(e2e_ms);
    std::fprintf(stderr,
                 "kafka-hop: %.0f/s: sent %lld, received %lld, missing %lld, achieved %.1f/s; "
                 "p50 %.2f p99 %.2f max %.2f ms\n",
                 rate, static_cast<long long>(result.sent), static_cast<long long>(result.received),
                 static_cast<long long>(result.missing), result.achieved_per_s,
                 result.end_to_end.p50_ms, result.end_to_end.p99_ms, result.end_to_end.max_ms);
    results.push_back(result);
  }
  stop_consumer = true;
  consumer_thread.join();
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);

  std::vector<std::string> rows;
  for (const HopResult& r : results) rows.push_back(Json(r));
  WriteJson(o.json,
            absl::StrFormat("{\"tool\":\"pipeline-load\",\"mode\":\"kafka-hop\",\"kafka\":%s,"
                            "\"topic\":%s,\"partitions\":%d,\"seconds_per_rate\":%s,"
                            "\"message_bytes\":%d,\"producer\":{\"acks\":\"all\","
                            "\"enable.idempotence\":true,\"linger.ms\":%d},"
                            "\"consumer\":{\"isolation.level\":\"read_committed\"},"
                            "\"librdkafka\":%s,\"rates\":[%s]}",
                            Quote(o.kafka), Quote(o.topic), partitions, Num(o.seconds), value_size,
                            o.linger_ms, Quote(rd_kafka_version_str()), absl::StrJoin(rows, ",")));
  std::printf("pipeline-load kafka-hop: %s (%d partitions), %zu-byte messages, linger.ms=%d\n",
              o.topic.c_str(), partitions, value_size, o.linger_ms);
  std::printf("%10s %7s %8s %7s %10s %30s\n", "target/s", "sent", "received", "missing",
              "achieved/s", "p50/p99/p999/max ms");
  bool complete = true;
  for (const HopResult& r : results) {
    complete = complete && r.missing == 0;
    std::printf("%10.0f %7lld %8lld %7lld %10.1f %30s\n", r.target_per_s,
                static_cast<long long>(r.sent), static_cast<long long>(r.received),
                static_cast<long long>(r.missing), r.achieved_per_s,
                absl::StrFormat("%.2f/%.2f/%.2f/%.2f", r.end_to_end.p50_ms, r.end_to_end.p99_ms,
                                r.end_to_end.p999_ms, r.end_to_end.max_ms)
                    .c_str());
  }
  return complete ? 0 : 2;
}

}  // namespace stip::bench::load
