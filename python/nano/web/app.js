// The page: UI state and the conversation with the engine's Web Worker (see worker.js for the protocol).
import { Conversation } from "./chat.js";
import { Speaker } from "./speech.js";
import { formatSize, openStore, saveError } from "./storage.js";

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
  modeChat: $("mode-chat"),
  conversation: $("conversation"),
  chatClear: $("chat-clear"),
  output: $("output"),
  remember: $("remember"),
  storedList: $("stored-list"),
  storedStatus: $("stored-status"),
  servedTitle: $("served-title"),
  servedList: $("served-list"),
  promptTitle: $("prompt-title"),
  prompt: $("prompt"),
  generate: $("generate"),
  stop: $("stop"),
  speed: $("speed"),
  outputPrompt: $("output-prompt"),
  generated: $("generated"),
  stats: $("stats"),
  error: $("error"),
  threads: $("threads"),
  threadsNote: $("threads-note"),
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
  ui.chatClear.disabled = !idle || chat.turns.length === 0;
  chat.setLocked(!idle);
  ui.modelFile.disabled = !idle;
  ui.threads.disabled = !idle || !isolated;
  ui.loraFile.disabled = !(idle && loaded.model);
  ui.loraUnload.disabled = !(idle && loaded.lora);
  ui.dropZone.classList.toggle("disabled", !idle);
  for (const button of document.querySelectorAll(".files button")) {
    button.disabled = !idle || (button.dataset.kind === "lora" && button.dataset.action === "load" && !loaded.model);
  }
  setState(!state.ready ? "starting" : state.generating ? "generating" : state.busy ? "busy" : "idle");
}

// ---- threads ------------------------------------------------------------------------------------------

// The engine runs on several threads (Web Workers over shared WASM memory) only where the page is
// cross-origin isolated (the server sends COOP/COEP); elsewhere on one (the single-thread build, which
// worker.js also loads for a setting of 1). The default is the device's
// logical CPUs up to DEFAULT_THREADS_CAP (decoding gains little beyond, and phones' extra cores are
// slow ones). The setting is remembered and goes up to THREADS_PER_CPU per logical CPU (as the native
// engine allows: threads beyond the CPUs only take turns) and MAX_THREADS (the WASM engine's limit);
// both copy the engines' constants (tests/test_contracts.py checks them).
const isolated = self.crossOriginIsolated === true && typeof SharedArrayBuffer === "function";
const DEFAULT_THREADS_CAP = 4;
const MAX_THREADS = 16;
const THREADS_PER_CPU = 4;
const THREADS_KEY = "nano.threads";
const cpus = Math.max(1, Math.floor(navigator.hardwareConcurrency) || 1);
const maxThreads = isolated ? Math.min(cpus * THREADS_PER_CPU, MAX_THREADS) : 1;

function clampThreads(n) {
  return Math.min(maxThreads, Math.max(1, Math.floor(n) || 1));
}

function savedThreads() {
  try {
    const saved = Number(localStorage.getItem(THREADS_KEY));
    if (saved > 0) return clampThreads(saved);
  } catch {
    // storage unavailable (private mode, disabled): the default
  }
  return clampThreads(Math.min(cpus, DEFAULT_THREADS_CAP));
}

let threads = savedThreads();
ui.threads.max = String(maxThreads);
ui.threads.value = String(threads);
ui.threads.disabled = !isolated;
ui.threadsNote.textContent = isolated ? `(1–${maxThreads})` : "(1: the page is not cross-origin isolated)";

async function changeThreads() {
  const next = clampThreads(Number(ui.threads.value));
  ui.threads.value = String(next);
  if (next === threads) return;
  threads = next;
  try {
    localStorage.setItem(THREADS_KEY, String(next));
  } catch {
    // not remembered; still used now
  }
  // A fresh worker with the new count, and the model loaded again into it.
  await run(() => restartWorker());
}

// ---- worker -------------------------------------------------------------------------------------------

