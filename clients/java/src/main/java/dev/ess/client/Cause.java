package dev.ess.client;

/**
 * Why a check failed closed. {@link #NONE} marks a decision of the sidecar itself (allowed
 * or denied); every other cause is a denial the client made for lack of a trustworthy
 * decision ({@link Verdict#reasonName()} is then {@code CLIENT_FAIL_CLOSED}).
 */
public enum Cause {
  /** The verdict is the sidecar's own decision. */
  NONE(""),
  /** No answer within the check's deadline. */
  DEADLINE("deadline"),
  /** The sidecar cannot be reached, or answered UNAVAILABLE (shutting down). */
  UNAVAILABLE("unavailable"),
  /** The stream ended, or failed with CANCELLED, INTERNAL or UNKNOWN. */
  STREAM_BROKEN("stream_broken"),
  /** The sidecar rejected the order as bad input ({@link Verdict#field()} names it). */
  REQUEST_ERROR("request_error"),
  /**
   * An answer this client cannot trust: an unknown or unspecified reason, {@code allowed}
   * contradicting {@code reason == ALLOWED}, neither decision nor error, or a
   * {@code request_id} other than the oldest unanswered request's.
   */
  MALFORMED("malformed"),
  /** Any other status: UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, ... */
  REFUSED("refused"),
  /** The calling thread was interrupted, or an async check was cancelled. */
  CANCELED("canceled"),
  /** The client is closed, more than {@value GuardClient#MAX_IN_FLIGHT} checks are in flight, or a bug. */
  CLIENT_ERROR("client_error");

  private final String label;

  Cause(String label) {
    this.label = label;
  }

  /** The cause's name in logs and in the ess-check line, e.g. {@code "deadline"}; "" for NONE. */
  public String label() {
    return label;
  }

  @Override
  public String toString() {
    return label;
  }
}
