// The committed stubs src/gen/ are what `make proto` generates from ../../proto now: this
// regenerates them into a temporary directory with the repository's pinned buf (the root
// package.json; $BUF overrides) and this package's protoc-gen-es, and compares byte for byte.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const PACKAGE = fileURLToPath(new URL("../..", import.meta.url)); // dist/test/ -> package

function files(root: string, dir = root): Map<string, string> {
  const found = new Map<string, string>();
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      for (const [k, v] of files(root, path)) found.set(k, v);
    } else {
      found.set(relative(root, path), readFileSync(path, "utf8"));
    }
  }
  return found;
}

test("src/gen is up to date with proto/ (else: make -C clients/typescript proto)", () => {
  const out = mkdtempSync(join(tmpdir(), "ess-ts-gen-"));
  try {
    execFileSync(
      process.env.BUF || join(PACKAGE, "..", "..", "node_modules", ".bin", "buf"),
      ["generate", join(PACKAGE, "..", ".."), "--template", "buf.gen.yaml", "--output", out],
      { cwd: PACKAGE, stdio: ["ignore", "inherit", "inherit"] },
    );
    const fresh = files(join(out, "src", "gen"));
    const committed = files(join(PACKAGE, "src", "gen"));
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort());
    for (const [name, text] of fresh) {
      assert.ok(committed.get(name) === text, `src/gen/${name} is stale: run make -C clients/typescript proto`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
