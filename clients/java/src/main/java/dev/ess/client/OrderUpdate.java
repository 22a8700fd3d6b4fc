package dev.ess.client;

import dev.ess.v1.OrderStatus;
import dev.ess.v1.ReportOrderUpdateRequest;
import java.util.OptionalDouble;

/**
 * What the venue said of a working order, for {@link GuardClient#reportOrderUpdate}: it
 * ended ({@code ORDER_STATUS_CANCELLED}, {@code _REJECTED}, {@code _EXPIRED}: see
 * {@link #ended}) or is still {@code ORDER_STATUS_OPEN} with {@code remainingQuantity} left
 * (see {@link #open}).
 *
 * <p>{@code remainingQuantity} is the venue's leaves, required with OPEN: it is sent with OPEN
 * only, and only when present. An OPEN update without it is refused by the sidecar
 * (INVALID_ARGUMENT), never taken as 0 left; a 0 that is given is sent (an order filled in
 * full whose fills are not reported yet).
 *
 * <p>{@code filledQuantity} is the venue's cumulative filled quantity (FIX CumQty), if known:
 * the fills it counts beyond those reported by {@link GuardClient#reportFill} stay reserved
 * until they arrive; without it an OPEN update releases nothing. Give it (see
 * {@link #withFilledQuantity}) when fills come by a separate drop copy. It is sent only when
 * present: empty is "unknown", not 0.
 *
 * @param remainingQuantity the venue's leaves (OPEN only), or empty (null is taken as empty)
 * @param filledQuantity the venue's CumQty, or empty if unknown (null is taken as empty)
 */
public record OrderUpdate(
    String account,
    String clientOrderId,
    OrderStatus status,
    OptionalDouble remainingQuantity,
    OptionalDouble filledQuantity) {

  public OrderUpdate {
    remainingQuantity = remainingQuantity == null ? OptionalDouble.empty() : remainingQuantity;
    filledQuantity = filledQuantity == null ? OptionalDouble.empty() : filledQuantity;
  }

  /** With this remaining quantity (sent with OPEN only) and without a filled quantity. */
  public OrderUpdate(
      String account, String clientOrderId, OrderStatus status, double remainingQuantity) {
    this(account, clientOrderId, status, OptionalDouble.of(remainingQuantity),
        OptionalDouble.empty());
  }

  /**
   * An order that ended: cancelled, rejected or expired.
   *
   * @throws IllegalArgumentException for any other status (an OPEN order has leaves: see
   *     {@link #open})
   */
  public static OrderUpdate ended(String account, String clientOrderId, OrderStatus status) {
    if (status != OrderStatus.ORDER_STATUS_CANCELLED && status != OrderStatus.ORDER_STATUS_REJECTED
        && status != OrderStatus.ORDER_STATUS_EXPIRED) {
      throw new IllegalArgumentException("OrderUpdate.ended: status " + status
          + " is not ORDER_STATUS_CANCELLED, _REJECTED or _EXPIRED (OPEN: OrderUpdate.open)");
    }
    return new OrderUpdate(
        account, clientOrderId, status, OptionalDouble.empty(), OptionalDouble.empty());
  }

  /** An order still working with this much left (0: filled in full, fills not reported). */
  public static OrderUpdate open(String account, String clientOrderId, double remaining) {
    return new OrderUpdate(account, clientOrderId, OrderStatus.ORDER_STATUS_OPEN, remaining);
  }

  /** This update with the venue's cumulative filled quantity (FIX CumQty), sent with it. */
  public OrderUpdate withFilledQuantity(double filled) {
    return new OrderUpdate(
        account, clientOrderId, status, remainingQuantity, OptionalDouble.of(filled));
  }

  ReportOrderUpdateRequest request() {
    ReportOrderUpdateRequest.Builder request = ReportOrderUpdateRequest.newBuilder()
        .setAccount(account == null ? "" : account)
        .setClientOrderId(clientOrderId == null ? "" : clientOrderId)
        .setStatus(status == null ? OrderStatus.ORDER_STATUS_UNSPECIFIED : status);
    if (status == OrderStatus.ORDER_STATUS_OPEN && remainingQuantity.isPresent()) {
      request.setRemainingQuantity(remainingQuantity.getAsDouble());
    }
    if (filledQuantity.isPresent()) {
      request.setFilledQuantity(filledQuantity.getAsDouble());
    }
    return request.build();
  }
}
