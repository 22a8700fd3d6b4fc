package dev.ess.client;

import dev.ess.v1.CheckOrderRequest;

/**
 * What a check asks about. Build one with {@link #builder()}:
 *
 * <pre>{@code
 * Order order = Order.builder().account("acc-1").strategy("momo").symbol("AAPL")
 *     .side(Side.BUY).quantity(10).price(187.5).build();
 * }</pre>
 *
 * @param account the account (required)
 * @param strategy the strategy (required)
 * @param symbol the symbol (required; case-insensitive)
 * @param side BUY or SELL (required)
 * @param quantity what may fill, positive and finite
 * @param price positive and finite; for a market order, the price expected
 * @param reduceOnly informational: a REDUCE_ONLY scope admits the order only if it does not
 *     grow the absolute position
 * @param clientOrderId unique per account; {@code null} or empty: the client makes one up and
 *     returns it as {@link Verdict#clientOrderId()}
 * @param replacesClientOrderId a cancel/replace of that working order; {@code null} or empty
 *     for none
 */
public record Order(
    String account,
    String strategy,
    String symbol,
    Side side,
    double quantity,
    double price,
    boolean reduceOnly,
    String clientOrderId,
    String replacesClientOrderId) {

  /** @throws IllegalArgumentException without a side */
  public Order {
    if (side == null) {
      throw new IllegalArgumentException("an order needs its side (Side.BUY or Side.SELL)");
    }
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The same order with this client_order_id. */
  public Order withClientOrderId(String id) {
    return new Order(account, strategy, symbol, side, quantity, price, reduceOnly, id,
        replacesClientOrderId);
  }

  CheckOrderRequest request(String id) {
    CheckOrderRequest.Builder request = CheckOrderRequest.newBuilder()
        .setAccount(nonNull(account))
        .setStrategy(nonNull(strategy))
        .setSymbol(nonNull(symbol))
        .setSide(side.proto())
        .setQuantity(quantity)
        .setPrice(price)
        .setReduceOnly(reduceOnly)
        .setClientOrderId(id);
    if (replacesClientOrderId != null && !replacesClientOrderId.isEmpty()) {
      request.setReplacesClientOrderId(replacesClientOrderId);
    }
    return request.build();
  }

  private static String nonNull(String text) {
    return text == null ? "" : text;
  }

  /** A builder of {@link Order}; side has no default: {@link #build()} refuses none. */
  public static final class Builder {
    private String account = "";
    private String strategy = "";
    private String symbol = "";
    // No default: a SELL checked as a BUY would be a wrong allow under REDUCE_ONLY.
    private Side side;
    private double quantity;
    private double price;
    private boolean reduceOnly;
    private String clientOrderId;
    private String replacesClientOrderId;

    private Builder() {}

    public Builder account(String account) {
      this.account = account;
      return this;
    }

    public Builder strategy(String strategy) {
      this.strategy = strategy;
      return this;
    }

    public Builder symbol(String symbol) {
      this.symbol = symbol;
      return this;
    }

    public Builder side(Side side) {
      this.side = side;
      return this;
    }

    public Builder quantity(double quantity) {
      this.quantity = quantity;
      return this;
    }

    public Builder price(double price) {
      this.price = price;
      return this;
    }

    public Builder reduceOnly(boolean reduceOnly) {
      this.reduceOnly = reduceOnly;
      return this;
    }

    public Builder clientOrderId(String clientOrderId) {
      this.clientOrderId = clientOrderId;
      return this;
    }

    public Builder replacesClientOrderId(String replacesClientOrderId) {
      this.replacesClientOrderId = replacesClientOrderId;
      return this;
    }

    /** @throws IllegalArgumentException without a side */
    public Order build() {
      return new Order(account, strategy, symbol, side, quantity, price, reduceOnly,
          clientOrderId, replacesClientOrderId);
    }
  }
}
