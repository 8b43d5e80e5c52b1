// Runs the built WASM engine under Node (no browser): the kernels' golden hashes must equal the native
// kernel tests' values bit for bit; with a model file given, also greedy generation and interruption.
// It loads the plain SIMD128 build (nano_wasm_bg.wasm): the relaxed-SIMD one is checked in Chromium
// (Node 20's V8 still computes i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly, behind a flag).
// Usage: node tests/web/node_check.mjs PKG_DIR [MODEL.bin PROMPT MAX_NEW_TOKENS]
// Prints one JSON object on stdout.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, modelPath, prompt, maxNew] = process.argv.slice(2);
const glue = await import(pathToFileURL(resolve(pkgDir, "nano_wasm.js")).href);
glue.initSync({ module: readFileSync(join(pkgDir, "nano_wasm_bg.wasm")) });

const out = {
  version: glue.version(),
  golden: JSON.parse(glue.kernelGolden()),
  goldenExpected: glue.kernelGoldenExpected(),
  minus128: JSON.parse(glue.kernelMinus128Check()),
};

if (modelPath) {
  const engine = new glue.WasmEngine(readFileSync(modelPath));
  engine.set_options(Number(maxNew), 0, 0, 1, 1, 0n, false);
  let text = "";
  const full = engine.generate(prompt, (piece) => {
    text += piece;
    return true;
  });
  out.greedy = { text, generated: full.generated_tokens, interrupted: full.interrupted };
  // A falsy callback result interrupts after the first token.
  const stopped = engine.generate(prompt, () => false);
  out.interrupt = { generated: stopped.generated_tokens, interrupted: stopped.interrupted };
  try {
    new glue.WasmEngine(new Uint8Array([1, 2, 3, 4]));
    out.corrupt = "accepted";
  } catch (err) {
    out.corrupt = String(err.message);
  }
}
console.log(JSON.stringify(out));
