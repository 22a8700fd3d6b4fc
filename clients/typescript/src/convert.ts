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
  DirectiveSchema,
  type TriggerRequest,
  TriggerRequestSchema,
  TriggerMode,
  TriggerModeSchema,
  TriggerReason,
  TriggerReasonSchema,
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
  // ASCII letters only, as the sidecar and the other clients read a name (review 53a:
  // Unicode's upper case read "ſymbol" as SYMBOL, "ſell" as SELL).
  const name = /^[\x00-\x7f]*$/.test(value) ? value.toUpperCase() : "";
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

/** The sidecar's bound on a reason (ess_sidecar/domain/scopes.py), in characters (code
 * points): it cuts a longer one itself, but one over 4 MiB never reaches it. */
export const MAX_REASON_CHARS = 1024;
/** As many unknown directives as the sidecar notes in a reason. */
const MAX_DIRECTIVES = 64; // more are not read (an iterator may never end)
const NOTED_DIRECTIVES = 16;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** What comes with a stop, as `trigger` takes it (untyped callers may pass anything). */
export interface TriggerOptions {
  reasonCode?: string | number;
  mode?: string | number;
  directives?: (string | number)[];
}

/**
 * The TriggerRequest for a stop of `scope`; it never throws for what comes with the stop,
 * only for a scope it cannot read (as the sidecar refuses it). A mode, reason code or
 * directive is matched loosely (any case, with or without its prefix, "-" for "_"); an
 * int32 number passes through (the sidecar notes one it does not know); an unknown name,
 * another number or type is HALT, USER_INITIATED or left out, noted in the reason. The
 * reason's lone surrogates become U+FFFD and it is cut to MAX_REASON_CHARS, notes included.
 */
export function triggerRequest(scope: ScopeLike, reason: unknown, options: unknown): TriggerRequest {
  const given = (typeof options === "object" && options !== null ? options : {}) as Record<string, unknown>;
  const notes: string[] = [];
  // A getter or a Proxy that throws: what it would have given is unknown (review 49e).
  const read = (name: string): unknown => {
    try {
      return given[name];
    } catch {
      notes.push(`${name} could not be read`);
      return null;
    }
  };
  const modeGiven = read("mode");
  const codeGiven = read("reasonCode");
  const listed = read("directives") ?? [];
  let mode = looseEnum(TriggerModeSchema, "TRIGGER_MODE_", modeGiven ?? TriggerMode.HALT);
  if (mode === undefined) {
    mode = TriggerMode.HALT;
    notes.push(`mode ${shown(modeGiven)} unknown: halted`);
  }
  let reasonCode = looseEnum(TriggerReasonSchema, "TRIGGER_REASON_", codeGiven ?? TriggerReason.USER_INITIATED);
  if (reasonCode === undefined) {
    reasonCode = TriggerReason.USER_INITIATED;
    notes.push(`reason_code ${shown(codeGiven)} unknown: user-initiated`);
  }
  const directives: number[] = [];
  let unknown = 0;
  for (const directive of directivesOf(listed, notes)) {
    const number = looseEnum(DirectiveSchema, "DIRECTIVE_", directive);
    if (number !== undefined) directives.push(number);
    else if (++unknown <= NOTED_DIRECTIVES) notes.push(`directive ${shown(directive)} unknown: left out`);
  }
  if (unknown > NOTED_DIRECTIVES) notes.push(`${unknown - NOTED_DIRECTIVES} more unknown directives left out`);
  return create(TriggerRequestSchema, {
    scope: toScope(scope),
    reason: boundedReason(reason, notes),
    reasonCode,
    mode,
    directives,
  });
}

/** The directives given: an array, any other iterable (a Set), or one directive; at most
 * MAX_DIRECTIVES of an iterator, and what came before one that throws (noted). */
function directivesOf(listed: unknown, notes: string[]): unknown[] {
  if (Array.isArray(listed) || typeof listed === "string" || listed === null
      || typeof (listed as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== "function") {
    return Array.isArray(listed) ? listed : [listed];
  }
  const taken: unknown[] = [];
  try {
    for (const directive of listed as Iterable<unknown>) {
      if (taken.length === MAX_DIRECTIVES) {
        notes.push(`directives past the first ${MAX_DIRECTIVES} not read`);
        break;
      }
      taken.push(directive);
    }
  } catch {
    notes.push("directives could not all be read: the rest left out");
  }
  return taken;
}

/** `reason` as well-formed text (U+FFFD for a lone surrogate), cut so that it and `notes`
 * (in parentheses after it) fit MAX_REASON_CHARS code points. */
export function boundedReason(reason: unknown, notes: string[] = []): string {
  const text = typeof reason === "string" ? reason : reason === undefined || reason === null ? "" : shown(reason, MAX_REASON_CHARS);
  const note = notes.length === 0 ? "" : cutChars(` (${notes.join("; ")})`, MAX_REASON_CHARS / 2).replace(LONE_SURROGATE, "\uFFFD");
  const room = MAX_REASON_CHARS - Array.from(note).length;
  // At most 2 UTF-16 units a code point: what lies past 2 * room is never looked at.
  let kept = text.length > 2 * room ? text.slice(0, 2 * room) : text;
  if (kept.length < text.length || Array.from(kept).length > room) {
    const cut = ` [… cut; ${text.length} UTF-16 units given]`;
    kept = cutChars(kept, room - cut.length) + cut;
  }
  return kept.replace(LONE_SURROGATE, "\uFFFD") + note;
}

function cutChars(text: string, most: number): string {
  const chars = Array.from(text.length > 2 * most ? text.slice(0, 2 * most) : text);
  return chars.length > most ? chars.slice(0, Math.max(most, 0)).join("") : chars.join("");
}

/** An enum's number from an int32 number or a name read loosely; undefined if neither. */
function looseEnum(schema: DescEnum, prefix: string, value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31 ? value : undefined;
  }
  if (typeof value !== "string" || value.length > 100) return undefined;
  const name = value.trim().toUpperCase().replace(/[- ]/g, "_");
  const found = schema.values.find((v) => v.name === name || v.name === prefix + name);
  return found?.number;
}

/** A given value in a note: a name as it is, anything else as JSON would show it; at most
 * `most` characters. */
function shown(value: unknown, most = 40): string {
  let text: string;
  try {
    text = typeof value === "string" ? value.slice(0, 2 * most) : String(JSON.stringify(value) ?? String(value));
  } catch {
    text = `<${typeof value}>`;
  }
  const chars = Array.from(text);
  return chars.length > most ? `${chars.slice(0, most - 1).join("")}…` : text;
}
