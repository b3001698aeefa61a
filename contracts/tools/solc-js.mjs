#!/usr/bin/env node
// A `solc` executable for crytic-compile / Slither, backed by the pinned npm solc-js
// (node_modules/solc), so static analysis runs offline with the compiler the project uses.
// Usage (as crytic-compile calls it):
//   contracts/tools/solc-js.mjs --version
//   contracts/tools/solc-js.mjs --standard-json [--allow-paths DIR] < input.json > output.json
// Sources given as {"urls": [path]} are read from disk relative to the working directory;
// imports are read relative to the working directory after remapping. Unless the input
// already has them, the OpenZeppelin remapping and the EVM version of contracts/compile.mjs
// are added, so the analysed code is the code `make contracts` compiles.
import { readFileSync, existsSync } from "node:fs";
import { resolve, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);

if (args.includes("--version")) {
  console.log("solc, the solidity compiler commandline interface (solc-js)");
  console.log(`Version: ${solc.version()}`);
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  console.error("solc-js.mjs: only --version and --standard-json are supported");
  process.exit(2);
}

const input = JSON.parse(readFileSync(0, "utf8"));
input.settings ??= {};
input.settings.remappings ??= [];
if (!input.settings.remappings.some((r) => r.startsWith("@openzeppelin/"))) {
  // The same files compile.mjs resolves with require.resolve("@openzeppelin/...").
  const oz = relative(process.cwd(), join(root, "node_modules", "@openzeppelin")).split("\\").join("/");
  input.settings.remappings.push(`@openzeppelin/=${oz}/`);
}
input.settings.evmVersion ??= "cancun";

function readSource(path) {
  const p = resolve(process.cwd(), path);
  return existsSync(p) ? { contents: readFileSync(p, "utf8") } : { error: `file not found: ${path}` };
}

for (const [name, src] of Object.entries(input.sources ?? {})) {
  if (src.content === undefined && Array.isArray(src.urls)) {
    const found = src.urls.map(readSource).find((r) => r.contents !== undefined);
    if (found) input.sources[name] = { content: found.contents };
  }
}

process.stdout.write(solc.compile(JSON.stringify(input), { import: readSource }));
