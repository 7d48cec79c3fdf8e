package stip.peer;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import stip.v1.Decision.CriterionOutcome;
import stip.v1.Decision.CriterionResult;
import stip.v1.Decision.DecisionOutcome;
import stip.v1.Decision.Fraction;
import stip.v1.Decision.QualificationDecision;
import stip.v1.Decision.Shortfall;
import stip.v1.Filing.AcceptedFiling;
import stip.v1.Filing.AnnualFiling;
import stip.v1.PolicyOuterClass.Comparison;
import stip.v1.PolicyOuterClass.Metric;

/**
 * The default policy (policies/stip-default.yaml, stip-default version 1) and a transcription
 * of services/assessment/evaluator.cc for it: exact integer comparisons in basis points, the
 * same shortfalls, the same decision id and the same explanation, so that a decision made here
 * is byte for byte the one stip-assessment makes (but for supersedes_decision_id, which needs
 * the filing history this stateless peer does not keep).
 *
 * <p>Not thread-safe (it holds a MessageDigest): one per stream task.
 */
final class Evaluator {
  static final String POLICY_ID = "stip-default";
  static final int POLICY_VERSION = 1;
  static final int FIRST_FISCAL_YEAR = 1991; // fiscal_years: {from: 1991, to: open}

  /** One criterion of the default policy. */
  record Criterion(Metric metric, Comparison comparison, int thresholdBasisPoints) {}

  static final List<Criterion> CRITERIA =
      List.of(
          new Criterion(Metric.METRIC_RD_INTENSITY, Comparison.COMPARISON_GREATER_OR_EQUAL, 300),
          new Criterion(Metric.METRIC_TERTIARY_SHARE, Comparison.COMPARISON_GREATER_OR_EQUAL, 3000),
          new Criterion(Metric.METRIC_RD_STAFF_SHARE, Comparison.COMPARISON_GREATER_OR_EQUAL, 1000));

  /** A filing that cannot be assessed: no policy in force, or a value that cannot be measured. */
  static final class NotAssessable extends Exception {
    final boolean noPolicy; // true: POLICY_NOT_FOUND (rejected topic); false: dead letter

    NotAssessable(String message, boolean noPolicy) {
      super(message, null, false, false);
      this.noPolicy = noPolicy;
    }
  }

  private static final long ONE = 10000; // basis points in 100%
  private static final BigInteger BIG_ONE = BigInteger.valueOf(ONE);
  private static final BigInteger BIG_LONG_MAX = BigInteger.valueOf(Long.MAX_VALUE);
  // Below this, a value times a factor <= 10000 (< 2^14) fits in a long (< 2^63).
  private static final long SMALL = 1L << 49;

  private final MessageDigest sha256;

