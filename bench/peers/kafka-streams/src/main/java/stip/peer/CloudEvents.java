package stip.peer;

import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;

/** The CloudEvents binary-mode envelope of services/common/event.cc (MakeCloudEvent). */
final class CloudEvents {
  static final String ACCEPTED_FILING_TYPE = "stip.v1.AcceptedFiling";
  static final String DECISION_TYPE = "stip.v1.QualificationDecision";
  static final String REJECTED_FILING_TYPE = "stip.v1.RejectedFiling";
  static final String ASSESSMENT_SOURCE = "/stip/assessment";
  static final String INTAKE_SOURCE = "/stip/intake";
  static final String CONTENT_TYPE_PROTOBUF = "application/protobuf";
  static final String DEAD_LETTER_REASON = "stip_dlq_reason";
  static final String DEAD_LETTER_SOURCE = "stip_dlq_source";

  private static final byte[] SPECVERSION = bytes("1.0");
  private static final byte[] PROTOBUF = bytes(CONTENT_TYPE_PROTOBUF);

  private CloudEvents() {}

  static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  /** ce_specversion, ce_id, ce_type, ce_source, ce_time, content-type: in that order. */
  static Headers headers(String id, String type, String source, long seconds, int nanos) {
    RecordHeaders headers = new RecordHeaders();
    headers.add("ce_specversion", SPECVERSION);
    headers.add("ce_id", bytes(id));
    headers.add("ce_type", bytes(type));
    headers.add("ce_source", bytes(source));
    headers.add("ce_time", bytes(rfc3339(seconds, nanos)));
    headers.add("content-type", PROTOBUF);
    return headers;
  }

  static String header(Headers headers, String name) {
    Header header = headers.lastHeader(name);
    return header == null || header.value() == null
        ? null
        : new String(header.value(), StandardCharsets.UTF_8);
  }

  private static StringBuilder pad(StringBuilder out, long value, int width) {
    String digits = Long.toString(value);
    for (int i = digits.length(); i < width; i++) out.append('0');
    return out.append(digits);
  }

  /**
   * absl::FormatTime(absl::RFC3339_full, t, UTC): "2024-05-01T08:00:00.123+00:00", the
   * fraction without trailing zeros and left out when zero.
   */
  static String rfc3339(long seconds, int nanos) {
    long days = Math.floorDiv(seconds, 86400);
    long secOfDay = Math.floorMod(seconds, 86400);
    java.time.LocalDate date = java.time.LocalDate.ofEpochDay(days);
    StringBuilder out = new StringBuilder(36);
    pad(out, date.getYear(), 4).append('-');
    pad(out, date.getMonthValue(), 2).append('-');
    pad(out, date.getDayOfMonth(), 2).append('T');
    pad(out, secOfDay / 3600, 2).append(':');
    pad(out, (secOfDay / 60) % 60, 2).append(':');
    pad(out, secOfDay % 60, 2);
    if (nanos != 0) {
      int digits = 9;
      while (nanos % 10 == 0) {
        nanos /= 10;
        digits--;
      }
      pad(out.append('.'), nanos, digits);
    }
    return out.append("+00:00").toString();
  }
}
