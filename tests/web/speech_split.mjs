// Runs the page's sentence splitter (python/nano/web/speech.js) under Node on texts given whole and cut
// into pieces of every size, and prints, per text, the sentences of each way of streaming it.
// Usage: node tests/web/speech_split.mjs WEB_DIR TEXTS_JSON   (TEXTS_JSON: ["text", ...])
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [webDir, textsJson] = process.argv.slice(2);
const { SentenceSplitter } = await import(pathToFileURL(resolve(webDir, "speech.js")).href);

function split(text, size) {
  const s = new SentenceSplitter();
  const out = [];
  for (let i = 0; i < text.length; i += size) out.push(...s.push(text.slice(i, i + size)));
  return [...out, ...s.finish()];
}

const out = JSON.parse(textsJson).map((text) => {
  const chars = [...text].length;
  const bySize = {};
  for (let size = 1; size <= Math.max(1, chars); size++) bySize[size] = split(text, size);
  return bySize;
});
console.log(JSON.stringify(out));
