package stip.peer;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Timestamp;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import stip.v1.Decision.QualificationDecision;
import stip.v1.Filing.AcceptedFiling;
import stip.v1.Filing.FilingViolation;
import stip.v1.Filing.RejectedFiling;

/**
 * The Kafka Streams peer of stip-assessment: reads AcceptedFiling events, decides each under
 * the default policy exactly as services/assessment/evaluator.cc does, and writes the
 * QualificationDecision keyed by USCC with the CloudEvents headers, exactly once
 * (processing.guarantee=exactly_once_v2). Stateless: no state store, no repartition.
 */
public final class AssessmentStreams {
  static final String USAGE =
      """
      Usage: AssessmentStreams [flags]
        --bootstrap HOST:PORT        Kafka bootstrap servers (127.0.0.1:19092)
        --input TOPIC                accepted filings (stip.filings.v1)
        --output TOPIC               decisions (stip.decisions.v1)
        --rejected TOPIC             filings no policy covers (stip.filings.rejected.v1)
        --deadletter TOPIC           undecodable filings (stip.deadletter.v1)
        --application-id ID          application.id: consumer group and transactional ids
                                     (stip-assessment-kafka-streams)
        --commit-interval-ms MS      commit.interval.ms: one transaction per thread per interval (100)
        --threads N                  num.stream.threads (1)
        --linger-ms MS               producer linger.ms (5, as stip-assessment)
        --batch-bytes N              producer batch.size (262144)
        --max-poll-records N         consumer max.poll.records (2000)
        --expect N                   exit once N events have been produced and committed,
                                     printing elapsed time and rate as JSON (0: run until killed)
        --timeout-s S                with --expect: give up after S seconds (600)
      """;

  /** What the processors have done, for --expect. */
  static final class Progress {
    final long expect;
    final AtomicLong outputs = new AtomicLong();
    final AtomicLong decisions = new AtomicLong();
    final AtomicLong qualified = new AtomicLong();
    final AtomicLong rejected = new AtomicLong();
    final AtomicLong deadLettered = new AtomicLong();
    final AtomicLong firstRecordNanos = new AtomicLong();
    // The offset of the last event processed, per input partition.
    final ConcurrentHashMap<TopicPartition, AtomicLong> processed = new ConcurrentHashMap<>();
    final CountDownLatch reached = new CountDownLatch(1);
    volatile Map<TopicPartition, Long> snapshot;
    volatile long reachedNanos;

    Progress(long expect) {
      this.expect = expect;
    }

    AtomicLong slot(TopicPartition partition) {
      return processed.computeIfAbsent(partition, p -> new AtomicLong(-1));
    }

    // Called after the offset slot has been updated: every counted output is in the snapshot.
    void counted() {
      if (outputs.incrementAndGet() == expect) {
        Map<TopicPartition, Long> offsets = new HashMap<>();
        processed.forEach((partition, offset) -> offsets.put(partition, offset.get()));
        snapshot = offsets;
        reachedNanos = System.nanoTime();
        reached.countDown();
      }
    }
  }

  static final class AssessProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    private final Progress progress;
    private final Evaluator evaluator = new Evaluator();
    private ProcessorContext<byte[], byte[]> context;
    private TopicPartition slotPartition;
    private AtomicLong slot;

