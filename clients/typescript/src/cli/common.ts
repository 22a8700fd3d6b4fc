// What ess-check, ess-smoke and ess-bench share: argument checks and the exit codes.

import { isIPv6 } from "node:net";
import { parseArgs, type ParseArgsConfig } from "node:util";

import { InvalidTokenError } from "../token.js";

export const EX_USAGE = 64;
/** A longer deadline is a typo (and setTimeout would take it for 1 ms). */
export const MAX_DEADLINE_MS = 3_600_000;
/** A shorter deadline is a typo too (5e-324 is no deadline at all). */
export const MIN_DEADLINE_MS = 0.001;
/** DNS's longest name. */
const MAX_HOST_CHARS = 253;
/** sun_path holds 108 bytes with the NUL: a longer path never connects. */
const MAX_UNIX_PATH_BYTES = 107;
/**
 * The longest number's text: it bounds every parser (review 52d: Go's misread one of 800
 * digits, 1e13 as a far smaller number, and allowed it).
 */
export const MAX_NUMBER_CHARS = 64;

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parse `argv` strictly (unknown options and stray arguments are usage errors). */
export function parse(
  argv: string[],
  options: Options,
  required: string[],
): Record<string, string | boolean | undefined> {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  for (const name of required) {
    if (values[name] === undefined) throw new UsageError(`the option --${name} is required`);
  }
  // Review 52d: node reads argv's bytes that are not UTF-8 as U+FFFD, a value the operator
  // did not write (Go and C++ refuse the bytes themselves).
  for (const [name, value] of Object.entries(values)) {
    if (typeof value === "string" && value.includes("\ufffd")) {
      throw new UsageError(`--${name} is not valid UTF-8 (U+FFFD): ${quoted(value)}`);
    }
  }
  return values as Record<string, string | boolean | undefined>;
}

// The one grammar of every client's programs (tests/clients/smoke.py): Number() alone takes
// "0x10" as 16 and " 1" as 1, numbers the operator did not write.
const PLAIN_DECIMAL = /^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$/;
const PORT = /^[0-9]{1,5}$/;
// HOST (review 52d): a dotted quad, an RFC 1123 name (a numeric last label only as a dotted
// quad: gRPC's resolvers read 127.1 and 2130706433 their own ways) or [IPv6].
const OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// Review 52e: a name ending in a number is an address to the URL standard (0x7f.1 reached
// 127.0.0.1 here), so only a dotted quad may end in one; review 53b: a last label that starts
// with a digit (a.1b) Java's URI refused, so a name's last label starts with a letter (RFC
// 2396's toplabel), which covers both.
const TOP_LABEL = /^[A-Za-z]/;
const IPV6 = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/;
// PATH (review 52d): printable ASCII, none of %, ? and # (gRPC's URI syntax reached another
// file elsewhere: q?x.sock as q); // only as ///abs (the clients read //host/x apart).
const UNIX_PATH = /^((?!\/\/)[!-~]([ -~]*[!-~])?|\/\/\/[!-.0-~]([ -~]*[!-~])?)$/;
// Control and line-separator characters: grpc-js throws on some, a log line breaks on others.
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/g;

/**
 * `text` quoted on one line, control and line-separator characters escaped: a usage error's
 * last line names its option whatever the value holds (JSON.stringify leaves U+2028 and
 * U+0085 as they are).
 */
export function quoted(text: unknown): string {
  return JSON.stringify(String(text)).replace(
    CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * An ess-smoke line's words: split on ASCII whitespace only, as every client's ess-smoke
 * does (\s splits on U+2028 too, inside one word elsewhere).
 */
export function words(line: string): string[] {
  return line.split(/[ \t\n\v\f\r]+/).filter((word) => word !== "");
}

/**
 * `input`'s lines, split on "\n" only (a "\r" before it dropped), as every client's ess-smoke
 * splits them: readline also breaks at a bare "\r" (review 52d), inside one line elsewhere.
 * Each line's bytes are decoded strictly: one that is not valid UTF-8 is a usage error
 * (review 52e: a lenient decoder put U+FFFD in a coid and checked another order id).
 */
export async function* lines(
  input: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
): AsyncGenerator<string> {
  let number = 0;
  let pending: Buffer[] = []; // the current line's bytes so far, in chunks
  for await (const chunk of input) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
    let start = 0;
    let end: number;
    while ((end = bytes.indexOf(0x0a, start)) >= 0) {
      number += 1;
      yield utf8(Buffer.concat([...pending, bytes.subarray(start, end)]), number);
      pending = [];
      start = end + 1;
    }
    if (start < bytes.length) pending.push(bytes.subarray(start));
  }
  if (pending.length > 0) yield utf8(Buffer.concat(pending), number + 1);
}

/** Line `number`'s bytes, a "\r" at their end dropped, as text; a usage error if not UTF-8. */
function utf8(bytes: Buffer, number: number): string {
  const line = bytes.at(-1) === 0x0d ? bytes.subarray(0, -1) : bytes;
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(line);
  } catch {
    throw new UsageError(`line ${number} is not valid UTF-8: ${quoted(line.toString("utf8"))}`);
  }
}

