/* @ts-self-types="./nano_wasm_mt.d.ts" */

/**
 * Timings and counts of one generation.
 */
export class Stats {
    static __wrap(ptr) {
        const obj = Object.create(Stats.prototype);
        obj.__wbg_ptr = ptr;
        StatsFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        StatsFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_stats_free(ptr, 0);
    }
    /**
     * From the first new token to the end (generated_tokens - 1 forward passes), in seconds.
     * @returns {number}
     */
    get decode_secs() {
        const ret = wasm.__wbg_get_stats_decode_secs(this.__wbg_ptr);
        return ret;
    }
    /**
     * @returns {number}
     */
    get generated_tokens() {
        const ret = wasm.__wbg_get_stats_generated_tokens(this.__wbg_ptr);
        return ret >>> 0;
    }
    /**
     * True when the callback asked to stop.
     * @returns {boolean}
     */
    get interrupted() {
        const ret = wasm.__wbg_get_stats_interrupted(this.__wbg_ptr);
        return ret !== 0;
    }
    /**
     * Prompt processing up to the first new token, in seconds.
     * @returns {number}
     */
    get prefill_secs() {
        const ret = wasm.__wbg_get_stats_prefill_secs(this.__wbg_ptr);
        return ret;
    }
    /**
     * @returns {number}
     */
    get prompt_tokens() {
        const ret = wasm.__wbg_get_stats_prompt_tokens(this.__wbg_ptr);
        return ret >>> 0;
    }
    /**
     * From the first new token to the end (generated_tokens - 1 forward passes), in seconds.
     * @param {number} arg0
     */
    set decode_secs(arg0) {
        wasm.__wbg_set_stats_decode_secs(this.__wbg_ptr, arg0);
    }
    /**
     * @param {number} arg0
     */
    set generated_tokens(arg0) {
        wasm.__wbg_set_stats_generated_tokens(this.__wbg_ptr, arg0);
    }
    /**
     * True when the callback asked to stop.
     * @param {boolean} arg0
     */
    set interrupted(arg0) {
        wasm.__wbg_set_stats_interrupted(this.__wbg_ptr, arg0);
    }
    /**
     * Prompt processing up to the first new token, in seconds.
     * @param {number} arg0
     */
    set prefill_secs(arg0) {
        wasm.__wbg_set_stats_prefill_secs(this.__wbg_ptr, arg0);
    }
    /**
     * @param {number} arg0
     */
    set prompt_tokens(arg0) {
        wasm.__wbg_set_stats_prompt_tokens(this.__wbg_ptr, arg0);
    }
    /**
     * Decode speed: tokens after the first one per second of decoding (0 when not measurable).
     * @returns {number}
     */
    get decode_tokens_per_sec() {
        const ret = wasm.stats_decode_tokens_per_sec(this.__wbg_ptr);
        return ret;
    }
}
if (Symbol.dispose) Stats.prototype[Symbol.dispose] = Stats.prototype.free;

/**
 * One loaded model with its engine, the sampling options and an optional LoRA plug-in.
 */
