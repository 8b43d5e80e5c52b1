// The page: UI state and the conversation with the engine's Web Worker (see worker.js for the protocol).

const $ = (id) => document.getElementById(id);

const ui = {
  engineStatus: $("engine-status"),
  dropZone: $("drop-zone"),
  modelFile: $("model-file"),
  modelInfo: $("model-info"),
  loraFile: $("lora-file"),
  loraUnload: $("lora-unload"),
  loraInfo: $("lora-info"),
  modeContinue: $("mode-continue"),
  modeInstruct: $("mode-instruct"),
  promptTitle: $("prompt-title"),
  prompt: $("prompt"),
  generate: $("generate"),
  stop: $("stop"),
  speed: $("speed"),
  outputPrompt: $("output-prompt"),
  generated: $("generated"),
  stats: $("stats"),
  error: $("error"),
};

// What the page must be able to restore in a fresh worker (after a trap, or a stop without
// SharedArrayBuffer): the bytes of the model and LoRA that loaded successfully.
const loaded = { model: null, modelName: "", description: "", lora: null, loraName: "" };
const state = { ready: false, busy: false, generating: false, version: "" };

let worker = null;
let nextId = 1;
const pending = new Map(); // id -> {resolve, reject, onPiece}
let stopFlag = null; // Int32Array over a SharedArrayBuffer when cross-origin isolated

function setState(name) {
  document.body.dataset.state = name;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function refreshControls() {
  const idle = state.ready && !state.busy;
  ui.generate.disabled = !(idle && loaded.model);
  ui.stop.disabled = !state.generating;
  ui.modelFile.disabled = !idle;
  ui.loraFile.disabled = !(idle && loaded.model);
  ui.loraUnload.disabled = !(idle && loaded.lora);
  ui.dropZone.classList.toggle("disabled", !idle);
  setState(!state.ready ? "starting" : state.generating ? "generating" : state.busy ? "busy" : "idle");
}

// ---- worker -------------------------------------------------------------------------------------------

function startWorker() {
  state.ready = false;
  refreshControls();
  worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "ready") {
        state.version = msg.version;
        ui.engineStatus.textContent = `Engine ${msg.version} ready (WebAssembly ${msg.simd}${
          self.crossOriginIsolated ? ", cross-origin isolated" : ""}).`;
        ui.engineStatus.dataset.version = msg.version;
        ui.engineStatus.dataset.simd = msg.simd;
        if (self.crossOriginIsolated) {
          stopFlag = new Int32Array(new SharedArrayBuffer(4));
          request({ type: "stopFlag", flag: stopFlag.buffer });
        }
        state.ready = true;
        refreshControls();
        resolve();
        return;
      }
      if (msg.type === "fatal") {
        ui.engineStatus.textContent = msg.message;
        showError(msg.message);
        reject(new Error(msg.message));
        return;
      }
      const entry = pending.get(msg.id);
      if (!entry) return;
      if (msg.type === "piece") {
        entry.onPiece?.(msg.text, msg.tokens);
      } else {
        pending.delete(msg.id);
        if (msg.type === "ok") entry.resolve(msg);
        else entry.reject(Object.assign(new Error(msg.message), { fatal: msg.fatal }));
      }
    };
    worker.onerror = (event) => {
      const message = `the engine's worker failed: ${event.message || "could not load it"}`;
      ui.engineStatus.textContent = message;
      showError(message);
      reject(new Error(message));
    };
  });
}

/** Sends a copy of the bytes to the worker (transferred, not cloned: the page keeps its own copy). */
function withCopy(msg, bytes) {
  const copy = bytes.slice(0);
  return [{ ...msg, bytes: copy }, [copy]];
}

function request(msg, transfer = [], onPiece = null) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onPiece });
    worker.postMessage({ ...msg, id }, transfer);
  });
}

