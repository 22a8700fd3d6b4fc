package dev.ess.client;

import dev.ess.v1.CheckOrderResponse;
import dev.ess.v1.CheckOrderStreamResponse;
import dev.ess.v1.DecisionReason;

/**
 * The answer to "may I send this order?". {@link #allowed()} is the only field an executor
 * must obey.
 *
 * @param allowed send the order only if true
 * @param reason the sidecar's reason; {@code DECISION_REASON_UNSPECIFIED} when the check
 *     failed closed
 * @param message the sidecar's message, or why the check failed closed
 * @param cause {@link Cause#NONE} for a decision of the sidecar; otherwise why the client
 *     denied the order itself
 * @param field with {@link Cause#REQUEST_ERROR}: the offending field, e.g. "order.quantity"
 * @param stateVersion the sidecar's state version at the decision
 * @param decisionId the sidecar's id of the decision
 * @param blockingScope "GLOBAL" or "KIND:id" of the scope whose state denied the order, or ""
 * @param clientOrderId the order's client_order_id (made up by the client when none was
 *     given): send the order with it, and report its fills and updates with it
 */
public record Verdict(
    boolean allowed,
    DecisionReason reason,
    String message,
    Cause cause,
    String field,
    long stateVersion,
    String decisionId,
    String blockingScope,
    String clientOrderId) {

  /** The reason a verdict gives when the client denied the order itself. */
  public static final String CLIENT_FAIL_CLOSED = "CLIENT_FAIL_CLOSED";

  private static final String PREFIX = "DECISION_REASON_";

  /** Whether the client denied the order itself for lack of a trustworthy decision. */
  public boolean failedClosed() {
    return cause != Cause.NONE;
  }

  /**
   * The reason without its prefix, e.g. "SCOPE_TRIPPED", or "CLIENT_FAIL_CLOSED" when the
   * check failed closed.
   */
  public String reasonName() {
    if (failedClosed()) {
      return CLIENT_FAIL_CLOSED;
    }
    String name = reason.name();
    return name.startsWith(PREFIX) ? name.substring(PREFIX.length()) : name;
  }

  /** A denial made by the client: the check failed closed with this cause. */
  public static Verdict failed(Cause cause, String message) {
    return new Verdict(false, DecisionReason.DECISION_REASON_UNSPECIFIED, message, cause, "", 0,
        "", "", "");
  }

  Verdict withClientOrderId(String id) {
    return new Verdict(allowed && cause == Cause.NONE, reason, message, cause, field,
        stateVersion, decisionId, blockingScope, id);
  }

  /** Trusts a decision only if it is complete and self-consistent. */
  static Verdict fromDecision(CheckOrderResponse decision) {
    if (decision == null) {
      return failed(Cause.MALFORMED, "answer carries no decision");
    }
    DecisionReason reason = decision.getReason();
    if (reason == DecisionReason.UNRECOGNIZED
        || reason == DecisionReason.DECISION_REASON_UNSPECIFIED) {
      return failed(Cause.MALFORMED, "unknown decision reason " + decision.getReasonValue());
    }
    if (decision.getAllowed() != (reason == DecisionReason.DECISION_REASON_ALLOWED)) {
      return failed(Cause.MALFORMED,
          "allowed=" + decision.getAllowed() + " contradicts reason " + reason.name());
    }
    return new Verdict(decision.getAllowed(), reason, decision.getMessage(), Cause.NONE, "",
        decision.getStateVersion(), decision.getDecisionId(),
        decision.hasBlockingScope() ? Scopes.format(decision.getBlockingScope()) : "", "");
  }

  /** Reads one CheckOrderStream answer, its request_id already matched. */
  static Verdict fromAnswer(CheckOrderStreamResponse answer) {
    switch (answer.getResultCase()) {
      case DECISION:
        return fromDecision(answer.getDecision());
      case ERROR:
        String message = answer.getError().getMessage();
        if (message.isEmpty()) {
          message = "the sidecar rejected the order";
        }
        return new Verdict(false, DecisionReason.DECISION_REASON_UNSPECIFIED, message,
            Cause.REQUEST_ERROR, answer.getError().getField(), 0, "", "", "");
      default:
        return failed(Cause.MALFORMED, "answer carries neither a decision nor an error");
    }
  }
}
