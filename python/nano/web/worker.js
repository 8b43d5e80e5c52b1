// The engine's Web Worker: loads the WASM engine at start-up and runs every request off the page's
// main thread, so the page stays responsive while the model computes.
//
// Threads: `worker.js?threads=N` asks for an engine of N threads. With N > 1, where this worker is
// cross-origin isolated (SharedArrayBuffer exists), it loads the shared-memory build
// (pkg/nano_wasm_mt*.js/wasm) and, for every model it loads, starts N - 1 Web Workers (team_worker.js)
// over the same memory, which run the engine's team workers. Otherwise (N = 1, or not isolated) it
// loads the single-thread build (one thread needs no shared memory, and that build has measured at
// least as fast there, docs/performance.md "The browser page") and N is 1; so does a shared-memory
// build that fails to start. `?build=single` forces the single-thread build.
//
// Protocol (page -> worker): {id, type, ...}; the worker answers each request with exactly one
// {id, type: "ok", ...} or {id, type: "error", message, fatal}; generation also streams
// {id, type: "piece", text, tokens} (the text of `tokens` new tokens) before its final "ok".
// Requests are handled one at a time, in order.
// Unsolicited: {type: "ready", version, simd, threads, shared} once (simd: "relaxed-simd" or
// "simd128", the build in use; threads: the engine's thread count; shared: whether the build has
// shared memory), or {type: "fatal", message} when the engine cannot start.
//   load   {bytes: ArrayBuffer}            -> ok {info}       (the old model stays on error)
//   lora   {bytes: ArrayBuffer}            -> ok {info}
//   unlora {}                              -> ok {info}
//   generate {prompt, options}             -> piece*, ok {stats}
//   chat   {messages, options}             -> piece*, ok {stats}   (messages: [{role, content}], ending with
//                                             the user's turn, rendered with the model's chat template)
//   chatIds {messages}                     -> ok {ids}        (the prompt ids chat generates after)
//   golden {}                              -> ok {got, expected, minus128}   (kernels' self-checks)
//   stopFlag {flag: SharedArrayBuffer}     -> ok   (generation stops when flag[0] != 0)
const PIECE_INTERVAL_MS = 50;

let engine = null;
let wasm = null; // the module's bindings (imported once the build is chosen)
let stopFlag = null; // Int32Array over a SharedArrayBuffer, when the page is cross-origin isolated

function info() {
  return engine ? JSON.parse(engine.info()) : null;
}

function errorMessage(err) {
  if (err instanceof Error) return err.message;
  return String(err);
}

const handlers = {
  async load({ bytes }) {
    const next = new wasm.WasmEngine(new Uint8Array(bytes), threads);
    try {
      await startTeam(next);
    } catch (err) {
      next.free(); // its team workers end
      throw err;
    }
    if (engine) engine.free();
    engine = next;
    return { info: info() };
  },
  lora({ bytes }) {
    requireModel();
    engine.load_lora(new Uint8Array(bytes));
    return { info: info() };
  },
  unlora() {
    requireModel();
    engine.unload_lora();
    return { info: info() };
  },
  chatIds({ messages }) {
    requireModel();
    return { ids: Array.from(engine.chat_prompt_ids(JSON.stringify(messages))) };
  },
  chat({ messages, options }, id) {
    return handlers.generate({ messages, options }, id);
  },
  generate({ prompt, messages, options }, id) {
    requireModel();
    const o = options;
    engine.set_options(o.maxNewTokens, o.temperature, o.topK, o.topP, o.repetitionPenalty,
      BigInt(o.seed), o.instruct);
    if (stopFlag) Atomics.store(stopFlag, 0, 0);
    // Pieces are batched: posted at most every PIECE_INTERVAL_MS (and at the end), so the page's main
    // thread handles a few dozen messages a second instead of one per token; on a small machine it
    // would otherwise compete with this worker for the CPU.
    let text = "";
    let tokens = 0;
    let last = performance.now();
    const flush = () => {
      if (text) postMessage({ id, type: "piece", text, tokens });
      text = "";
      tokens = 0;
      last = performance.now();
    };
    const onPiece = (piece) => {
      text += piece;
      tokens += 1;
      if (performance.now() - last >= PIECE_INTERVAL_MS) flush();
      return !(stopFlag && Atomics.load(stopFlag, 0) !== 0);
    };
    const stats = messages
      ? engine.chat(JSON.stringify(messages), onPiece)
      : engine.generate(prompt, onPiece);
    flush();
    const out = {
      promptTokens: stats.prompt_tokens,
      generatedTokens: stats.generated_tokens,
      prefillSecs: stats.prefill_secs,
      decodeSecs: stats.decode_secs,
      decodeTokensPerSec: stats.decode_tokens_per_sec,
      interrupted: stats.interrupted,
    };
    stats.free();
    return { stats: out };
  },
  golden() {
    return {
      got: wasm.kernelGolden(),
      expected: wasm.kernelGoldenExpected(),
      minus128: wasm.kernelMinus128Check(),
    };
  },
  stopFlag({ flag }) {
    stopFlag = new Int32Array(flag);
    return {};
  },
};

