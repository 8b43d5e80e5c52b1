// Runs sampling options through the built WASM engine's set_options under Node and prints, per row,
// the error message (or "accepted"): the WASM binding must refuse exactly what the native engine does.
// Usage: node tests/web/node_options.mjs PKG_DIR MODEL.bin ROWS_JSON
// ROWS_JSON: [[temperature, top_k, top_p, repetition_penalty], ...], numbers given as strings
// ("nan", "inf", "-inf" or decimal) so that JSON can carry them.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, modelPath, rowsJson] = process.argv.slice(2);
const glue = await import(pathToFileURL(resolve(pkgDir, "nano_wasm.js")).href);
glue.initSync({ module: readFileSync(join(pkgDir, "nano_wasm_bg.wasm")) });
const engine = new glue.WasmEngine(readFileSync(modelPath));
const num = (s) => ({ nan: NaN, inf: Infinity, "-inf": -Infinity })[s] ?? Number(s);
const out = JSON.parse(rowsJson).map(([t, k, p, r]) => {
  try {
    engine.set_options(4, num(t), num(k), num(p), num(r), 0n, false);
    return "accepted";
  } catch (err) {
    return String(err.message);
  }
});
console.log(JSON.stringify(out));
