package stip.peer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import stip.v1.Decision.QualificationDecision;

/**
 * Reads two decision topics to their ends (read_committed) and compares them filing by
 * filing: the decisions must be equal but for supersedes_decision_id (the stateless peer has
 * no filing history), decide_time included; so must the keys and the CloudEvents headers. Prints a JSON summary; exit 1 on any difference.
 */
public final class CompareDecisions {
  static final String USAGE =
      """
      Usage: CompareDecisions --left TOPIC --right TOPIC [--bootstrap HOST:PORT] [--show N]
      """;

  record Seen(QualificationDecision decision, Map<String, String> headers, String key) {}

  static Map<String, Seen> read(String bootstrap, String topic) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 5000);
    Map<String, Seen> seen = new HashMap<>();
    try (KafkaConsumer<byte[], byte[]> consumer =
        new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> partitions = new ArrayList<>();
      consumer.partitionsFor(topic).forEach(p -> partitions.add(new TopicPartition(topic,
          p.partition())));
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
      while (true) {
        boolean done = true;
        for (TopicPartition p : partitions) {
          if (consumer.position(p) < end.get(p)) done = false;
        }
        if (done) break;
        for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
          try {
            QualificationDecision decision = QualificationDecision.parseFrom(record.value());
            Map<String, String> headers = new LinkedHashMap<>();
            for (Header h : record.headers()) {
              headers.put(h.key(), new String(h.value(), java.nio.charset.StandardCharsets.UTF_8));
            }
            Seen previous = seen.put(decision.getFilingId(), new Seen(decision, headers,
                new String(record.key(), java.nio.charset.StandardCharsets.UTF_8)));
            if (previous != null && !previous.decision().equals(decision)) {
              System.err.println(topic + ": two different decisions for "
                  + decision.getFilingId());
            }
          } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            System.err.println(topic + ": undecodable decision at " + record.offset());
          }
        }
      }
    }
    return seen;
  }

  public static void main(String[] args) {
    Map<String, String> defaults = new LinkedHashMap<>();
    defaults.put("bootstrap", "127.0.0.1:19092");
    defaults.put("left", "");
    defaults.put("right", "");
    defaults.put("show", "3");
    Flags flags = new Flags("CompareDecisions", args, defaults, USAGE);
    Map<String, Seen> left = read(flags.get("bootstrap"), flags.get("left"));
    Map<String, Seen> right = read(flags.get("bootstrap"), flags.get("right"));
    long show = flags.getLong("show");
    long same = 0;
    long differ = 0;
    long onlyLeft = 0;
    long onlyRight = 0;
    long qualified = 0;
    Map<String, Long> outcomes = new HashMap<>();
    for (Map.Entry<String, Seen> entry : left.entrySet()) {
      Seen l = entry.getValue();
      Seen r = right.get(entry.getKey());
      if (r == null) {
        onlyLeft++;
        continue;
      }
      QualificationDecision a = l.decision().toBuilder().clearSupersedesDecisionId().build();
      QualificationDecision b = r.decision().toBuilder().clearSupersedesDecisionId().build();
      boolean headersMatch = l.key().equals(r.key());
      for (String name : List.of("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
          "content-type")) {
        headersMatch &= java.util.Objects.equals(l.headers().get(name), r.headers().get(name));
      }
      if (a.equals(b) && headersMatch) {
        same++;
        outcomes.merge(a.getOutcome().name(), 1L, Long::sum);
        if (show-- > 0) {
          System.err.println("same: " + a.getFilingId() + " " + a.getDecisionId() + " "
              + a.getExplanation());
        }
      } else {
        differ++;
        if (differ <= 5) {
          System.err.println("DIFFERENT " + entry.getKey() + "\n  left:  " + a + " "
              + l.headers() + "\n  right: " + b + " " + r.headers());
        }
      }
    }
    for (String filing : right.keySet()) if (!left.containsKey(filing)) onlyRight++;
    System.out.printf(
        "{\"left\":\"%s\",\"right\":\"%s\",\"left_decisions\":%d,\"right_decisions\":%d,"
            + "\"same\":%d,\"different\":%d,\"only_left\":%d,\"only_right\":%d,\"outcomes\":%s}%n",
        flags.get("left"), flags.get("right"), left.size(), right.size(), same, differ,
        onlyLeft, onlyRight, outcomes.toString().replace("=", "\":").replace("{", "{\"")
            .replace(", ", ",\""));
    System.exit(differ == 0 && onlyLeft == 0 && onlyRight == 0 ? 0 : 1);
  }

  private CompareDecisions() {}
}