export class WasmEngine {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        WasmEngineFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_wasmengine_free(ptr, 0);
    }
    /**
     * Generates the assistant's answer to a conversation (`messages_json` as for
     * [`WasmEngine::chat_prompt_ids`]), streaming pieces to `on_piece` as [`WasmEngine::generate`]
     * does; the `instruct` option is not used (the chat template wraps every turn).
     * @param {string} messages_json
     * @param {Function} on_piece
     * @returns {Stats}
     */
    chat(messages_json, on_piece) {
        const ptr0 = passStringToWasm0(messages_json, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_chat(this.__wbg_ptr, ptr0, len0, on_piece);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return Stats.__wrap(ret[0]);
    }
    /**
     * The token ids the answer to a conversation is generated after: `messages_json` is a JSON
     * list of `{"role": "user" | "assistant", "content": text}` ending with the user's turn,
     * rendered with the model's chat template (`nano_infer`'s chat API, as `nano.Engine.chat`).
     * @param {string} messages_json
     * @returns {Uint32Array}
     */
    chat_prompt_ids(messages_json) {
        const ptr0 = passStringToWasm0(messages_json, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_chat_prompt_ids(this.__wbg_ptr, ptr0, len0);
        if (ret[3]) {
            throw takeFromExternrefTable0(ret[2]);
        }
        var v2 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v2;
    }
    /**
     * Greedy continuation as token ids, without text decoding (used by tests and the benchmark).
     * @param {string} text
     * @returns {Uint32Array}
     */
    encode(text) {
        const ptr0 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_encode(this.__wbg_ptr, ptr0, len0);
        var v2 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v2;
    }
    /**
     * Generates after `prompt`, calling `on_piece(text)` for each new piece of text; a falsy return
     * value interrupts. An exception thrown by the callback also stops and is passed on.
     * @param {string} prompt
     * @param {Function} on_piece
     * @returns {Stats}
     */
    generate(prompt, on_piece) {
        const ptr0 = passStringToWasm0(prompt, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_generate(this.__wbg_ptr, ptr0, len0, on_piece);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return Stats.__wrap(ret[0]);
    }
    /**
     * @returns {boolean}
     */
    get has_lora() {
        const ret = wasm.wasmengine_has_lora(this.__wbg_ptr);
        return ret !== 0;
    }
    /**
     * The model's shape and file details as a JSON object text.
     * @returns {string}
     */
    info() {
        let deferred1_0;
        let deferred1_1;
        try {
            const ret = wasm.wasmengine_info(this.__wbg_ptr);
            deferred1_0 = ret[0];
            deferred1_1 = ret[1];
            return getStringFromWasm0(ret[0], ret[1]);
        } finally {
            wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
        }
    }
    /**
     * Plugs in a LoRA plug-in file (replacing any other); it must belong to this base model.
     * @param {Uint8Array | number[]} bytes
     */
    load_lora(bytes) {
        const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_load_lora(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Loads a model file (`.bin`) from its bytes for an engine of `threads` threads (default 1;
     * more only in the build with shared memory, see [`shared_memory`], where the page then starts
     * the workers that [`WasmEngine::take_team_workers`] lists). A bad file or thread count gives
     * an error with the reason.
     * @param {Uint8Array | number[]} bytes
     * @param {number | null} [threads]
     */
    constructor(bytes, threads) {
        const val2 = +(isLikeNone(threads) ? Number.MAX_SAFE_INTEGER : (threads) >>> 0);
        const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wasmengine_new(ptr0, len0, val2);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        this.__wbg_ptr = ret[0];
        WasmEngineFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * Sampling options for the next generations (docs/sampling.md): temperature 0 = greedy,
     * top_k 0 = off, top_p 1 = off, repetition_penalty 1 = off; `instruct` wraps the prompt in the
     * instruction template.
     * @param {number} max_new_tokens
     * @param {number} temperature
     * @param {number} top_k
     * @param {number} top_p
     * @param {number} repetition_penalty
     * @param {bigint} seed
     * @param {boolean} instruct
     */
    set_options(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, instruct) {
        const ret = wasm.wasmengine_set_options(this.__wbg_ptr, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, instruct);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * The ids of this engine's team workers that no thread runs yet, each to be passed to
     * [`run_team_worker`] on a Web Worker of its own (listed once: the list is emptied). Until
     * they run, the calling thread does all the work.
     * @returns {Uint32Array}
     */
    take_team_workers() {
        const ret = wasm.wasmengine_take_team_workers(this.__wbg_ptr);
        var v1 = getArrayU32FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
        return v1;
    }
    /**
     * Threads the engine computes on (the calling one included).
     * @returns {number}
     */
    get threads() {
        const ret = wasm.wasmengine_threads(this.__wbg_ptr);
        return ret >>> 0;
    }
    unload_lora() {
        wasm.wasmengine_unload_lora(this.__wbg_ptr);
    }
}
if (Symbol.dispose) WasmEngine.prototype[Symbol.dispose] = WasmEngine.prototype.free;

/**
 * The kernels' golden test on this build (the same fixed inputs as the native kernel tests, in
 * `nano_infer::kernels::selftest`): for every kernel path this build has (scalar, simd128), and for
 * the 16-row panel layout (see [`panel_golden`]), a JSON object `{"path", "q8_0", "q4_0"}` with
 * 16-hex-digit output hashes; each must equal [`kernel_golden_expected`] bit for bit.
 * @returns {string}
 */
export function kernelGolden() {
    let deferred1_0;
    let deferred1_1;
    try {
        const ret = wasm.kernelGolden();
        deferred1_0 = ret[0];
        deferred1_1 = ret[1];
        return getStringFromWasm0(ret[0], ret[1]);
    } finally {
        wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
    }
}

/**
 * The native kernel tests' golden hashes `[q8_0, q4_0]`.
 * @returns {string[]}
 */
export function kernelGoldenExpected() {
    const ret = wasm.kernelGoldenExpected();
    var v1 = getArrayJsValueFromWasm0(ret[0], ret[1]);
    wasm.__wbindgen_free(ret[0], ret[1] * 4, 4);
    return v1;
}

/**
 * q8_0 weights of -128 (never written by the quantizer, but valid in a file) take a slower exact
 * branch in the relaxed-SIMD kernels. A JSON object of output hashes of such a matrix: the scalar
 * reference ("scalar"), this build's fastest row kernels ("rows") and its panel layout ("panels");
 * all three must be equal.
 * @returns {string}
 */
export function kernelMinus128Check() {
    let deferred1_0;
    let deferred1_1;
    try {
        const ret = wasm.kernelMinus128Check();
        deferred1_0 = ret[0];
        deferred1_1 = ret[1];
        return getStringFromWasm0(ret[0], ret[1]);
    } finally {
        wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
    }
}

/**
 * Runs the team worker filed under `id` on the calling thread (a Web Worker of the page) until its
 * engine is freed. An id that is not waiting (already run, forgotten, or never given) is an error.
 * @param {number} id
 */
export function runTeamWorker(id) {
    const ret = wasm.runTeamWorker(id);
    if (ret[1]) {
        throw takeFromExternrefTable0(ret[0]);
    }
}

/**
 * Whether this build has shared memory (WASM threads), so that an engine may have more than one
 * thread.
 * @returns {boolean}
 */
export function sharedMemory() {
    const ret = wasm.sharedMemory();
    return ret !== 0;
}

/**
 * The engine's version (`nano_infer::VERSION`), shown by the page once the worker has started.
 * @returns {string}
 */
export function version() {
    let deferred1_0;
    let deferred1_1;
    try {
        const ret = wasm.version();
        deferred1_0 = ret[0];
        deferred1_1 = ret[1];
        return getStringFromWasm0(ret[0], ret[1]);
    } finally {
        wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
    }
}
function __wbg_get_imports(memory) {
    const import0 = {
        __proto__: null,
        __wbg_Error_208446807d0d1e30: function(arg0, arg1) {
            const ret = Error(getStringFromWasm0(arg0, arg1));
            return ret;
        },
        __wbg___wbindgen_debug_string_f249a2a76caa9a55: function(arg0, arg1) {
            const ret = debugString(arg1);
            const ptr1 = passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            const len1 = WASM_VECTOR_LEN;
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
        },
        __wbg___wbindgen_is_falsy_d864b623500ae65d: function(arg0) {
            const ret = !arg0;
            return ret;
        },
        __wbg___wbindgen_string_get_7ce8eee7fd327545: function(arg0, arg1) {
            const obj = arg1;
            const ret = typeof(obj) === 'string' ? obj : undefined;
            var ptr1 = isLikeNone(ret) ? 0 : passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            var len1 = WASM_VECTOR_LEN;
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
        },
        __wbg___wbindgen_throw_4c88d8bf264fd984: function(arg0, arg1) {
            throw new Error(getStringFromWasm0(arg0, arg1));
        },
        __wbg_call_a410eb4b59ed5965: function() { return handleError(function (arg0, arg1, arg2) {
            const ret = arg0.call(arg1, arg2);
            return ret;
        }, arguments); },
        __wbg_get_2080c49015e35254: function() { return handleError(function (arg0, arg1) {
            const ret = Reflect.get(arg0, arg1);
            return ret;
        }, arguments); },
        __wbg_now_9e10a3227c4107cc: function() {
            const ret = performance.now();
            return ret;
        },
        __wbindgen_generic_0000000000000001: function(arg0, arg1) {
            // Cast intrinsic for `Ref(String) -> Externref`.
            const ret = getStringFromWasm0(arg0, arg1);
            return ret;
        },
        __wbindgen_init_externref_table: function() {
            const table = wasm.__wbindgen_externrefs;
            table.set(0, undefined);
            table.set(1024, undefined);
            table.set(1025, null);
            table.set(1026, true);
            table.set(1027, false);
        },
        memory: memory || new WebAssembly.Memory({initial:22,maximum:65536,shared:true}),
    };
    return {
        __proto__: null,
        "./nano_wasm_mt_bg.js": import0,
    };
}

const StatsFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_stats_free(ptr, 1));
const WasmEngineFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_wasmengine_free(ptr, 1));

function addToExternrefTable0(obj) {
    const idx = wasm.__externref_table_alloc();
    wasm.__wbindgen_externrefs.set(idx, obj);
    return idx;
}

function debugString(val) {
    switch (typeof val) {
        // primitive types
        case 'number':
        case 'boolean':
        case 'undefined':
        return `${val}`;
        case 'string':
        return JSON.stringify(val);
        case 'bigint':
        return `${val}n`;
        case 'symbol':
        return val.description !== undefined
            ? `Symbol(${val.description})`
            : 'Symbol';
        case 'function':
        return typeof val.name === 'string' && val.name !== ''
            ? `Function(${val.name})`
            : 'Function';
        case 'object': {
            if (val === null) {
                return 'null';
            }
            // objects
            if (Array.isArray(val)) {
                return '[' + Array.from(val, debugString).join(', ') + ']';
            }
            // errors
            if (val instanceof Error) {
                return `${val.name}: ${val.message}\n${val.stack}`;
            }

            const toStringOutput = toString.call(val);
            // Test for built-in
            const className = /\[object ([^\]]+)\]/.exec(toStringOutput)?.[1];

            // Failed to match the standard '[object ClassName]'
            if (className === undefined) {
                return toStringOutput;
            }
            if (className === 'Object') {
                // we're a user defined class or Object
                // JSON.stringify avoids problems with cycles, and is generally much
                // easier than looping through ownProperties of `val`.
                try {
                    return 'Object(' + JSON.stringify(val) + ')';
                } catch (_) {
                    return 'Object';
                }
            }
            // TODO we could test for more things here, like `Set`s and `Map`s.
            return className;
        }
        // Per MDN: 'This list of values is exhaustive.'
        // https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Operators/typeof#description
    }
}

function getArrayJsValueFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    const mem = getDataViewMemory0();
    const result = [];
    for (let i = ptr; i < ptr + 4 * len; i += 4) {
        result.push(wasm.__wbindgen_externrefs.get(mem.getUint32(i, true)));
    }
    wasm.__externref_drop_slice(ptr, len);
    return result;
}

function getArrayU32FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint32ArrayMemory0().subarray(ptr / 4, ptr / 4 + len);
}

let cachedDataViewMemory0 = null;
function getDataViewMemory0() {
    if (cachedDataViewMemory0 === null || cachedDataViewMemory0.buffer !== wasm.memory.buffer) {
        cachedDataViewMemory0 = new DataView(wasm.memory.buffer);
    }
    return cachedDataViewMemory0;
}

function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
}

