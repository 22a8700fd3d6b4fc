package dev.ess.client;

import dev.ess.v1.OrderStatus;
import dev.ess.v1.ReportOrderUpdateRequest;
import java.util.OptionalDouble;

/**
 * What the venue said of a working order, for {@link GuardClient#reportOrderUpdate}: it
 * ended ({@code ORDER_STATUS_CANCELLED}, {@code _REJECTED}, {@code _EXPIRED}) or is still
 * {@code ORDER_STATUS_OPEN} with {@code remainingQuantity} left (sent with OPEN only).
 *
 * <p>{@code filledQuantity} is the venue's cumulative filled quantity (FIX CumQty), if known:
 * the fills it counts beyond those reported by {@link GuardClient#reportFill} stay reserved
 * until they arrive; without it an OPEN update releases nothing. Give it (see
 * {@link #withFilledQuantity}) when fills come by a separate drop copy. It is sent only when
 * present: empty is "unknown", not 0.
 *
 * @param filledQuantity the venue's CumQty, or empty if unknown (null is taken as empty)
 */
public record OrderUpdate(
    String account,
    String clientOrderId,
    OrderStatus status,
    double remainingQuantity,
    OptionalDouble filledQuantity) {

  public OrderUpdate {
    filledQuantity = filledQuantity == null ? OptionalDouble.empty() : filledQuantity;
  }

  /** Without a filled quantity (it is not sent). */
  public OrderUpdate(
      String account, String clientOrderId, OrderStatus status, double remainingQuantity) {
    this(account, clientOrderId, status, remainingQuantity, OptionalDouble.empty());
  }

  /** An order that ended: cancelled, rejected or expired. */
  public static OrderUpdate ended(String account, String clientOrderId, OrderStatus status) {
    return new OrderUpdate(account, clientOrderId, status, 0);
  }

  /** An order still working with this much left. */
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
    if (status == OrderStatus.ORDER_STATUS_OPEN) {
      request.setRemainingQuantity(remainingQuantity);
    }
    if (filledQuantity.isPresent()) {
      request.setFilledQuantity(filledQuantity.getAsDouble());
    }
    return request.build();
  }
}