function requireModel() {
  if (!engine) throw new Error("no model loaded: choose a model file first");
}

/**
 * Starts a Web Worker for each of `next`'s team workers, over this instance's module and memory;
 * resolves once every one runs (so a failure to start one is reported with the load).
 */
function startTeam(next) {
  const ids = Array.from(next.take_team_workers());
  return Promise.all(
    ids.map(
      (id) =>
        new Promise((resolve, reject) => {
          const w = new Worker(new URL("team_worker.js", import.meta.url), { type: "module" });
          let running = false;
          w.onmessage = ({ data }) => {
            if (data.type === "running") {
              running = true;
              resolve();
            } else if (running) {
              // Failed after it started: the engine's thread does that worker's share from now on.
              console.error(data.message);
            } else {
              reject(new Error(data.message));
            }
          };
          w.onerror = (event) => reject(new Error(`cannot start a team worker: ${event.message || "no script"}`));
          w.postMessage({ module: wasmModule, memory: wasmMemory, id });
        }),
    ),
  );
}

// A module using i32x4.relaxed_dot_i8x16_i7x16_add_s and f32x4.relaxed_madd: where the browser validates
// it, the relaxed-SIMD build (faster, bit-identical quantized results) is loaded, else the plain SIMD128
// one. `worker.js?simd=simd128` forces the plain build (tests compare both).
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 123, 1, 123, 3, 2, 1, 0, 10, 23, 1, 21, 0, 32, 0, 32, 0,
  32, 0, 253, 147, 2, 32, 0, 32, 0, 32, 0, 253, 133, 2, 26, 11,
]);
const params = new URL(import.meta.url).searchParams;
const simd =
  params.get("simd") === "simd128" || !WebAssembly.validate(RELAXED_PROBE) ? "simd128" : "relaxed-simd";
// Shared memory needs cross-origin isolation (COOP + COEP), which also gives SharedArrayBuffer.
const asked = Math.max(1, Math.floor(Number(params.get("threads"))) || 1);
let shared =
  asked > 1 &&
  params.get("build") !== "single" &&
  self.crossOriginIsolated === true &&
  typeof SharedArrayBuffer === "function";
let threads = shared ? asked : 1;
let wasmModule = null; // the compiled module and memory that team workers instantiate again
let wasmMemory = null;

async function load(build) {
  const file = `${build}${simd === "relaxed-simd" ? "_relaxed" : ""}_bg.wasm`;
  const glue = await import(`./pkg/${build}.js`);
  const module = await WebAssembly.compileStreaming(fetch(new URL(`./pkg/${file}`, import.meta.url)));
  const exports = await glue.default({ module_or_path: module });
  [wasm, wasmModule, wasmMemory] = [glue, module, exports.memory];
}

async function start() {
  if (!shared) return load("nano_wasm");
  try {
    await load("nano_wasm_mt");
  } catch (err) {
    // e.g. a browser that cannot reserve the shared memory's maximum: one thread still works.
    console.warn(`the threaded engine did not start (${errorMessage(err)}); using one thread`);
    [shared, threads] = [false, 1];
    await load("nano_wasm");
  }
}

const ready = start().then(
  () => {
    postMessage({ type: "ready", version: wasm.version(), simd, threads, shared: wasm.sharedMemory() });
    return true;
  },
  (err) => {
    postMessage({ type: "fatal", message: `cannot start the WASM engine: ${errorMessage(err)}` });
    return false;
  },
);

// One request at a time, in order (a load waits for its team workers to start).
let queue = ready;
self.onmessage = (event) => {
  const msg = event.data;
  queue = queue.then(async (ok) => {
    if (!ok) return false;
    const handler = handlers[msg.type];
    try {
      if (!handler) throw new Error(`unknown request ${msg.type}`);
      postMessage({ id: msg.id, type: "ok", ...(await handler(msg, msg.id)) });
    } catch (err) {
      // A WebAssembly.RuntimeError is a trap (a Rust panic): the instance may be inconsistent, so the
      // page must start a fresh worker. Ordinary errors (bad file, bad option) leave the engine usable.
      const fatal = err instanceof WebAssembly.RuntimeError;
      postMessage({ id: msg.id, type: "error", message: errorMessage(err), fatal });
    }
    return true;
  });
};
