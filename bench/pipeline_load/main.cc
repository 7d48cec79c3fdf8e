// pipeline-load: drives the running services (stip-intake, stip-assessment, stip-registry on
// Kafka and PostgreSQL, started by the caller) for two stages of bench/run, and measures the
// Kafka hop they are built on as a baseline.
//
//   pipeline-load latency --registry HOST:PORT --intake HOST:PORT --run-id ID
//                         [--rates 100,500,1000] [--seconds 10] [--drain-timeout-s 30]
//     Enrolls the enterprises, opens RegistryService.WatchDecisions from "now", then for each
//     rate in turn sends SubmitFiling on a fixed schedule (open loop: filing i at start +
//     i / rate, async, so a slow answer never delays the schedule) and matches every decision
//     on the stream to its filing. Latencies count from each filing's SCHEDULED send time (no
//     coordinated omission): submit = answer - scheduled, end to end = decision arrival -
//     scheduled.
//
//   pipeline-load kafka-hop --kafka HOST:PORT --topic T [--rates ...] [--seconds 10]
//     The baseline: one produce -> consume hop on librdkafka with the settings of the event
//     log's publisher (idempotent, acks=all), messages the size of a filing event with its
//     CloudEvents headers, on the same schedule; latency = arrival at a read_committed
//     consumer in this process - scheduled send time.
//
//   pipeline-load scale --registry HOST:PORT --kafka HOST:PORT --inbound-topic T
//                       --run-id ID --filings N [--rate R] [--interval-s 5]
//     Enrolls ceil(N / years) enterprises, produces N AnnualFilings to intake's inbound topic
//     and counts the decisions on WatchDecisions until all N arrived, sampling the rate every
//     interval.
//
// Filings are deterministic in (run id, index): enterprise e = index mod E files for fiscal
// year first_year + index div E, revision 1, figures from a seeded PRNG so that about half
// qualify under the default policy. USCCs carry a tag of the run id and the enterprise index,
// so that decisions are matched to filings without a table, and decisions of other runs on
// the same registry are told apart and ignored.
//
// Output: one JSON object to --json FILE, a short summary on stdout, progress on stderr.
// Errors end the process with exit 1 and a message; a scale run that times out exits 2.
//
// The pieces: population.h (the deterministic filings), enroll.h (the enterprises enrolled
// first), decision_watch.h (the decision stream), latency.h, kafka_hop.h and scale.h (the
// subcommands), kafka_producer.h and grpc_channel.h (the clients), report.h (figures, JSON).
#include <string>

#include "CLI/CLI.hpp"
#include "bench/pipeline_load/enroll.h"
#include "bench/pipeline_load/kafka_hop.h"
#include "bench/pipeline_load/latency.h"
#include "bench/pipeline_load/scale.h"

