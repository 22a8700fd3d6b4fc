package dev.ess.client;

import dev.ess.v1.IncludedFills;
import dev.ess.v1.OpenOrder;
import dev.ess.v1.Position;
import dev.ess.v1.SyncPositionsRequest;
import java.util.List;

/**
 * A full picture of one account, for {@link GuardClient#syncPositions}: it replaces the
 * sidecar's book. When any open orders are listed, or {@code openOrdersComplete} is set,
 * they are all of the account's working orders; otherwise working orders are left as they are.
 *
 * @param equity account equity (&gt; 0), used by the exposure limits
 * @param includedFills per order, the cumulative fills (the venue's CumQty) the positions
 *     already count: fills reported after the snapshot move no position until they pass it.
 *     Name every order open or filled since the positions were read (0 if none of its fills
 *     are in them), or fills count twice or go missing.
 */
public record Snapshot(
    String account,
    double equity,
    List<Position> positions,
    List<OpenOrder> openOrders,
    boolean openOrdersComplete,
    List<IncludedFills> includedFills) {

  public Snapshot {
    positions = positions == null ? List.of() : List.copyOf(positions);
    openOrders = openOrders == null ? List.of() : List.copyOf(openOrders);
    includedFills = includedFills == null ? List.of() : List.copyOf(includedFills);
  }

  /** No fills named as counted in the positions beyond those reported. */
  public Snapshot(String account, double equity, List<Position> positions,
      List<OpenOrder> openOrders, boolean openOrdersComplete) {
    this(account, equity, positions, openOrders, openOrdersComplete, List.of());
  }

  /** Positions only: working orders are left as they are. */
  public static Snapshot of(String account, double equity, List<Position> positions) {
    return new Snapshot(account, equity, positions, List.of(), false);
  }

  SyncPositionsRequest request() {
    return SyncPositionsRequest.newBuilder()
        .setAccount(account == null ? "" : account)
        .setEquity(equity)
        .addAllPositions(positions)
        .addAllOpenOrders(openOrders)
        .setOpenOrdersComplete(openOrdersComplete)
        .addAllIncludedFills(includedFills)
        .build();
  }
}
