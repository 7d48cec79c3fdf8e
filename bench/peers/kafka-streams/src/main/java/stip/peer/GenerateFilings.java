package stip.peer;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import com.google.protobuf.Timestamp;
import stip.v1.Filing.AcceptedFiling;
import stip.v1.Filing.AnnualFiling;
import stip.v1.Filing.HiTechProject;
import stip.v1.Filing.ProjectStage;
import stip.v1.Filing.TechnologyField;
import stip.v1.ParkOuterClass.EconomicRegion;

/**
 * Writes --count random valid AcceptedFiling events to a topic, keyed by USCC, with the
 * CloudEvents headers intake gives them: the benchmark input. Every filing is revision 1 of a
 * distinct enterprise (valid GB 32100 check character) for one fiscal year, so that a
 * stateless assessor and one with a supersedes index decide them alike. The values cluster
 * around the thresholds and include the edge cases: exactly 3.00%, one fen below, zero
 * revenue, zero employees. The same --seed gives the same filings.
 */
public final class GenerateFilings {
  static final String USAGE =
      """
      Usage: GenerateFilings [flags]
        --bootstrap HOST:PORT   Kafka bootstrap servers (127.0.0.1:19092)
        --topic TOPIC           where to write (stip.filings.v1)
        --count N               how many filings (100000)
        --partitions N          partitions when the topic is created here (6)
        --fiscal-year Y         the filings' fiscal year (2024)
        --seed S                random seed (1)
        --first N               the first enterprise number, for distinct USCCs across runs (0)
      """;

  private static final String ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  private static final int[] WEIGHTS = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10,
      30, 28};

  /** An 18-character USCC: "91" + a Xinjiang region code + a 9-character code + check. */
  static String uscc(long enterprise) {
    StringBuilder code = new StringBuilder("91650100");
    char[] org = new char[9];
    long n = enterprise;
    for (int i = 8; i >= 0; i--) {
      org[i] = ALPHABET.charAt((int) (n % 31));
      n /= 31;
    }
    code.append(org);
    int sum = 0;
    for (int i = 0; i < 17; i++) sum += ALPHABET.indexOf(code.charAt(i)) * WEIGHTS[i];
    int check = (31 - sum % 31) % 31;
    return code.append(ALPHABET.charAt(check)).toString();
  }

  static AcceptedFiling filing(Random random, long enterprise, int year, MessageDigest sha) {
    String uscc = uscc(enterprise);
    long revenue;
    long rd;
    int kind = random.nextInt(100);
    revenue = 1_000_000L + (long) (random.nextDouble() * 50_000_000_000L);
    if (kind < 3) {
      revenue = 0; // INSUFFICIENT_DATA
      rd = random.nextInt(1_000_000);
    } else if (kind < 13) {
      revenue = revenue / 100 * 100;
      rd = revenue * 3 / 100; // exactly 3.00%
    } else if (kind < 23) {
      revenue = revenue / 100 * 100;
      rd = revenue * 3 / 100 - 1; // one fen below
    } else {
      rd = (long) (revenue * (0.01 + random.nextDouble() * 0.05));
    }
    int total = kind >= 3 && kind < 6 ? 0 : 5 + random.nextInt(2000);
    int tertiary = (int) (total * (0.15 + random.nextDouble() * 0.35));
    int rdStaff = (int) (total * (0.04 + random.nextDouble() * 0.12));
    if (kind >= 23 && kind < 28 && total > 0) {
      tertiary = (total * 3 + 9) / 10; // at least 30%, the least that passes
      rdStaff = (total + 9) / 10;
    }
    AnnualFiling.Builder annual =
        AnnualFiling.newBuilder()
            .setUscc(uscc)
            .setParkId("urumqi-hnz")
            .setFiscalYear(year)
            .setRevision(1)
            .setGrossRevenueFen(revenue)
            .setRdExpenditureFen(rd)
            .setTotalEmployees(total)
            .setTertiaryEducatedEmployees(tertiary)
            .setRdEmployees(rdStaff)
            .setEnterpriseName("Xinjiang Example Technology Co., Ltd. No. " + enterprise);
    int projects = random.nextInt(4);
    for (int p = 0; p < projects; p++) {
      annual.addProjects(
          HiTechProject.newBuilder()
              .setProjectId("P" + (p + 1))
              .setTitle("Project " + (p + 1) + " of enterprise " + enterprise)
              .setField(TechnologyField.forNumber(1 + random.nextInt(8)))
              .setStage(random.nextBoolean() ? ProjectStage.PROJECT_STAGE_DEVELOPMENT
                  : ProjectStage.PROJECT_STAGE_COMMERCIALIZED)
              .setTorchNominated(random.nextInt(4) == 0));
    }
    AnnualFiling built = annual.build();
    long now = System.currentTimeMillis();
    return AcceptedFiling.newBuilder()
        .setFilingId(uscc + "/" + year + "/1")
        .setFiling(built)
        .setRegion(EconomicRegion.forNumber(1 + random.nextInt(4)))
        .setReceiveTime(Timestamp.newBuilder().setSeconds(now / 1000)
            .setNanos((int) (now % 1000) * 1_000_000))
        .setRequestId("bench-" + enterprise)
        .setContentSha256(HexFormat.of().formatHex(sha.digest(built.toByteArray())))
        .build();
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> defaults = new LinkedHashMap<>();
    defaults.put("bootstrap", "127.0.0.1:19092");
    defaults.put("topic", "stip.filings.v1");
    defaults.put("count", "100000");
    defaults.put("partitions", "6");
    defaults.put("fiscal-year", "2024");
    defaults.put("seed", "1");
    defaults.put("first", "0");
    Flags flags = new Flags("GenerateFilings", args, defaults, USAGE);
    String bootstrap = flags.get("bootstrap");
    String topic = flags.get("topic");
    long count = flags.getLong("count");
    long first = flags.getLong("first");
    int year = (int) flags.getLong("fiscal-year");

    try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
      admin.createTopics(List.of(new NewTopic(topic,
          Optional.of((int) flags.getLong("partitions")), Optional.empty())))
          .all().get(30, TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      if (!(e.getCause() instanceof TopicExistsException)) throw e;
    }

    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    props.put(ProducerConfig.LINGER_MS_CONFIG, 20);
    props.put(ProducerConfig.BATCH_SIZE_CONFIG, 512 * 1024);
    props.put(ProducerConfig.BUFFER_MEMORY_CONFIG, 128L * 1024 * 1024);
    Random random = new Random(flags.getLong("seed"));
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    long start = System.nanoTime();
    try (KafkaProducer<byte[], byte[]> producer =
        new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
      for (long i = 0; i < count; i++) {
        AcceptedFiling filing = filing(random, first + i, year, sha);
        long now = System.currentTimeMillis();
        ProducerRecord<byte[], byte[]> record =
            new ProducerRecord<>(topic, null, now,
                filing.getFiling().getUscc().getBytes(StandardCharsets.UTF_8),
                filing.toByteArray(),
                CloudEvents.headers(filing.getFilingId(), CloudEvents.ACCEPTED_FILING_TYPE,
                    CloudEvents.INTAKE_SOURCE, now / 1000, (int) (now % 1000) * 1_000_000));
        producer.send(record, (metadata, error) -> {
          if (error != null) {
            System.err.println("GenerateFilings: " + error);
            Runtime.getRuntime().halt(1);
          }
        });
      }
      producer.flush();
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    System.out.printf(java.util.Locale.ROOT,
        "{\"generated\":%d,\"topic\":\"%s\",\"seconds\":%.3f}%n", count, topic, seconds);
  }

  private GenerateFilings() {}
}
