// Remembered files: models and LoRA plug-ins kept in this browser's own storage for this origin, so a
// reload does not need the file picked again. The Origin Private File System is used where the browser
// has it, Cache Storage otherwise; both stay on this device. Every store has the same interface:
//   list() -> [{kind, name, size, date}]   read(kind, name) -> File   save(kind, name, bytes)   remove(kind, name)
// `kind` is "model" or "lora". A save that fails (quota) leaves nothing behind.

export const KINDS = ["model", "lora"];

/** A clear message for a failed save; the quota case says how much room there is. */
export async function saveError(err, name, size) {
  if (err?.name === "QuotaExceededError") {
    const estimate = await navigator.storage?.estimate?.().catch(() => null);
    const room = estimate ? `; ${formatSize(Math.max(0, estimate.quota - estimate.usage))} free` : "";
    return `not enough browser storage to remember ${name} (${formatSize(size)} needed${room}): ` +
      "delete a remembered file, or load it without remembering";
  }
  return `cannot remember ${name} in this browser: ${err?.message ?? err}`;
}

export function formatSize(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

class OpfsStore {
  kindName = "the browser's private file system";

  constructor(root) {
    this.root = root;
  }

  static async open() {
    const origin = await navigator.storage.getDirectory();
    return new OpfsStore(await origin.getDirectoryHandle("nano", { create: true }));
  }

  dir(kind) {
    return this.root.getDirectoryHandle(kind, { create: true });
  }

  async list() {
    const out = [];
    for (const kind of KINDS) {
      const dir = await this.dir(kind);
      const handles = [];
      for await (const handle of dir.values()) if (handle.kind === "file") handles.push(handle);
      for (const handle of handles) {
        const file = await handle.getFile();
        if (file.size === 0) {
          // What a failed save can leave when its clean-up raced the stream's lock (no model is empty).
          await dir.removeEntry(handle.name).catch(() => {});
          continue;
        }
        out.push({ kind, name: handle.name, size: file.size, date: file.lastModified });
      }
    }
    return out;
  }

  async read(kind, name) {
    return (await (await this.dir(kind)).getFileHandle(name)).getFile();
  }

  async save(kind, name, bytes) {
    const dir = await this.dir(kind);
    const existed = await dir.getFileHandle(name).then(() => true, () => false);
    let stream = null;
    try {
      const handle = await dir.getFileHandle(name, { create: true });
      // A writable stream writes to a swap file: the stored file changes only when it is closed.
      stream = await handle.createWritable();
      await stream.write(bytes);
      await stream.close();
    } catch (err) {
      await stream?.abort().catch(() => {});
      if (!existed) await dir.removeEntry(name).catch(() => {});
      throw err;
    }
  }

  async remove(kind, name) {
    await (await this.dir(kind)).removeEntry(name);
  }
}

class CacheStore {
  kindName = "the browser's cache storage";

  constructor(cache) {
    this.cache = cache;
  }

  static async open() {
    return new CacheStore(await caches.open("nano-remembered-files"));
  }

  // Cache keys are URLs of this origin; nothing is ever fetched from them.
  key(kind, name) {
    return new URL(`remembered/${kind}/${encodeURIComponent(name)}`, location.href).href;
  }

  async list() {
    const out = [];
    for (const request of await this.cache.keys()) {
      const parts = new URL(request.url).pathname.split("/");
      const [kind, name] = [parts.at(-2), decodeURIComponent(parts.at(-1))];
      if (!KINDS.includes(kind)) continue;
      const response = await this.cache.match(request);
      out.push({
        kind,
        name,
        size: Number(response.headers.get("content-length")),
        date: Number(response.headers.get("x-saved-at")),
      });
    }
    return out;
  }

  async read(kind, name) {
    const response = await this.cache.match(this.key(kind, name));
    if (!response) throw new Error(`${name} is no longer remembered`);
    return new File([await response.blob()], name);
  }

  async save(kind, name, bytes) {
    const headers = { "content-length": String(bytes.byteLength), "x-saved-at": String(Date.now()) };
    await this.cache.put(this.key(kind, name), new Response(bytes, { headers })); // all or nothing
  }

  async remove(kind, name) {
    await this.cache.delete(this.key(kind, name));
  }
}

/** The store this browser offers (OPFS, else Cache Storage), or null with the reason in `why`. */
export async function openStore() {
  const errors = [];
  if (navigator.storage?.getDirectory) {
    try {
      return await OpfsStore.open();
    } catch (err) {
      errors.push(err.message);
    }
  }
  if (self.caches) {
    try {
      return await CacheStore.open();
    } catch (err) {
      errors.push(err.message);
    }
  }
  const why = errors.length ? errors.join("; ") : "this browser offers no storage to this page";
  return { why };
}