let cachedUint32ArrayMemory0 = null;
function getUint32ArrayMemory0() {
    if (cachedUint32ArrayMemory0 === null || cachedUint32ArrayMemory0.buffer !== wasm.memory.buffer) {
        cachedUint32ArrayMemory0 = new Uint32Array(wasm.memory.buffer);
    }
    return cachedUint32ArrayMemory0;
}

let cachedUint8ArrayMemory0 = null;
function getUint8ArrayMemory0() {
    if (cachedUint8ArrayMemory0 === null || cachedUint8ArrayMemory0.buffer !== wasm.memory.buffer) {
        cachedUint8ArrayMemory0 = new Uint8Array(wasm.memory.buffer);
    }
    return cachedUint8ArrayMemory0;
}

function handleError(f, args) {
    try {
        return f.apply(this, args);
    } catch (e) {
        const idx = addToExternrefTable0(e);
        wasm.__wbindgen_exn_store(idx);
    }
}

function isLikeNone(x) {
    return x === undefined || x === null;
}

function passArray8ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 1, 1) >>> 0;
    getUint8ArrayMemory0().set(arg, ptr / 1);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passStringToWasm0(arg, malloc, realloc) {
    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
        WASM_VECTOR_LEN = buf.length;
        return ptr;
    }

    let len = arg.length;
    let ptr = malloc(len, 1) >>> 0;

    const mem = getUint8ArrayMemory0();

    let offset = 0;

    for (; offset < len; offset++) {
        const code = arg.charCodeAt(offset);
        if (code > 0x7F) break;
        mem[ptr + offset] = code;
    }
    if (offset !== len) {
        if (offset !== 0) {
            arg = arg.slice(offset);
        }
        ptr = realloc(ptr, len, len = offset + arg.length * 3, 1) >>> 0;
        const view = getUint8ArrayMemory0().subarray(ptr + offset, ptr + len);
        const ret = cachedTextEncoder.encodeInto(arg, view);

        offset += ret.written;
        ptr = realloc(ptr, len, offset, 1) >>> 0;
    }

    WASM_VECTOR_LEN = offset;
    return ptr;
}