function startWorker() {
  state.ready = false;
  refreshControls();
  worker = new Worker(new URL(`worker.js?threads=${threads}`, import.meta.url), { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "ready") {
        state.version = msg.version;
        const plural = msg.threads === 1 ? "thread" : "threads";
        ui.engineStatus.textContent = `Engine ${msg.version} ready (WebAssembly ${msg.simd}, ${msg.threads} ${
          plural}${self.crossOriginIsolated ? ", cross-origin isolated" : ""}).`;
        ui.engineStatus.dataset.version = msg.version;
        ui.engineStatus.dataset.simd = msg.simd;
        ui.engineStatus.dataset.threads = String(msg.threads);
        ui.engineStatus.dataset.shared = String(msg.shared); // the shared-memory (threads) build
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

/** A file the user picked or dropped: its bytes, remembered in the browser once loaded (if asked). */
function pickedFile(file) {
  return { name: file.name, read: () => file.arrayBuffer(), remember: ui.remember.checked };
}

async function loadModel(source) {
  if (!source) return;
  await run(async () => {
    const { name } = source;
    ui.modelInfo.textContent = `Loading ${name}…`;
    let bytes;
    try {
      bytes = await source.read();
      const reply = await request(...withCopy({ type: "load" }, bytes));
      loaded.model = bytes;
      loaded.modelName = name;
      loaded.lora = null;
      loaded.loraName = "";
      loaded.description = describeModel(reply.info, name);
      ui.modelInfo.textContent = loaded.description;
      ui.modelInfo.dataset.loaded = name;
      ui.loraInfo.textContent = "No LoRA loaded.";
      delete ui.loraInfo.dataset.loaded;
    } catch (err) {
      // The worker keeps the previous model when a load fails.
      ui.modelInfo.textContent = loaded.model ? loaded.description : "No model loaded.";
      throw new Error(`cannot load ${name}: ${err.message}`, { cause: err });
    }
    if (source.remember) await remember("model", name, bytes);
  });
}

async function loadLora(source) {
  if (!source) return;
  await run(async () => {
    const { name } = source;
    let bytes;
    try {
      bytes = await source.read();
      await request(...withCopy({ type: "lora" }, bytes));
    } catch (err) {
      throw new Error(`cannot load the LoRA ${name}: ${err.message}`, { cause: err });
    }
    loaded.lora = bytes;
    loaded.loraName = name;
    ui.loraInfo.textContent = `LoRA ${name} loaded.`;
    ui.loraInfo.dataset.loaded = name;
    if (source.remember) await remember("lora", name, bytes);
  });
}

// ---- remembered files (storage.js) and the server's model folder ---------------------------------------

let store = null; // the browser's store, once open
let storeOpening = null; // openStorage()'s promise

/** Saves a loaded file in the browser's store; a failure is reported, the loaded file stays loaded. */
async function remember(kind, name, bytes) {
  await storeOpening;
  if (!store) return;
  ui.storedStatus.textContent = `Remembering ${name}…`;
  try {
    // Where the browser says there is no room, nothing is written (a write would fail part-way).
    const estimate = await navigator.storage?.estimate?.().catch(() => null);
    if (estimate && estimate.quota - estimate.usage < bytes.byteLength) {
      throw new DOMException("the origin's storage quota is too small", "QuotaExceededError");
    }
    await navigator.storage?.persist?.().catch(() => false);
    await store.save(kind, name, bytes);
  } catch (err) {
    showError(await saveError(err, name, bytes.byteLength));
  }
  await refreshStored();
}

function fileRow({ kind, name, size, date }, actions) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  li.dataset.name = name;
  li.dataset.size = String(size);
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = date ? ` · ${new Date(date).toLocaleString()}` : "";
  meta.textContent = `${kind === "lora" ? "LoRA · " : ""}${formatSize(size)}${when}`;
  const buttons = document.createElement("span");
  buttons.className = "actions";
  li.append(label, meta, buttons);
  for (const [action, text, handler] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `small ${action === "load" ? "" : "secondary "}${action}`;
    button.dataset.action = action;
    button.dataset.kind = kind;
    button.textContent = text;
    button.addEventListener("click", handler);
    buttons.append(button);
  }
  return li;
}

async function refreshStored() {
  if (!store) return;
  let files;
  try {
    files = await store.list();
  } catch (err) {
    ui.storedStatus.textContent = `cannot read the browser's storage: ${err.message}`;
    return;
  }
  files.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
  ui.storedList.replaceChildren(
    ...files.map((f) => {
      const read = () => store.read(f.kind, f.name).then((file) => file.arrayBuffer());
      const source = { name: f.name, read, remember: false };
      return fileRow(f, [
        ["load", "Load", () => (f.kind === "lora" ? loadLora(source) : loadModel(source))],
        ["delete", "Delete", () => forget(f.kind, f.name)],
      ]);
    }),
  );
  const estimate = await navigator.storage?.estimate?.().catch(() => null);
  const used = estimate ? ` Storage used by this page: ${formatSize(estimate.usage)} of ${formatSize(estimate.quota)}.` : "";
  ui.storedStatus.textContent = (files.length ? "" : "Nothing remembered yet.") + used;
  ui.storedList.dataset.count = String(files.length);
  refreshControls();
}

async function forget(kind, name) {
  await run(async () => {
    try {
      await store.remove(kind, name);
    } catch (err) {
      throw new Error(`cannot delete ${name}: ${err.message}`, { cause: err });
    } finally {
      await refreshStored();
    }
  });
}

async function openStorage() {
  const opened = await openStore();
  if (opened.why) {
    ui.storedStatus.textContent = `Files cannot be remembered here: ${opened.why}.`;
    ui.remember.checked = false;
    ui.remember.disabled = true;
    return;
  }
  store = opened;
  ui.storedList.dataset.store = store.kindName;
  await refreshStored();
}

/** The model files the server offers (`python -m nano.web --models DIR`); none on a plain server. */
async function listServed() {
  let files = [];
  try {
    const response = await fetch("models.json", { cache: "no-store" });
    if (response.ok) files = await response.json();
  } catch {
    files = [];
  }
  ui.servedList.replaceChildren(
    ...files.map((f) =>
      fileRow({ kind: "model", name: f.name, size: f.size, date: f.modified * 1e3 }, [
        ["load", "Load", () => loadModel(servedModel(f.name))],
      ]),
    ),
  );
  ui.servedTitle.hidden = ui.servedList.hidden = files.length === 0;
  ui.servedList.dataset.count = String(files.length);
  refreshControls();
  return files;
}

/** A model file from the server's model folder, fetched with progress shown. */
function servedModel(name) {
  const read = async () => {
    const response = await fetch(`models/${encodeURIComponent(name)}`);
    if (!response.ok) throw new Error(`the server answered ${response.status} ${response.statusText}`);
    const total = Number(response.headers.get("content-length")) || 0;
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.byteLength;
      if (total) ui.modelInfo.textContent = `Downloading ${name} from this server… ${Math.floor((100 * received) / total)}%`;
    }
    const bytes = new Uint8Array(received);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    return bytes.buffer;
  };
  return { name, read, remember: false };
}

/** `?model=NAME` loads that model of the server's folder once the engine is up. */
async function loadFromUrl(served) {
  const name = new URLSearchParams(location.search).get("model");
  if (!name) return;
  if (!served.some((f) => f.name === name)) {
    showError(`this server has no model named ${name} (see the list of the server's models)`);
    return;
  }
  await loadModel(servedModel(name));
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

/** Runs one streamed request ({type: "generate"} or {type: "chat"}), showing speed and statistics. */
async function stream(msg, onText) {
  ui.stats.textContent = "";
  ui.speed.textContent = "";
  state.generating = true;
  const started = performance.now();
  let pieces = 0;
  speaker.begin();
  const reply = await run(() =>
    request(msg, [], (text, tokens) => {
      onText(text);
      speaker.push(text);
      pieces += tokens;
      const secs = (performance.now() - started) / 1e3;
      if (secs > 0.25) ui.speed.textContent = `≈ ${(pieces / secs).toFixed(1)} tokens/s`;
    }).catch((err) => {
      if (msg.type === "chat" && /longer than the context/.test(err.message)) {
        err.message += ": shorten the message, or clear the chat to start a new one";
      }
      throw err;
    }),
  );
  speaker.end(); // the last sentence (nothing after a Stop)
  if (reply) {
    const s = reply.stats;
    const rate = s.decodeTokensPerSec > 0 ? `${s.decodeTokensPerSec.toFixed(1)} tokens/s` : "—";
    ui.speed.textContent = rate;
    ui.speed.dataset.tokensPerSec = String(s.decodeTokensPerSec);
    ui.stats.textContent =
      `${s.generatedTokens} tokens generated after a ${s.promptTokens}-token prompt` +
      `${s.interrupted ? " (stopped)" : ""}; prompt ${(s.prefillSecs * 1e3).toFixed(0)} ms, ` +
      `decoding ${rate}.`;
    ui.stats.dataset.promptTokens = String(s.promptTokens);
  }
  return reply;
}

function optionsOrError() {
  try {
    return readOptions();
  } catch (err) {
    showError(err.message);
    return null;
  }
}

async function generate() {
  if (ui.modeChat.checked) return sendChat();
  const options = optionsOrError();
  if (!options) return;
  const prompt = ui.prompt.value;
  if (!prompt) {
    showError("type a prompt first");
    return;
  }
  ui.outputPrompt.textContent = options.instruct ? `Q: ${prompt}\nA: ` : prompt;
  ui.generated.textContent = "";
  delete ui.generated.dataset.done;
  await stream({ type: "generate", prompt, options }, (text) => {
    ui.generated.textContent += text;
  });
  ui.generated.dataset.done = "1";
}

const speaker = new Speaker({ toggle: $("speak"), voice: $("voice"), stop: $("speech-stop"), status: $("speech-status") });

// ---- chat ---------------------------------------------------------------------------------------------

const chat = new Conversation(ui.conversation, {
  edit: editQuestion,
  regenerate: regenerateAnswer,
  copy: copyAnswer,
  speak: (turn) => speaker.read(turn.content),
  canSpeak: () => speaker.available,
});
speaker.onChange = () => chat.refresh();

/** The seed of an answer's `attempt`-th generation: regenerating a sampled answer gives another one. */
function seedFor(options, attempt) {
  return String((BigInt(options.seed) + BigInt(attempt)) % 2n ** 64n);
}

/** Streams the answer to the conversation so far into a new assistant turn. */
async function answer(options, attempt) {
  const messages = chat.messages();
  const turn = chat.addAnswer(attempt);
  const reply = await stream(
    { type: "chat", messages, options: { ...options, seed: seedFor(options, attempt), instruct: false } },
    (text) => chat.append(turn, text),
  );
  if (reply) {
    chat.finish(turn, { stopped: reply.stats.interrupted });
  } else if (stopped.has(turn) || turn.content) {
    // Stopped without shared memory (the worker was restarted) or failed part-way: keep what came.
    chat.finish(turn, { stopped: true });
  } else {
    chat.truncate(turn);
    return false;
  }
  refreshControls();
  return true;
}

const stopped = new WeakSet(); // answers whose generation the Stop button ended

async function sendChat() {
  const options = optionsOrError();
  if (!options) return;
  const text = ui.prompt.value;
  if (!text.trim()) {
    showError("type a message first");
    return;
  }
  const question = chat.addQuestion(text);
  ui.prompt.value = "";
  if (!(await answer(options, 0))) {
    // Nothing was answered (the conversation does not fit, say): the question goes back to the box.
    chat.truncate(question);
    ui.prompt.value = text;
  }
  refreshControls();
}

async function regenerateAnswer(turn) {
  if (turn !== chat.lastAnswer || state.busy) return;
  const options = optionsOrError();
  if (!options) return;
  const attempt = turn.attempt + 1;
  speaker.stop();
  chat.truncate(turn);
  await answer(options, attempt);
  refreshControls();
}

function editQuestion(turn) {
  if (turn !== chat.lastQuestion || state.busy) return;
  speaker.stop();
  chat.truncate(turn);
  ui.prompt.value = turn.content;
  ui.prompt.focus();
  refreshControls();
}

async function copyAnswer(turn) {
  const button = turn.el.querySelector("button.copy");
  try {
    await navigator.clipboard.writeText(turn.content);
    button.textContent = "Copied";
    button.dataset.copied = "1";
  } catch (err) {
    showError(`cannot copy to the clipboard: ${err.message}`);
  }
}

function clearChat() {
  if (state.busy) return;
  speaker.stop();
  chat.clear();
  ui.stats.textContent = "";
  ui.speed.textContent = "";
  refreshControls();
}

async function stop() {
  if (!state.generating) return;
  speaker.stop();
  const pendingAnswer = chat.turns.at(-1);
  if (pendingAnswer && !pendingAnswer.done) stopped.add(pendingAnswer);
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
  const inChat = ui.modeChat.checked;
  ui.promptTitle.textContent = inChat ? "Chat" : instruct ? "Question" : "Text to continue";
  ui.prompt.placeholder = inChat
    ? "Write a message… (Ctrl+Enter sends)"
    : instruct ? "Ask a question…" : "Type the beginning of a text…";
  ui.generate.textContent = inChat ? "Send" : "Generate";
  ui.conversation.hidden = !inChat;
  ui.chatClear.hidden = !inChat;
  ui.output.hidden = inChat;
  ui.stats.textContent = "";
  ui.speed.textContent = "";
  document.body.dataset.mode = inChat ? "chat" : instruct ? "instruct" : "continue";
}

ui.modelFile.addEventListener("change", () => {
  const file = ui.modelFile.files[0];
  if (file) loadModel(pickedFile(file));
  ui.modelFile.value = "";
});
ui.loraFile.addEventListener("change", () => {
  const file = ui.loraFile.files[0];
  if (file) loadLora(pickedFile(file));
  ui.loraFile.value = "";
});
ui.loraUnload.addEventListener("click", unloadLora);
ui.generate.addEventListener("click", generate);
ui.stop.addEventListener("click", stop);
ui.modeContinue.addEventListener("change", updateMode);
ui.modeInstruct.addEventListener("change", updateMode);
ui.modeChat.addEventListener("change", updateMode);
ui.chatClear.addEventListener("click", clearChat);
ui.threads.addEventListener("change", changeThreads);
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
  if (file && state.ready && !state.busy) loadModel(pickedFile(file));
});

updateMode();
refreshControls();
const served = listServed();
storeOpening = openStorage();
startWorker().then(
  async () => {
    await storeOpening;
    await loadFromUrl(await served);
  },
  () => setState("failed"),
);
