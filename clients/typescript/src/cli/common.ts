// What ess-check, ess-smoke and ess-bench share: argument checks and the exit codes.

import { parseArgs, type ParseArgsConfig } from "node:util";

export const EX_USAGE = 64;
/** A longer deadline is a typo (and setTimeout would take it for 1 ms). */
export const MAX_DEADLINE_MS = 3_600_000;

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
  return values as Record<string, string | boolean | undefined>;
}

// The one grammar of every client's programs (tests/clients/smoke.py): Number() alone takes
// "0x10" as 16 and " 1" as 1, numbers the operator did not write.
const PLAIN_DECIMAL = /^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$/;
const HOST_PORT = /^(\[[^ \t\n\x0B\f\r/[\]]+\]|[^ \t\n\x0B\f\r/:[\]]+):([0-9]{1,5})$/;
const EDGE_WHITESPACE = /^[ \t\n\x0B\f\r]|[ \t\n\x0B\f\r]$/;

/** A plain decimal number > 0 and finite, or a usage error naming the option. */
export function positive(name: string, text: string | boolean | undefined, fallback?: number): number {
  if (text === undefined && fallback !== undefined) return fallback;
  const value = typeof text === "string" && PLAIN_DECIMAL.test(text) ? Number(text) : Number.NaN;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new UsageError(`--${name} must be a plain decimal number > 0, got ${String(text)}`);
  }
  return value;
}

/** A deadline in ms: a number > 0, finite and at most MAX_DEADLINE_MS, or a usage error. */
export function deadline(name: string, text: string | boolean | undefined, fallback?: number): number {
  const value = positive(name, text, fallback);
  if (value > MAX_DEADLINE_MS) {
    throw new UsageError(`--${name} must be at most ${MAX_DEADLINE_MS}, got ${String(text)}`);
  }
  return value;
}

/**
 * HOST:PORT or unix:PATH, or a usage error naming the option: a typo must not look like an
 * outage (a check that fails closed).
 */
export function checkedTarget(name: string, text: string | boolean | undefined): string {
  const given = typeof text === "string" ? text : "";
  const path = given.startsWith("unix:") ? given.slice("unix:".length) : undefined;
  const port = path === undefined ? HOST_PORT.exec(given)?.[2] : undefined;
  const good = path !== undefined
    ? path !== "" && !EDGE_WHITESPACE.test(path)
    : port !== undefined && Number(port) >= 1 && Number(port) <= 65535;
  if (!good) {
    throw new UsageError(`--${name} must be HOST:PORT or unix:PATH, got ${JSON.stringify(text)}`);
  }
  return given;
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
  if (!Number.isInteger(value)) throw new UsageError(`--${name} must be a whole number, got ${String(text)}`);
  return value;
}

/** Run `main`; a UsageError prints the usage and exits 64, anything else exits 1. */
export function run(usage: string, main: () => Promise<number>): void {
  main().then(
    (code) => exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`${usage}\n${error.message}\n`);
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