  Evaluator() {
    try {
      sha256 = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
  }

  /** As DecisionId in evaluator.cc: the first 16 bytes of a SHA-256, in lowercase hex. */
  String decisionId(String filingId, String policyId, int policyVersion) {
    byte[] filing = filingId.getBytes(StandardCharsets.UTF_8);
    byte[] policy = policyId.getBytes(StandardCharsets.UTF_8);
    String input =
        "stip.v1.QualificationDecision" + filing.length + ":" + filingId + "," + policy.length
            + ":" + policyId + "," + policyVersion;
    byte[] digest = sha256.digest(input.getBytes(StandardCharsets.UTF_8));
    char[] hex = new char[32];
    for (int i = 0; i < 16; i++) {
      hex[2 * i] = Character.forDigit((digest[i] >> 4) & 0xf, 16);
      hex[2 * i + 1] = Character.forDigit(digest[i] & 0xf, 16);
    }
    return new String(hex);
  }

  /** The decision without decide_time (the caller sets it from the event's timestamp). */
  QualificationDecision.Builder evaluate(AcceptedFiling accepted) throws NotAssessable {
    AnnualFiling filing = accepted.getFiling();
    if (filing.getFiscalYear() < FIRST_FISCAL_YEAR) {
      // PolicySet::Select's NotFound: stip-assessment publishes a RejectedFiling for it.
      throw new NotAssessable(
          "no qualification policy covers fiscal year " + filing.getFiscalYear(), true);
    }
    QualificationDecision.Builder decision =
        QualificationDecision.newBuilder()
            .setDecisionId(decisionId(accepted.getFilingId(), POLICY_ID, POLICY_VERSION))
            .setFilingId(accepted.getFilingId())
            .setUscc(filing.getUscc())
            .setParkId(filing.getParkId())
            .setRegion(accepted.getRegion())
            .setFiscalYear(filing.getFiscalYear())
            .setFilingRevision(filing.getRevision())
            .setPolicyId(POLICY_ID)
            .setPolicyVersion(POLICY_VERSION);
    boolean qualified = true;
    List<String> explained = new ArrayList<>(3);
    for (Criterion criterion : CRITERIA) {
      CriterionResult result = evaluateCriterion(criterion, filing);
      boolean passed = result.getOutcome() == CriterionOutcome.CRITERION_OUTCOME_PASS;
      // A qualified decision shows every criterion; a refusal names only what failed.
      if (!passed && qualified) explained.clear();
      if (!passed || qualified) explained.add(explain(result));
      qualified = qualified && passed;
      decision.addCriteria(result);
    }
    decision.setOutcome(
        qualified
            ? DecisionOutcome.DECISION_OUTCOME_QUALIFIED
            : DecisionOutcome.DECISION_OUTCOME_NOT_QUALIFIED);
    decision.setExplanation(
        (qualified ? "QUALIFIED: " : "NOT_QUALIFIED: ") + String.join("; ", explained));
    return decision;
  }

  static CriterionResult evaluateCriterion(Criterion criterion, AnnualFiling filing)
      throws NotAssessable {
    checkNotNegative(filing);
    final int t = criterion.thresholdBasisPoints();
    final boolean strict = criterion.comparison() == Comparison.COMPARISON_GREATER;
    long num;
    long den;
    switch (criterion.metric()) {
      case METRIC_RD_INTENSITY -> {
        num = filing.getRdExpenditureFen();
        den = filing.getGrossRevenueFen();
      }
      case METRIC_TERTIARY_SHARE -> {
        num = filing.getTertiaryEducatedEmployees();
        den = filing.getTotalEmployees();
      }
      default -> {
        num = filing.getRdEmployees();
        den = filing.getTotalEmployees();
      }
    }
    CriterionResult.Builder result =
        CriterionResult.newBuilder()
            .setMetric(criterion.metric())
            .setMeasured(Fraction.newBuilder().setNumerator(num).setDenominator(den))
            .setComparison(criterion.comparison())
            .setThresholdBasisPoints(t);
    if (den == 0) {
      return result
          .setMeasuredBasisPoints(0)
          .setOutcome(CriterionOutcome.CRITERION_OUTCOME_INSUFFICIENT_DATA)
          .build();
    }
    boolean passes;
    if (num < SMALL && den < SMALL) { // the common case: every product fits in a long
      result.setMeasuredBasisPoints(num * ONE / den);
      long measured = num * ONE;
      long required = t * den;
      passes = strict ? measured > required : measured >= required;
    } else { // 128-bit products, as the C++ does with __int128
      BigInteger bigNum = BigInteger.valueOf(num);
      BigInteger bigDen = BigInteger.valueOf(den);
      BigInteger measured = bigNum.multiply(BIG_ONE);
      BigInteger basisPoints = measured.divide(bigDen);
      result.setMeasuredBasisPoints(
          basisPoints.compareTo(BIG_LONG_MAX) > 0 ? Long.MAX_VALUE : basisPoints.longValue());
      int cmp = measured.compareTo(BigInteger.valueOf(t).multiply(bigDen));
      passes = strict ? cmp > 0 : cmp >= 0;
    }
    if (passes) return result.setOutcome(CriterionOutcome.CRITERION_OUTCOME_PASS).build();
    result.setOutcome(CriterionOutcome.CRITERION_OUTCOME_FAIL);
    BigInteger shortfall =
        criterion.metric() == Metric.METRIC_RD_INTENSITY
            ? rdShortfall(num, den, t, strict)
            : BigInteger.valueOf(shareShortfall(num, den, t, strict));
    if (shortfall.signum() >= 0 && shortfall.compareTo(BIG_LONG_MAX) <= 0) {
      long amount = shortfall.longValue();
      result.setShortfall(
          criterion.metric() == Metric.METRIC_RD_INTENSITY
              ? Shortfall.newBuilder().setRdExpenditureFen(amount)
              : Shortfall.newBuilder().setEmployees(amount));
    }
    return result.build();
  }

  // The least extra R&D spending x with (spending + x) / revenue passing, revenue > 0.
  private static BigInteger rdShortfall(long spending, long revenue, int t, boolean strict) {
    BigInteger product = BigInteger.valueOf(t).multiply(BigInteger.valueOf(revenue));
    BigInteger least =
        strict
            ? product.divide(BIG_ONE).add(BigInteger.ONE)
            : product.add(BIG_ONE).subtract(BigInteger.ONE).divide(BIG_ONE);
    return least.subtract(BigInteger.valueOf(spending));
  }

  // The least k >= 0 with (count + k) / (total + k) passing, or -1 when there is none. Counts
  // are int32, so t * total < 2^45: longs suffice.
  private static long shareShortfall(long count, long total, int t, boolean strict) {
    long gap = t * total - ONE * count;
    if (strict ? gap < 0 : gap <= 0) return 0;
    if (t == ONE) return -1;
    long room = ONE - t;
    return strict ? gap / room + 1 : (gap + room - 1) / room;
  }

  private static void checkNotNegative(AnnualFiling filing) throws NotAssessable {
    List<String> negative = new ArrayList<>();
    if (filing.getGrossRevenueFen() < 0) negative.add("gross_revenue_fen");
    if (filing.getRdExpenditureFen() < 0) negative.add("rd_expenditure_fen");
    if (filing.getTotalEmployees() < 0) negative.add("total_employees");
    if (filing.getTertiaryEducatedEmployees() < 0) negative.add("tertiary_educated_employees");
    if (filing.getRdEmployees() < 0) negative.add("rd_employees");
    if (negative.isEmpty()) return;
    throw new NotAssessable(
        "policy " + POLICY_ID + " version " + POLICY_VERSION + ": filing has negative "
            + String.join(", ", negative),
        false);
  }

  private static String label(Metric metric) {
    return switch (metric) {
      case METRIC_RD_INTENSITY -> "R&D intensity";
      case METRIC_TERTIARY_SHARE -> "tertiary-degree share";
      case METRIC_RD_STAFF_SHARE -> "R&D staff share";
      default -> "unknown metric";
    };
  }

  private static String percent(long basisPoints) {
    long hundredths = basisPoints % 100;
    return (basisPoints / 100) + (hundredths < 10 ? ".0" : ".") + hundredths + "%";
  }

  // 1234567 -> "1,234,567".
  private static String grouped(long value) {
    String digits = Long.toString(value);
    StringBuilder out = new StringBuilder(digits.length() + digits.length() / 3);
    for (int i = 0; i < digits.length(); i++) {
      if (i > 0 && (digits.length() - i) % 3 == 0) out.append(',');
      out.append(digits.charAt(i));
    }
    return out.toString();
  }

  private static String shortfallText(CriterionResult result) {
    Shortfall shortfall = result.getShortfall();
    switch (shortfall.getAmountCase()) {
      case RD_EXPENDITURE_FEN: {
        long fen = shortfall.getRdExpenditureFen();
        String text = "short by " + fen + " fen";
        if (fen >= 100) {
          text += ", CNY " + grouped(fen / 100) + (fen % 100 < 10 ? ".0" : ".") + (fen % 100);
        }
        return text;
      }
      case EMPLOYEES: {
        long k = shortfall.getEmployees();
        boolean one = k == 1;
        return result.getMetric() == Metric.METRIC_TERTIARY_SHARE
            ? "short by " + k + (one ? " employee" : " employees") + " with a tertiary degree"
            : "short by " + k + (one ? " R&D employee" : " R&D employees");
      }
      default:
        break;
    }
    return result.getMetric() == Metric.METRIC_RD_INTENSITY
        ? "no R&D expenditure up to 9223372036854775807 fen would pass"
        : "no number of added employees would pass";
  }

  static String explain(CriterionResult result) {
    String label = label(result.getMetric());
    boolean strict = result.getComparison() == Comparison.COMPARISON_GREATER;
    String threshold = percent(result.getThresholdBasisPoints());
    switch (result.getOutcome()) {
      case CRITERION_OUTCOME_PASS:
        return label + " " + percent(result.getMeasuredBasisPoints()) + (strict ? " > " : " >= ")
            + threshold;
      case CRITERION_OUTCOME_FAIL:
        return label + " " + percent(result.getMeasuredBasisPoints()) + (strict ? " <= " : " < ")
            + threshold + " (" + shortfallText(result) + ")";
      default:
        return label + " cannot be measured: "
            + (result.getMetric() == Metric.METRIC_RD_INTENSITY
                ? "gross revenue is 0 fen"
                : "no employees");
    }
  }
}
