package dev.ess.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class OrderTest {
  /**
   * An order built without a side is refused, never checked as a BUY (review: the builder
   * defaulted to BUY, so a forgotten SELL could be allowed under REDUCE_ONLY).
   */
  @Test
  void anOrderWithoutASideIsRefused() {
    Order.Builder noSide = Order.builder().account("acc-1").strategy("momo").symbol("AAPL")
        .quantity(1).price(100);
    IllegalArgumentException refused = assertThrows(IllegalArgumentException.class, noSide::build);
    assertTrue(refused.getMessage().contains("side"), refused.getMessage());
    assertThrows(IllegalArgumentException.class, () -> noSide.side(null).build());
    assertThrows(IllegalArgumentException.class,
        () -> new Order("acc-1", "momo", "AAPL", null, 1, 100, false, null, null));
    assertEquals(dev.ess.v1.Side.SIDE_SELL,
        noSide.side(Side.SELL).build().request("o-1").getSide());
  }
}