/** A fresh worker with the last good model (and LoRA) loaded again. */
async function restartWorker() {
  worker.terminate();
  for (const entry of pending.values()) entry.reject(Object.assign(new Error("engine restarted"), { restarted: true }));
  pending.clear();
  await startWorker();
  if (loaded.model) await request(...withCopy({ type: "load" }, loaded.model));
  if (loaded.lora) await request(...withCopy({ type: "lora" }, loaded.lora));
}

/** Runs one request with the controls locked; shows its error, restarting the worker after a trap. */
async function run(task) {
  state.busy = true;
  showError("");
  refreshControls();
  try {
    return await task();
  } catch (err) {
    if (!err.restarted) showError(err.message);
    if (err.fatal) {
      try {
        await restartWorker();
      } catch (restartErr) {
        showError(`${err.message}; restarting the engine failed: ${restartErr.message}`);
      }
    }
    return null;
  } finally {
    state.busy = false;
    state.generating = false;
    refreshControls();
  }
}

// ---- model and LoRA files -----------------------------------------------------------------------------

function describeModel(info, name) {
  const c = info.config;
  const params = c.n_layer && c.n_embd ? ` · ${c.n_layer} layers × ${c.n_embd} wide, ${c.n_head} heads` : "";
  return `${name}: ${info.dtype}${params} · context ${c.block_size} · vocabulary ${info.vocab_size}`;
}

async function loadModel(file) {
  if (!file) return;
  await run(async () => {
    ui.modelInfo.textContent = `Loading ${file.name}…`;
    const bytes = await file.arrayBuffer();
    try {
      const reply = await request(...withCopy({ type: "load" }, bytes));
      loaded.model = bytes;
      loaded.modelName = file.name;
      loaded.lora = null;
      loaded.loraName = "";
      loaded.description = describeModel(reply.info, file.name);
      ui.modelInfo.textContent = loaded.description;
      ui.modelInfo.dataset.loaded = file.name;
      ui.loraInfo.textContent = "No LoRA loaded.";
      delete ui.loraInfo.dataset.loaded;
    } catch (err) {
      // The worker keeps the previous model when a load fails.
      ui.modelInfo.textContent = loaded.model ? loaded.description : "No model loaded.";
      throw new Error(`cannot load ${file.name}: ${err.message}`, { cause: err });
    }
  });
}

async function loadLora(file) {
  if (!file) return;
  await run(async () => {
    const bytes = await file.arrayBuffer();
    try {
      await request(...withCopy({ type: "lora" }, bytes));
    } catch (err) {
      throw new Error(`cannot load the LoRA ${file.name}: ${err.message}`, { cause: err });
    }
    loaded.lora = bytes;
    loaded.loraName = file.name;
    ui.loraInfo.textContent = `LoRA ${file.name} loaded.`;
    ui.loraInfo.dataset.loaded = file.name;
  });
}

async function unloadLora() {
  await run(async () => {
    await request({ type: "unlora" });
    loaded.lora = null;
    loaded.loraName = "";
    ui.loraInfo.textContent = "No LoRA loaded.";
    delete ui.loraInfo.dataset.loaded;
  });
}

// ---- generation ---------------------------------------------------------------------------------------

function readNumber(input, name, { integer = false, min = -Infinity, max = Infinity } = {}) {
  const text = input.value.trim();
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    const range = max === Infinity ? `≥ ${min}` : `between ${min} and ${max}`;
    throw new Error(`${name} must be ${integer ? "a whole number" : "a number"} ${range} (got "${text}")`);
  }
  return value;
}

