package dev.ess.client;

import dev.ess.v1.ReportFillRequest;

/**
 * One incremental fill of an order the sidecar allowed, for {@link GuardClient#reportFill}.
 *
 * @param clientOrderId required: the order the fill is of ({@link Verdict#clientOrderId()})
 * @param fillId required: the venue's execution id; a fill_id already applied is ignored
 */
public record Fill(
    String account,
    String strategy,
    String symbol,
    Side side,
    double quantity,
    double price,
    String clientOrderId,
    String fillId) {

  /** @throws IllegalArgumentException without a side, client_order_id or fill_id */
  public Fill {
    if (side == null) {
      throw new IllegalArgumentException("a fill needs its side");
    }
    if (clientOrderId == null || clientOrderId.isEmpty()) {
      throw new IllegalArgumentException("a fill needs the client_order_id of its order");
    }
    if (fillId == null || fillId.isEmpty()) {
      throw new IllegalArgumentException("a fill needs its fill_id (the venue's execution id)");
    }
  }

  ReportFillRequest request() {
    return ReportFillRequest.newBuilder()
        .setAccount(account == null ? "" : account)
        .setStrategy(strategy == null ? "" : strategy)
        .setSymbol(symbol == null ? "" : symbol)
        .setSide(side.proto())
        .setQuantity(quantity)
        .setPrice(price)
        .setClientOrderId(clientOrderId)
        .setFillId(fillId)
        .build();
  }
}