    AssessProcessor(Progress progress) {
      this.progress = progress;
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
      this.context = context;
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      if (progress.firstRecordNanos.get() == 0) {
        progress.firstRecordNanos.compareAndSet(0, System.nanoTime());
      }
      RecordMetadata metadata = context.recordMetadata().orElseThrow();
      String position = metadata.topic() + "/" + metadata.partition() + "@" + metadata.offset();

      AcceptedFiling filing;
      try {
        filing = decode(record);
      } catch (Undecodable e) {
        deadLetter(record, e.getMessage(), position);
        track(metadata);
        progress.deadLettered.incrementAndGet();
        progress.counted();
        return;
      }
      try {
        QualificationDecision.Builder decision = evaluator.evaluate(filing);
        long millis = record.timestamp();
        long seconds = Math.floorDiv(millis, 1000);
        int nanos = (int) Math.floorMod(millis, 1000) * 1_000_000;
        decision.setDecideTime(Timestamp.newBuilder().setSeconds(seconds).setNanos(nanos));
        QualificationDecision built = decision.build();
        Headers headers =
            CloudEvents.headers(built.getDecisionId(), CloudEvents.DECISION_TYPE,
                CloudEvents.ASSESSMENT_SOURCE, seconds, nanos);
        context.forward(
            new Record<>(CloudEvents.bytes(built.getUscc()), built.toByteArray(), millis, headers),
            "decisions");
        track(metadata);
        progress.decisions.incrementAndGet();
        if (built.getOutcome() == stip.v1.Decision.DecisionOutcome.DECISION_OUTCOME_QUALIFIED) {
          progress.qualified.incrementAndGet();
        }
      } catch (Evaluator.NotAssessable e) {
        if (e.noPolicy) {
          reject(record, filing, e.getMessage(), position);
          progress.rejected.incrementAndGet();
        } else {
          deadLetter(record,
              "filing " + filing.getFilingId() + " cannot be assessed: " + e.getMessage(),
              position);
          progress.deadLettered.incrementAndGet();
        }
        track(metadata);
      }
      progress.counted();
    }

    private void track(RecordMetadata metadata) {
      if (slot == null || slotPartition.partition() != metadata.partition()
          || !slotPartition.topic().equals(metadata.topic())) {
        slotPartition = new TopicPartition(metadata.topic(), metadata.partition());
        slot = progress.slot(slotPartition);
      }
      slot.set(metadata.offset());
    }

    private void deadLetter(Record<byte[], byte[]> record, String reason, String position) {
      Headers headers = new org.apache.kafka.common.header.internals.RecordHeaders(
          record.headers().toArray());
      headers.add(CloudEvents.DEAD_LETTER_REASON, CloudEvents.bytes(reason));
      headers.add(CloudEvents.DEAD_LETTER_SOURCE, CloudEvents.bytes(position));
      context.forward(record.withHeaders(headers), "deadletter");
    }

