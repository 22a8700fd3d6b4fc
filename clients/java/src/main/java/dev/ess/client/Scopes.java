package dev.ess.client;

import dev.ess.v1.Scope;
import dev.ess.v1.ScopeKind;
import java.util.Locale;

/** Scopes the way operators write them: "GLOBAL" or "KIND:id" (e.g. "STRATEGY:momo"). */
public final class Scopes {
  private static final String PREFIX = "SCOPE_KIND_";

  private Scopes() {}

  /** The GLOBAL scope. */
  public static Scope global() {
    return Scope.newBuilder().setKind(ScopeKind.SCOPE_KIND_GLOBAL).build();
  }

  public static Scope account(String id) {
    return Scope.newBuilder().setKind(ScopeKind.SCOPE_KIND_ACCOUNT).setId(id).build();
  }

  public static Scope strategy(String id) {
    return Scope.newBuilder().setKind(ScopeKind.SCOPE_KIND_STRATEGY).setId(id).build();
  }

  public static Scope symbol(String id) {
    return Scope.newBuilder().setKind(ScopeKind.SCOPE_KIND_SYMBOL).setId(id).build();
  }

  /**
   * Reads "GLOBAL" or "KIND:id", KIND one of ACCOUNT, STRATEGY, SYMBOL in any case of ASCII
   * letters, as the sidecar reads it ("ſymbol" is no kind).
   *
   * @throws IllegalArgumentException for anything else
   */
  public static Scope parse(String text) {
    if (text.equalsIgnoreCase("GLOBAL")) {
      return global();
    }
    int colon = text.indexOf(':');
    String kind = colon > 0 ? text.substring(0, colon) : "";
    if (colon < text.length() - 1 && kind.chars().allMatch(c -> c < 0x80)) {
      String id = text.substring(colon + 1);
      switch (kind.toUpperCase(Locale.ROOT)) {
        case "ACCOUNT":
          return account(id);
        case "STRATEGY":
          return strategy(id);
        case "SYMBOL":
          return symbol(id);
        default:
          break;
      }
    }
    throw new IllegalArgumentException(
        "scope \"" + text + "\" is not GLOBAL or ACCOUNT:, STRATEGY:, SYMBOL:<id>");
  }

  /** "GLOBAL" or "KIND:id". */
  public static String format(Scope scope) {
    String kind = scope.getKind() == ScopeKind.UNRECOGNIZED
        ? "KIND_" + scope.getKindValue()
        : scope.getKind().name();
    if (kind.startsWith(PREFIX)) {
      kind = kind.substring(PREFIX.length());
    }
    if (scope.getKind() == ScopeKind.SCOPE_KIND_GLOBAL) {
      return kind;
    }
    return kind + ":" + scope.getId();
  }
}