/** A plain decimal number > 0 and finite, or a usage error naming the option. */
export function positive(name: string, text: string | boolean | undefined, fallback?: number): number {
  if (text === undefined && fallback !== undefined) return fallback;
  if (typeof text === "string" && text.length > MAX_NUMBER_CHARS) {
    throw new UsageError(`--${name} is longer than ${MAX_NUMBER_CHARS} characters`);
  }
  const value = typeof text === "string" && PLAIN_DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new UsageError(`--${name} must be a plain decimal number > 0, got ${quoted(text)}`);
  }
  return value;
}

/** A deadline in ms: from MIN_DEADLINE_MS to MAX_DEADLINE_MS, or a usage error. */
export function deadline(name: string, text: string | boolean | undefined, fallback?: number): number {
  const value = positive(name, text, fallback);
  if (value < MIN_DEADLINE_MS) {
    throw new UsageError(`--${name} must be at least ${MIN_DEADLINE_MS}, got ${quoted(text)}`);
  }
  if (value > MAX_DEADLINE_MS) {
    throw new UsageError(`--${name} must be at most ${MAX_DEADLINE_MS}, got ${quoted(text)}`);
  }
  return value;
}

/**
 * HOST:PORT or unix:PATH, or a usage error naming the option: a typo must not look like an
 * outage (a check that fails closed). Returned as gRPC is given it: HOST:PORT as
 * dns:///HOST:PORT, where gRPC would read a host that is one of its schemes as the scheme
 * (review 53b: "unix-abstract:1" reached the abstract Unix socket "1" in three clients).
 */
export function checkedTarget(name: string, text: string | boolean | undefined): string {
  const given = typeof text === "string" ? text : "";
  if (!isTarget(given)) {
    throw new UsageError(`--${name} must be HOST:PORT or unix:PATH, got ${quoted(text)}`);
  }
  return given.startsWith("unix:") ? given : `dns:///${given}`;
}

/**
 * The grammar of tests/clients/smoke.py: HOST (isHost), PORT 1-65535; PATH 1-107 characters
 * of printable ASCII, not led or ended by a space, none of %, ? and #, and // only as ///abs.
 */
export function isTarget(text: string): boolean {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    return path.length <= MAX_UNIX_PATH_BYTES && UNIX_PATH.test(path) && !/[%?#]/.test(path);
  }
  const colon = text.lastIndexOf(":");
  const port = text.slice(colon + 1);
  return colon > 0 && isHost(text.slice(0, colon)) && PORT.test(port) &&
    Number(port) >= 1 && Number(port) <= 65535;
}

/**
 * A dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may end it;
 * its last label starting with a letter), or [IPv6] as
 * net.isIPv6 reads it.
 */
function isHost(host: string): boolean {
  if (host.startsWith("[")) {
    const inside = host.slice(1, -1);
    return host.endsWith("]") && IPV6.test(inside) && isIPv6(inside);
  }
  if (IPV4.test(host)) return true;
  const labels = (host.endsWith(".") ? host.slice(0, -1) : host).split(".");
  return host.length <= MAX_HOST_CHARS && labels.every((label) => LABEL.test(label)) &&
    TOP_LABEL.test(labels[labels.length - 1]!);
}

/** `new GuardClient(...)`, a token or target it refuses all the same a usage error naming
 * it (review 54e: a refused token blamed --target), not a crash. */
export function client<T>(make: () => T): T {
  try {
    return make();
  } catch (error) {
    const option = error instanceof InvalidTokenError ? "token" : "target";
    throw new UsageError(`--${option}: ${quoted((error as Error)?.message ?? error)}`);
  }
}

/**
 * The option's value, or a usage error if it is empty or blank: an empty --coid would have
 * the library make one up that ess-check never prints.
 */
export function nonBlank(name: string, text: string | boolean | undefined): string {
  if (typeof text !== "string" || text.trim() === "") {
    throw new UsageError(`--${name} must not be empty`);
  }
  return text;
}

/** A whole number >= 1, or a usage error naming the option. */
export function count(name: string, text: string | boolean | undefined, fallback: number): number {
  const value = positive(name, text, fallback);
  if (!Number.isInteger(value)) {
    throw new UsageError(`--${name} must be a whole number, got ${quoted(text)}`);
  }
  return value;
}

/**
 * Run `main`; a UsageError prints the usage and, on a line of its own led by the program's
 * name as the other clients' programs do (review 53b), what was wrong, and exits 64;
 * anything else exits 1.
 */
export function run(usage: string, main: () => Promise<number>): void {
  const program = /^usage: (\S+)/.exec(usage)?.[1] ?? "ess";
  main().then(
    (code) => exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`${usage}\n${program}: ${error.message}\n`);
        exit(EX_USAGE);
      } else {
        process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
        exit(1);
      }
    },
  );
}

/** Exit once stdout and stderr are flushed. */
export function exit(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}
