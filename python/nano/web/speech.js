// Reading answers aloud with the browser's own speech synthesis, sentence by sentence while the text
// streams in. Only voices that run on this device (`localService`) are offered: a remote voice would send
// the text off the machine.

// Where a sentence ends: Latin . ! ? (runs of them) once whitespace follows (so "3.14" or "e.g" inside a
// word wait), CJK 。！？… once anything but more closing marks follows, or a line break. Closing quotes
// and brackets after the mark belong to the sentence.
const CLOSERS = ")\"'”’»」』）\\]";
const BOUNDARY = new RegExp(
  `[.!?]+[${CLOSERS}]*(?=\\s)|[。！？…]+[${CLOSERS}]*(?=[^${CLOSERS}。！？…])|\\n`,
  "u",
);

/** Cuts streamed text into finished sentences: each is returned once, in order. */
export class SentenceSplitter {
  constructor() {
    this.rest = "";
  }

  /** Adds streamed text; returns the sentences it finished. */
  push(text) {
    this.rest += text;
    const done = [];
    for (;;) {
      const m = BOUNDARY.exec(this.rest);
      if (!m) break;
      const end = m.index + m[0].length;
      const sentence = this.rest.slice(0, end).trim();
      this.rest = this.rest.slice(end);
      if (sentence) done.push(sentence);
    }
    return done;
  }

  /** The end of the text: what is left is the last sentence (or nothing). */
  finish() {
    const last = this.rest.trim();
    this.rest = "";
    return last ? [last] : [];
  }
}

/** The speech controls: a switch, a voice picker, a stop button and a status line. */
export class Speaker {
  constructor({ toggle, voice, stop, status }) {
    Object.assign(this, { toggle, voiceSelect: voice, stopButton: stop, status });
    this.synth = self.speechSynthesis ?? null;
    this.voices = [];
    this.splitter = null; // the answer being read, null when none
    stop.addEventListener("click", () => this.stop());
    toggle.addEventListener("change", () => {
      if (!toggle.checked) this.stop();
      this.refresh();
    });
    if (this.synth) {
      this.synth.addEventListener?.("voiceschanged", () => this.loadVoices());
      this.loadVoices();
    } else {
      this.refresh();
    }
  }

  loadVoices() {
    const chosen = this.voices[Number(this.voiceSelect.value)]?.name;
    this.voices = this.synth.getVoices().filter((v) => v.localService === true);
    this.voiceSelect.replaceChildren(
      ...this.voices.map((v, i) => {
        const option = document.createElement("option");
        option.value = String(i);
        option.textContent = `${v.name} (${v.lang})`;
        option.dataset.name = v.name;
        return option;
      }),
    );
    const keep = this.voices.findIndex((v) => v.name === chosen);
    const preferred = keep >= 0 ? keep : Math.max(0, this.voices.findIndex((v) => v.default));
    if (this.voices.length) this.voiceSelect.value = String(preferred);
    this.refresh();
  }

  get available() {
    return this.voices.length > 0;
  }

  get enabled() {
    return this.available && this.toggle.checked;
  }

  refresh() {
    this.toggle.disabled = !this.available;
    this.voiceSelect.hidden = !this.available;
    this.stopButton.hidden = !this.available;
    if (!this.synth) {
      this.status.textContent = "This browser has no speech synthesis: answers cannot be read aloud.";
    } else if (!this.available) {
      this.status.textContent =
        "No voice on this device: answers cannot be read aloud here (only on-device voices are used).";
    } else {
      this.status.textContent = this.toggle.checked
        ? "Answers are read aloud with an on-device voice."
        : "Answers are not read aloud.";
    }
    this.status.dataset.voices = String(this.voices.length);
    this.onChange?.();
  }

  /** A new answer starts streaming: it is read as its sentences finish, if reading is on. */
  begin() {
    this.splitter = this.enabled ? new SentenceSplitter() : null;
  }

  push(text) {
    if (this.splitter) this.#say(this.splitter.push(text));
  }

  end() {
    if (this.splitter) this.#say(this.splitter.finish());
    this.splitter = null;
  }

  /** Reads a whole text now (an earlier answer), in place of whatever is being read. */
  read(text) {
    this.stop();
    const splitter = new SentenceSplitter();
    this.splitter = splitter;
    this.#say([...splitter.push(text), ...splitter.finish()]);
    if (this.splitter === splitter) this.splitter = null;
  }

  /** Silences the voice now and drops the rest of the answer being read. */
  stop() {
    this.splitter = null;
    this.synth?.cancel();
  }

  #say(sentences) {
    const voice = this.voices[Number(this.voiceSelect.value)];
    for (const sentence of sentences) {
      if (!this.splitter || !voice) return; // stopped meanwhile
      const utterance = new SpeechSynthesisUtterance(sentence);
      utterance.voice = voice;
      utterance.lang = voice.lang;
      this.synth.speak(utterance);
    }
  }
}