function takeFromExternrefTable0(idx) {
    const value = wasm.__wbindgen_externrefs.get(idx);
    wasm.__externref_table_dealloc(idx);
    return value;
}

let cachedTextDecoder = (typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8', { ignoreBOM: true }) : undefined);
if (cachedTextDecoder) cachedTextDecoder.decode();

const MAX_SAFARI_DECODE_BYTES = 2146435072;
let numBytesDecoded = 0;
function decodeText(bytes) {
    numBytesDecoded += bytes.length;
    if (numBytesDecoded >= MAX_SAFARI_DECODE_BYTES) {
        cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
        cachedTextDecoder.decode();
        numBytesDecoded = bytes.length;
    }
    return cachedTextDecoder.decode(bytes.slice());
}

const cachedTextEncoder = (typeof TextEncoder !== 'undefined' ? new TextEncoder() : undefined);

if (cachedTextEncoder) {
    cachedTextEncoder.encodeInto = function (arg, view) {
        const buf = cachedTextEncoder.encode(arg);
        view.set(buf);
        return {
            read: arg.length,
            written: buf.length
        };
    };
}

let WASM_VECTOR_LEN = 0;

let wasmModule, wasmInstance, wasm;
function __wbg_finalize_init(instance, module, thread_stack_size) {
    wasmInstance = instance;
    wasm = instance.exports;
    wasmModule = module;
    cachedDataViewMemory0 = null;
    cachedUint32ArrayMemory0 = null;
    cachedUint8ArrayMemory0 = null;
    if (typeof thread_stack_size !== 'undefined' && (typeof thread_stack_size !== 'number' || thread_stack_size === 0 || thread_stack_size % 65536 !== 0)) {
        throw new Error('invalid stack size');
    }

    wasm.__wbindgen_start(thread_stack_size);
    return wasm;
}

async function __wbg_load(module, imports) {
    if (typeof Response === 'function' && module instanceof Response) {
        if (!module.ok) {
            throw new Error(`failed to fetch Wasm: ${module.status} ${module.statusText} fetching '${module.url}'`);
        }

        if (typeof WebAssembly.instantiateStreaming === 'function') {
            try {
                return await WebAssembly.instantiateStreaming(module, imports);
            } catch (e) {
                const validResponse = expectedResponseType(module.type);

                if (validResponse && module.headers.get('Content-Type') !== 'application/wasm') {
                    console.warn("`WebAssembly.instantiateStreaming` failed because your server does not serve Wasm with `application/wasm` MIME type. Falling back to `WebAssembly.instantiate` which is slower. Original error:\n", e);

                } else { throw e; }
            }
        }

        const bytes = await module.arrayBuffer();
        return await WebAssembly.instantiate(bytes, imports);
    } else {
        const instance = await WebAssembly.instantiate(module, imports);

        if (instance instanceof WebAssembly.Instance) {
            return { instance, module };
        } else {
            return instance;
        }
    }

    function expectedResponseType(type) {
        switch (type) {
            case 'basic': case 'cors': case 'default': return true;
        }
        return false;
    }
}

function initSync(module, memory) {
    if (wasm !== undefined) return wasm;

    let thread_stack_size
    if (module !== undefined) {
        if (Object.getPrototypeOf(module) === Object.prototype) {
            ({module, memory, thread_stack_size} = module)
        } else {
            console.warn('using deprecated parameters for `initSync()`; pass a single object instead')
        }
    }

    const imports = __wbg_get_imports(memory);
    if (!(module instanceof WebAssembly.Module)) {
        module = new WebAssembly.Module(module);
    }
    const instance = new WebAssembly.Instance(module, imports);
    return __wbg_finalize_init(instance, module, thread_stack_size);
}

let __wbg_init_promise;
async function __wbg_init(module_or_path, memory) {
    if (wasm !== undefined) return wasm;
    if (__wbg_init_promise === undefined) {
        __wbg_init_promise = __wbg_init_once(module_or_path, memory);
        __wbg_init_promise.catch(() => { __wbg_init_promise = undefined; });
    }
    return __wbg_init_promise;
}

async function __wbg_init_once(module_or_path, memory) {
    let thread_stack_size
    if (module_or_path !== undefined) {
        if (Object.getPrototypeOf(module_or_path) === Object.prototype) {
            ({module_or_path, memory, thread_stack_size} = module_or_path)
        } else {
            console.warn('using deprecated parameters for the initialization function; pass a single object instead')
        }
    }

    if (module_or_path === undefined) {
        module_or_path = new URL('nano_wasm_mt_bg.wasm', import.meta.url);
    }
    const imports = __wbg_get_imports(memory);

    if (typeof module_or_path === 'string' || (typeof Request === 'function' && module_or_path instanceof Request) || (typeof URL === 'function' && module_or_path instanceof URL)) {
        module_or_path = fetch(module_or_path);
    }

    const { instance, module } = await __wbg_load(await module_or_path, imports);

    return __wbg_finalize_init(instance, module, thread_stack_size);
}

export { initSync, __wbg_init as default };