namespace stip::bench::load {
namespace {

void AddCommon(CLI::App* app, CommonOptions& o) {
  app->add_option("--registry", o.registry, "RegistryService HOST:PORT (stip-registry's gRPC)")
      ->required();
  app->add_option("--run-id", o.run_id,
                  "Makes this run's USCCs unique (derived from it and the enterprise index), "
                  "so repeated runs on one database do not collide")
      ->required();
  app->add_option("--enterprises", o.enterprises,
                  "Enterprises to enroll (default: just enough for the filings)");
  app->add_option("--first-year", o.first_year, "First fiscal year filed")->capture_default_str();
  app->add_option("--years", o.years, "Fiscal years filed per enterprise")->capture_default_str();
  app->add_option("--enroll-concurrency", o.enroll_concurrency, "EnrollEnterprise calls in flight")
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the results to FILE as one JSON object");
}

int Main(int argc, char** argv) {
  CLI::App app{
      "pipeline-load: drives the running stip-intake, stip-assessment and stip-registry (on "
      "Kafka and PostgreSQL) and measures them, with a raw Kafka hop as the baseline.\n"
      "Filings are deterministic in --run-id: enterprise e files for fiscal years --first-year "
      ".. --first-year + --years - 1, revision 1, about half qualifying under the default "
      "policy. Decisions are followed on RegistryService.WatchDecisions from 'now' and matched "
      "to their filings by (USCC, fiscal year). Results: one JSON object to --json FILE, a "
      "summary on stdout, progress on stderr. Exit 0: every filing decided (every message "
      "received); 2: some missing; 1: an error."};
  app.require_subcommand(1);

  CommonOptions latency_common;
  LatencyOptions latency;
  CLI::App* latency_app = app.add_subcommand(
      "latency",
      "Open-loop SubmitFiling at each of --rates for --seconds; submit and end-to-end (decision "
      "on WatchDecisions) latency from each filing's scheduled send time");
  AddCommon(latency_app, latency_common);
  latency_app->add_option("--intake", latency.intake, "IntakeService HOST:PORT")->required();
  latency_app->add_option("--rates", latency.rates, "Target filings/s, one run each, in turn")
      ->capture_default_str();
  latency_app->add_option("--seconds", latency.seconds, "Seconds of sending per rate")
      ->capture_default_str();
  latency_app
      ->add_option("--drain-timeout-s", latency.drain_timeout_s,
                   "After a rate's last send, wait this long for outstanding decisions")
      ->capture_default_str();
  latency_app
      ->add_option("--warmup", latency.warmup,
                   "Unmeasured filings at 50/s first (connections, caches, producers warm)")
      ->capture_default_str();
  latency_app->add_option("--channels", latency.channels, "gRPC connections to intake")
      ->capture_default_str();

  HopOptions hop;
  CLI::App* hop_app = app.add_subcommand(
      "kafka-hop",
      "The baseline: produce (idempotent, acks=all, the event log publisher's settings) -> "
      "read_committed consume in this process, on a fixed schedule at each of --rates; latency "
      "from the scheduled send time");
  hop_app->add_option("--kafka", hop.kafka, "Kafka bootstrap servers HOST:PORT")->required();
  hop_app->add_option("--topic", hop.topic, "Topic (created when missing)")->required();
  hop_app->add_option("--rates", hop.rates, "Target messages/s, one run each, in turn")
      ->capture_default_str();
  hop_app->add_option("--seconds", hop.seconds, "Seconds of sending per rate")
      ->capture_default_str();
  hop_app->add_option("--partitions", hop.partitions, "Partitions of a topic created here")
      ->capture_default_str();
  hop_app
      ->add_option("--linger-ms", hop.linger_ms,
                   "Producer linger.ms (1: the event log publisher's, as intake publishes)")
      ->capture_default_str();
  hop_app
      ->add_option("--message-bytes", hop.message_bytes,
                   "Message value size (0: the size of the AcceptedFiling intake publishes)")
      ->capture_default_str();
  hop_app
      ->add_option("--drain-timeout-s", hop.drain_timeout_s,
                   "After a rate's last send, wait this long for outstanding messages")
      ->capture_default_str();
  hop_app->add_option("--json", hop.json, "Write the results to FILE as one JSON object");

  CommonOptions scale_common;
  ScaleOptions scale;
  CLI::App* scale_app = app.add_subcommand(
      "scale",
      "Enroll ceil(N / years) enterprises, produce N AnnualFilings to intake's inbound topic "
      "and count decisions on WatchDecisions until all N arrived, sampling every interval");
  AddCommon(scale_app, scale_common);
  scale_app->add_option("--kafka", scale.kafka, "Kafka bootstrap servers HOST:PORT")->required();
  scale_app
      ->add_option("--inbound-topic", scale.inbound_topic,
                   "Intake's inbound topic (stip-intake --inbound-topic); must exist")
      ->required();
  scale_app->add_option("--filings", scale.filings, "Filings to produce")->required();
  scale_app->add_option("--rate", scale.rate, "Filings/s (0: as fast as the producer goes)")
      ->capture_default_str();
  scale_app->add_option("--interval-s", scale.interval_s, "Seconds between samples")
      ->capture_default_str();
  scale_app->add_option("--timeout-s", scale.timeout_s, "Give up (exit 2) after")
      ->capture_default_str();
  scale_app
      ->add_option("--linger-ms", scale.linger_ms,
                   "Producer linger.ms (an upstream bulk producer batches)")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (*latency_app) return Latency(latency_common, latency);
  if (*hop_app) return KafkaHop(hop);
  return Scale(scale_common, scale);
}

}  // namespace
}  // namespace stip::bench::load

int main(int argc, char** argv) { return stip::bench::load::Main(argc, argv); }
