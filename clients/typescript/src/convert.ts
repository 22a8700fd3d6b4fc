// Plain values to ess.v1 messages: scopes as "KIND:id", enums by name or number.

import { create, type DescEnum } from "@bufbuild/protobuf";

import {
  type CheckOrderRequest,
  CheckOrderRequestSchema,
  type Scope,
  ScopeKindSchema,
  ScopeSchema,
  type Side,
  SideSchema,
} from "./gen/ess/v1/guard_pb.js";

/** Side.BUY, "buy", "BUY" or "SIDE_BUY". */
export type SideLike = Side | "buy" | "sell" | string;
/** A Scope message, "GLOBAL" or "KIND:id" (e.g. "STRATEGY:momo", "ACCOUNT:acc-1"). */
export type ScopeLike = Scope | string;

/**
 * An enum's number from its number or its name, with or without the prefix and in any case
 * ("buy", "SIDE_BUY"). An unknown name or number throws a TypeError: a number that is not
 * an int32 (1.5, NaN) would throw in serialization instead, which ends a stream for every
 * check in flight.
 */
export function toEnum(schema: DescEnum, value: number | string): number {
  if (typeof value === "number") {
    if (!schema.values.some((v) => v.number === value)) throw new TypeError(`unknown ${schema.name}: ${value}`);
    return value;
  }
  if (typeof value !== "string") throw new TypeError(`not a ${schema.name}: ${String(value)}`);
  const name = value.toUpperCase();
  const found = schema.values.find((v) => v.name === name || v.localName === name);
  if (found === undefined) throw new TypeError(`unknown ${schema.name}: ${value}`);
  return found.number;
}

export function toScope(scope: ScopeLike): Scope {
  if (typeof scope !== "string") return scope;
  const colon = scope.indexOf(":");
  const kind = colon < 0 ? scope : scope.slice(0, colon);
  const id = colon < 0 ? "" : scope.slice(colon + 1);
  return create(ScopeSchema, { kind: toEnum(ScopeKindSchema, kind), id });
}

/** An order to check. `clientOrderId` is made up by the client when not given. */
export interface Order {
  account: string;
  strategy: string;
  symbol: string;
  side: SideLike;
  /** Positive and finite. */
  quantity: number;
  /** Positive and finite; for a market order, the price the executor expects to pay. */
  price: number;
  reduceOnly?: boolean;
  /** Unique per account; generated (random per-client prefix + counter) when empty. */
  clientOrderId?: string;
  /** A cancel/replace: the working order this one replaces. */
  replacesClientOrderId?: string;
}

function text(value: unknown, name: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new TypeError(`${name} must be a string`);
  return value;
}

function number(value: unknown, name: string): number {
  if (typeof value !== "number") throw new TypeError(`${name} must be a number`);
  return value;
}

/** The order's own client_order_id, "" when it has none; one that is no string (untyped
 * callers) is a TypeError, so that the order is denied unsent like any other malformed one. */
export function clientOrderIdOf(order: Order): string {
  return text(order.clientOrderId, "clientOrderId");
}

/** The order as the sidecar sees it. Types are checked here (a wrong type would break the
 * stream for every check in flight); values are the sidecar's to judge. */
export function orderRequest(order: Order, clientOrderId: string): CheckOrderRequest {
  return create(CheckOrderRequestSchema, {
    account: text(order.account, "account"),
    strategy: text(order.strategy, "strategy"),
    symbol: text(order.symbol, "symbol"),
    side: toEnum(SideSchema, order.side),
    quantity: number(order.quantity, "quantity"),
    price: number(order.price, "price"),
    reduceOnly: order.reduceOnly === true,
    clientOrderId,
    replacesClientOrderId: text(order.replacesClientOrderId, "replacesClientOrderId"),
  });
}