function readOptions() {
  const seedText = $("seed").value.trim();
  if (!/^\d+$/.test(seedText) || BigInt(seedText) >= 2n ** 64n) {
    throw new Error(`the seed must be a whole number from 0 to 2^64-1 (got "${seedText}")`);
  }
  return {
    temperature: readNumber($("temperature"), "temperature", { min: 0 }),
    topK: readNumber($("top-k"), "top-k", { integer: true, min: 0, max: 2 ** 32 - 1 }),
    topP: readNumber($("top-p"), "top-p", { min: 0, max: 1 }),
    repetitionPenalty: readNumber($("repetition-penalty"), "repetition penalty", { min: Number.MIN_VALUE }),
    maxNewTokens: readNumber($("max-tokens"), "max new tokens", { integer: true, min: 1, max: 2 ** 32 - 1 }),
    seed: seedText,
    instruct: ui.modeInstruct.checked,
  };
}

async function generate() {
  let options;
  try {
    options = readOptions();
  } catch (err) {
    showError(err.message);
    return;
  }
  const prompt = ui.prompt.value;
  if (!prompt) {
    showError("type a prompt first");
    return;
  }
  ui.outputPrompt.textContent = options.instruct ? `Q: ${prompt}\nA: ` : prompt;
  ui.generated.textContent = "";
  ui.stats.textContent = "";
  ui.speed.textContent = "";
  delete ui.generated.dataset.done;
  state.generating = true;
  const started = performance.now();
  let pieces = 0;
  const reply = await run(() =>
    request({ type: "generate", prompt, options }, [], (text, tokens) => {
      ui.generated.textContent += text;
      pieces += tokens;
      const secs = (performance.now() - started) / 1e3;
      if (secs > 0.25) ui.speed.textContent = `≈ ${(pieces / secs).toFixed(1)} tokens/s`;
    }),
  );
  if (reply) {
    const s = reply.stats;
    const rate = s.decodeTokensPerSec > 0 ? `${s.decodeTokensPerSec.toFixed(1)} tokens/s` : "—";
    ui.speed.textContent = rate;
    ui.speed.dataset.tokensPerSec = String(s.decodeTokensPerSec);
    ui.stats.textContent =
      `${s.generatedTokens} tokens generated after a ${s.promptTokens}-token prompt` +
      `${s.interrupted ? " (stopped)" : ""}; prompt ${(s.prefillSecs * 1e3).toFixed(0)} ms, ` +
      `decoding ${rate}.`;
  }
  ui.generated.dataset.done = "1";
}

async function stop() {
  if (!state.generating) return;
  if (stopFlag) {
    Atomics.store(stopFlag, 0, 1); // the worker's piece callback sees it and ends the generation
  } else {
    // No shared memory (page not cross-origin isolated): end the worker and restore the model.
    await restartWorker().catch((err) => showError(`restarting the engine failed: ${err.message}`));
  }
}

// ---- wiring -------------------------------------------------------------------------------------------

function updateMode() {
  const instruct = ui.modeInstruct.checked;
  ui.promptTitle.textContent = instruct ? "Question" : "Text to continue";
  ui.prompt.placeholder = instruct ? "Ask a question…" : "Type the beginning of a text…";
}

ui.modelFile.addEventListener("change", () => {
  loadModel(ui.modelFile.files[0]);
  ui.modelFile.value = "";
});
ui.loraFile.addEventListener("change", () => {
  loadLora(ui.loraFile.files[0]);
  ui.loraFile.value = "";
});
ui.loraUnload.addEventListener("click", unloadLora);
ui.generate.addEventListener("click", generate);
ui.stop.addEventListener("click", stop);
ui.modeContinue.addEventListener("change", updateMode);
ui.modeInstruct.addEventListener("change", updateMode);
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !ui.generate.disabled) generate();
});

// Drag and drop a model file anywhere on the page.
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => {
    event.preventDefault();
    ui.dropZone.classList.add("hover");
  });
}
document.addEventListener("dragleave", (event) => {
  if (event.target === document.documentElement || event.target === ui.dropZone) ui.dropZone.classList.remove("hover");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.dropZone.classList.remove("hover");
  const file = event.dataTransfer?.files?.[0];
  if (file && state.ready && !state.busy) loadModel(file);
});

updateMode();
refreshControls();
startWorker().catch(() => setState("failed"));
