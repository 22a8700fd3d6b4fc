package dev.ess.client;

import java.util.Locale;

/** The side of an order or a fill. */
public enum Side {
  BUY(dev.ess.v1.Side.SIDE_BUY),
  SELL(dev.ess.v1.Side.SIDE_SELL);

  private final dev.ess.v1.Side proto;

  Side(dev.ess.v1.Side proto) {
    this.proto = proto;
  }

  /** The wire enum. */
  public dev.ess.v1.Side proto() {
    return proto;
  }

  /**
   * Reads "buy" or "sell" (any case, with or without "SIDE_").
   *
   * @throws IllegalArgumentException for anything else
   */
  public static Side parse(String text) {
    String name = text.trim().toUpperCase(Locale.ROOT);
    if (name.startsWith("SIDE_")) {
      name = name.substring("SIDE_".length());
    }
    switch (name) {
      case "BUY":
        return BUY;
      case "SELL":
        return SELL;
      default:
        throw new IllegalArgumentException("side \"" + text + "\" is not buy or sell");
    }
  }
}
