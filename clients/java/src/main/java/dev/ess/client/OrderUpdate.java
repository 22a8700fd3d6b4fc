package dev.ess.client;

import dev.ess.v1.OrderStatus;
import dev.ess.v1.ReportOrderUpdateRequest;

/**
 * What the venue said of a working order, for {@link GuardClient#reportOrderUpdate}: it
 * ended ({@code ORDER_STATUS_CANCELLED}, {@code _REJECTED}, {@code _EXPIRED}) or is still
 * {@code ORDER_STATUS_OPEN} with {@code remainingQuantity} left (sent with OPEN only).
 */
public record OrderUpdate(
    String account, String clientOrderId, OrderStatus status, double remainingQuantity) {

  /** An order that ended: cancelled, rejected or expired. */
  public static OrderUpdate ended(String account, String clientOrderId, OrderStatus status) {
    return new OrderUpdate(account, clientOrderId, status, 0);
  }

  /** An order still working with this much left. */
  public static OrderUpdate open(String account, String clientOrderId, double remaining) {
    return new OrderUpdate(account, clientOrderId, OrderStatus.ORDER_STATUS_OPEN, remaining);
  }

  ReportOrderUpdateRequest request() {
    ReportOrderUpdateRequest.Builder request = ReportOrderUpdateRequest.newBuilder()
        .setAccount(account == null ? "" : account)
        .setClientOrderId(clientOrderId == null ? "" : clientOrderId)
        .setStatus(status == null ? OrderStatus.ORDER_STATUS_UNSPECIFIED : status);
    if (status == OrderStatus.ORDER_STATUS_OPEN) {
      request.setRemainingQuantity(remainingQuantity);
    }
    return request.build();
  }
}
