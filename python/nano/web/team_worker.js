// One worker thread of the engine's team (the shared-memory WASM build only). worker.js starts one
// such Web Worker per team worker and sends it {module, memory, id}: the engine's compiled module and
// its shared WebAssembly.Memory, so this instance works on the same memory as the engine's thread.
// It answers {type: "running"} and then runs the team worker `id` until its engine is freed (the
// worker sleeps in memory.atomic.wait between forward passes), then frees its thread's stack and
// closes; on failure it answers {type: "error", message}.
import { initSync, runTeamWorker } from "./pkg/nano_wasm_mt.js";

self.onmessage = ({ data: { module, memory, id } }) => {
  let wasm;
  try {
    wasm = initSync({ module, memory });
  } catch (err) {
    postMessage({ type: "error", message: `cannot start a team worker: ${err?.message ?? err}` });
    close();
    return;
  }
  postMessage({ type: "running" });
  try {
    runTeamWorker(id);
  } catch (err) {
    postMessage({ type: "error", message: `team worker ${id} failed: ${err?.message ?? err}` });
  }
  wasm.__wbindgen_thread_destroy?.();
  close();
};