    // As RejectedEvent in decision_handler.cc: POLICY_NOT_FOUND on filing.fiscal_year.
    private void reject(Record<byte[], byte[]> record, AcceptedFiling filing, String why,
        String position) {
      int year = filing.getFiling().getFiscalYear();
      long millis = record.timestamp();
      long seconds = Math.floorDiv(millis, 1000);
      int nanos = (int) Math.floorMod(millis, 1000) * 1_000_000;
      String contentType = CloudEvents.header(record.headers(), "content-type");
      RejectedFiling rejected =
          RejectedFiling.newBuilder()
              .setFiling(filing.getFiling())
              .addViolations(
                  FilingViolation.newBuilder()
                      .setReason("POLICY_NOT_FOUND")
                      .setField("filing.fiscal_year")
                      .setMessage("no qualification policy covers fiscal year " + year
                          + ": the filing cannot be assessed until one does")
                      .setMessageZh("没有适用于" + year + "财年的资格认定政策，暂无法评定"))
              .setRejectTime(Timestamp.newBuilder().setSeconds(seconds).setNanos(nanos))
              .setSource(position)
              .setOriginalPayload(com.google.protobuf.ByteString.copyFrom(record.value()))
              .setOriginalContentType(
                  contentType != null ? contentType : CloudEvents.CONTENT_TYPE_PROTOBUF)
              .build();
      Headers headers =
          CloudEvents.headers(filing.getFilingId() + "/POLICY_NOT_FOUND",
              CloudEvents.REJECTED_FILING_TYPE, CloudEvents.ASSESSMENT_SOURCE, seconds, nanos);
      String uscc = filing.getFiling().getUscc();
      context.forward(
          new Record<>(CloudEvents.bytes(uscc), rejected.toByteArray(), millis, headers),
          "rejected");
    }
  }

  static final class Undecodable extends Exception {
    Undecodable(String message) {
      super(message, null, false, false);
    }
  }

  // As DecodeAcceptedFiling in decision_handler.cc.
  static AcceptedFiling decode(Record<byte[], byte[]> record) throws Undecodable {
    String type = CloudEvents.header(record.headers(), "ce_type");
    if (type == null) {
      throw new Undecodable("no ce_type header: not a CloudEvent (expected "
          + CloudEvents.ACCEPTED_FILING_TYPE + ")");
    }
    if (!type.equals(CloudEvents.ACCEPTED_FILING_TYPE)) {
      throw new Undecodable(
          "ce_type is \"" + type + "\", expected " + CloudEvents.ACCEPTED_FILING_TYPE);
    }
    String contentType = CloudEvents.header(record.headers(), "content-type");
    if (contentType != null && !contentType.equals(CloudEvents.CONTENT_TYPE_PROTOBUF)) {
      throw new Undecodable("content-type is \"" + contentType + "\", expected "
          + CloudEvents.CONTENT_TYPE_PROTOBUF);
    }
    byte[] value = record.value() == null ? new byte[0] : record.value();
    AcceptedFiling filing;
    try {
      filing = AcceptedFiling.parseFrom(value);
    } catch (InvalidProtocolBufferException e) {
      throw new Undecodable(
          "the value (" + value.length + " bytes) is not a stip.v1.AcceptedFiling");
    }
    String missing = null;
    if (filing.getFilingId().isEmpty()) {
      missing = "filing_id";
    } else if (!filing.hasFiling()) {
      missing = "filing";
    } else if (filing.getFiling().getUscc().isEmpty()) {
      missing = "filing.uscc";
    } else if (filing.getFiling().getFiscalYear() <= 0) {
      missing = "filing.fiscal_year";
    } else if (filing.getFiling().getRevision() <= 0) {
      missing = "filing.revision";
    }
    if (missing != null) {
      throw new Undecodable("the AcceptedFiling has no " + missing + " (filing_id \""
          + filing.getFilingId() + "\")");
    }
    return filing;
  }

  static Topology topology(Flags flags, Progress progress) {
    Topology topology = new Topology();
    ByteArrayDeserializer in = new ByteArrayDeserializer();
    ByteArraySerializer out = new ByteArraySerializer();
    topology.addSource("filings", in, in, flags.get("input"));
    topology.addProcessor("assess", () -> new AssessProcessor(progress), "filings");
    topology.addSink("decisions", flags.get("output"), out, out, "assess");
    topology.addSink("rejected", flags.get("rejected"), out, out, "assess");
    topology.addSink("deadletter", flags.get("deadletter"), out, out, "assess");
    return topology;
  }

  static Properties config(Flags flags) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, flags.get("application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, flags.get("bootstrap"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, flags.getLong("commit-interval-ms"));
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, (int) flags.getLong("threads"));
    // Stateless: no caches, no standbys, no internal topics.
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
    props.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, 0);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    // Keep more records buffered per partition than the default 1000, so a poll feeds
    // whole batches.
    props.put(StreamsConfig.BUFFERED_RECORDS_PER_PARTITION_CONFIG, 10000);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG),
        (int) flags.getLong("max-poll-records"));
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG),
        8 * 1024 * 1024);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MAX_BYTES_CONFIG),
        64 * 1024 * 1024);
    props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG),
        (int) flags.getLong("linger-ms"));
    props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG),
        (int) flags.getLong("batch-bytes"));
    props.put(StreamsConfig.producerPrefix(ProducerConfig.BUFFER_MEMORY_CONFIG),
        128L * 1024 * 1024);
    props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "none");
    // murmur2 on the USCC key: the Java default, and what stip-assessment sets in librdkafka.
    return props;
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> defaults = new LinkedHashMap<>();
    defaults.put("bootstrap", "127.0.0.1:19092");
    defaults.put("input", "stip.filings.v1");
    defaults.put("output", "stip.decisions.v1");
    defaults.put("rejected", "stip.filings.rejected.v1");
    defaults.put("deadletter", "stip.deadletter.v1");
    defaults.put("application-id", "stip-assessment-kafka-streams");
    defaults.put("commit-interval-ms", "100");
    defaults.put("threads", "1");
    defaults.put("linger-ms", "5");
    defaults.put("batch-bytes", "262144");
    defaults.put("max-poll-records", "2000");
    defaults.put("expect", "0");
    defaults.put("timeout-s", "600");
    Flags flags = new Flags("AssessmentStreams", args, defaults, USAGE);
    long expect = flags.getLong("expect");

    Progress progress = new Progress(expect);
    long startNanos = System.nanoTime();
    KafkaStreams streams = new KafkaStreams(topology(flags, progress), config(flags));
    CountDownLatch failed = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler(e -> {
      System.err.println("AssessmentStreams: stream thread failed: " + e);
      failed.countDown();
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.ERROR) failed.countDown();
    });
    CountDownLatch stop = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      stop.countDown();
      streams.close(Duration.ofSeconds(30));
    }));
    streams.start();

    if (expect <= 0) {
      while (!stop.await(1, TimeUnit.SECONDS)) {
        if (failed.getCount() == 0) System.exit(1);
      }
      return;
    }

    long deadline = startNanos + TimeUnit.SECONDS.toNanos(flags.getLong("timeout-s"));
    int exit = 0;
    String json;
    try (Admin admin = Admin.create(Map.of(
        AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, flags.get("bootstrap")))) {
      // 1. Wait until the processors have produced N events.
      while (!progress.reached.await(50, TimeUnit.MILLISECONDS)) {
        if (failed.getCount() == 0) fail(streams, "the stream failed before --expect was met");
        if (System.nanoTime() > deadline) {
          fail(streams, "timed out with " + progress.outputs.get() + " of " + expect
              + " events produced");
        }
      }
      // 2. Wait until the transactions holding them have committed: with exactly_once_v2 the
      // input offsets are committed in the same transaction as the output, so a committed
      // offset past the last event processed means its outputs are committed too.
      Map<TopicPartition, Long> need = progress.snapshot;
      while (true) {
        Map<TopicPartition, OffsetAndMetadata> committed =
            admin.listConsumerGroupOffsets(flags.get("application-id"))
                .partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
        boolean all = true;
        for (Map.Entry<TopicPartition, Long> entry : need.entrySet()) {
          OffsetAndMetadata offset = committed.get(entry.getKey());
          if (offset == null || offset.offset() <= entry.getValue()) {
            all = false;
            break;
          }
        }
        if (all) break;
        if (failed.getCount() == 0) fail(streams, "the stream failed before its commit");
        if (System.nanoTime() > deadline) fail(streams, "timed out waiting for the commit");
        Thread.sleep(5);
      }
      long committedNanos = System.nanoTime();
      long first = progress.firstRecordNanos.get();
      double elapsed = (committedNanos - first) / 1e9;
      json = String.format(Locale.ROOT,
          "{\"peer\":\"kafka-streams\",\"kafka_streams_version\":\"%s\","
              + "\"processing_guarantee\":\"exactly_once_v2\",\"commit_interval_ms\":%d,"
              + "\"threads\":%d,\"input\":\"%s\",\"output\":\"%s\",\"expect\":%d,"
              + "\"outputs\":%d,\"decisions\":%d,\"qualified\":%d,\"rejected\":%d,"
              + "\"dead_lettered\":%d,\"startup_s\":%.3f,\"processed_s\":%.3f,"
              + "\"elapsed_s\":%.3f,\"rate_per_s\":%.1f}",
          org.apache.kafka.common.utils.AppInfoParser.getVersion(),
          flags.getLong("commit-interval-ms"), flags.getLong("threads"), flags.get("input"),
          flags.get("output"), expect, progress.outputs.get(), progress.decisions.get(),
          progress.qualified.get(), progress.rejected.get(), progress.deadLettered.get(),
          (first - startNanos) / 1e9, (progress.reachedNanos - first) / 1e9, elapsed,
          expect / elapsed);
    }
    System.out.println(json);
    System.out.flush();
    streams.close(Duration.ofSeconds(30));
    Runtime.getRuntime().halt(exit);
  }

  private static void fail(KafkaStreams streams, String why) {
    System.err.println("AssessmentStreams: " + why);
    streams.close(Duration.ofSeconds(10));
    Runtime.getRuntime().halt(1);
  }

  private AssessmentStreams() {}
}
