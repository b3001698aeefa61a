// Compile contracts/*.sol with the pinned solc-js and write committed artifacts to contracts/artifacts/.
// Usage: node contracts/compile.mjs [--out DIR]   (make contracts)
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const outIdx = process.argv.indexOf("--out");
const outDir = outIdx > 0 ? process.argv[outIdx + 1] : join(here, "artifacts");

export const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function solFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (name === "artifacts" || name === "node_modules") continue;
    if (statSync(p).isDirectory()) out.push(...solFiles(p));
    else if (name.endsWith(".sol")) out.push(p);
  }
  return out;
}

// The same hash is recomputed in Python (sim/artifacts.py: sources_hash) to detect stale artifacts.
function sourcesHash(files) {
  const h = createHash("sha256");
  for (const f of files) {
    h.update(relative(root, f).split("\\").join("/"));
    h.update("\0");
    h.update(readFileSync(f));
    h.update("\0");
  }
  return h.digest("hex");
}

function findImport(path) {
  try {
    return { contents: readFileSync(require.resolve(path), "utf8") };
  } catch (e) {
    return { error: `import not found: ${path}` };
  }
}

const files = solFiles(here);
const sources = {};
for (const f of files) sources[relative(root, f).split("\\").join("/")] = { content: readFileSync(f, "utf8") };
const input = { language: "Solidity", sources, settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

// Interfaces whose ABI is also written as an artifact (no bytecode: "bytecode" and
// "deployedBytecode" are "0x"), e.g. for decoding the exchange's events and errors.
// They are listed under "interfaces" in the manifest, not under "contracts".
const ABI_ONLY = { IMarginExchange: "contracts/interfaces/IMarginExchange.sol" };

const ozVersion = JSON.parse(readFileSync(require.resolve("@openzeppelin/contracts/package.json"), "utf8")).version;
mkdirSync(outDir, { recursive: true });
const names = [];
for (const [source, contracts] of Object.entries(output.contracts)) {
  if (!source.startsWith("contracts/")) continue;
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object || c.abi.length === 0) continue; // interfaces, internal libraries
    names.push(name);
    const artifact = {
      contractName: name,
      sourceName: source,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    writeFileSync(join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  }
}
const interfaces = [];
for (const [name, source] of Object.entries(ABI_ONLY)) {
  const c = output.contracts[source]?.[name];
  if (!c) {
    console.error(`ABI-only artifact: ${name} not found in ${source}`);
    process.exit(1);
  }
  interfaces.push(name);
  const artifact = { contractName: name, sourceName: source, abi: c.abi, bytecode: "0x", deployedBytecode: "0x" };
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
}
const manifest = {
  compiler: `solc-js ${solc.version()}`,
  openzeppelin: ozVersion,
  settings: SETTINGS,
  sourcesHash: sourcesHash(files),
  sources: files.map((f) => relative(root, f).split("\\").join("/")),
  contracts: names.sort(),
  interfaces: interfaces.sort(),
};
writeFileSync(join(outDir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`compiled ${names.length} contracts (+ ${interfaces.length} ABI-only) with ${manifest.compiler} -> ${relative(root, outDir) || outDir}`);
