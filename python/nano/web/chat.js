// The chat transcript: the turns of one conversation and their list on the page. The prompt is never
// built here: the worker renders `messages()` with the model's own chat template.
//
// Each turn is an <li class="turn user|assistant"> with its text and its actions: Copy (and Read aloud,
// where a voice exists) on every answer, Regenerate on the last answer, Edit on the last question; the
// page decides what the actions do.

export class Conversation {
  /**
   * @param {HTMLOListElement} list where the turns are shown
   * @param {{edit, regenerate, copy, speak: Function, canSpeak: () => boolean}} actions: called with the turn
   */
  constructor(list, actions) {
    this.list = list;
    this.actions = actions;
    this.turns = []; // {role, content, el, text, attempt, stopped, done}
    this.locked = false;
  }

  /** The finished turns as chat messages ({role, content}), oldest first. */
  messages() {
    return this.turns.filter((t) => t.done).map((t) => ({ role: t.role, content: t.content }));
  }

  get lastAnswer() {
    const last = this.turns.at(-1);
    return last && last.role === "assistant" ? last : null;
  }

  get lastQuestion() {
    return this.turns.findLast((t) => t.role === "user") ?? null;
  }

  addQuestion(content) {
    return this.#add({ role: "user", content, done: true });
  }

  /** A new answer, empty until `append` streams its text in and `finish` closes it. */
  addAnswer(attempt = 0) {
    return this.#add({ role: "assistant", content: "", done: false, attempt });
  }

  append(turn, text) {
    turn.content += text;
    turn.text.textContent = turn.content;
  }

  finish(turn, { stopped = false } = {}) {
    turn.done = true;
    turn.stopped = stopped;
    turn.el.dataset.done = "1";
    if (stopped) turn.el.dataset.stopped = "1";
    turn.text.classList.toggle("empty", turn.content === "");
    if (turn.content === "") turn.text.textContent = stopped ? "(stopped before any text)" : "(no answer)";
    this.refresh();
  }

  /** Removes the turns from `turn` to the end. */
  truncate(turn) {
    const at = this.turns.indexOf(turn);
    if (at < 0) return;
    for (const t of this.turns.splice(at)) t.el.remove();
    this.refresh();
  }

  clear() {
    this.turns = [];
    this.list.replaceChildren();
    this.refresh();
  }

  /** Shows only the actions that apply now (none while the engine is busy). */
  setLocked(locked) {
    this.locked = locked;
    this.refresh();
  }

  refresh() {
    const lastAnswer = this.lastAnswer;
    const lastQuestion = this.lastQuestion;
    for (const t of this.turns) {
      for (const button of t.el.querySelectorAll(".actions button")) {
        const kind = button.dataset.action;
        const applies =
          (kind === "copy" && t.done) ||
          (kind === "speak" && t.done && t.content !== "" && this.actions.canSpeak()) ||
          (kind === "regenerate" && t === lastAnswer && t.done) ||
          (kind === "edit" && t === lastQuestion);
        button.hidden = !applies;
        button.disabled = this.locked && kind !== "copy" && kind !== "speak";
      }
    }
    this.list.dataset.turns = String(this.turns.length);
  }

  #add(turn) {
    const el = document.createElement("li");
    el.className = `turn ${turn.role}`;
    el.dataset.role = turn.role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = turn.role === "user" ? "You" : "Model";
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = turn.content;
    const actions = document.createElement("div");
    actions.className = "actions";
    const labels = turn.role === "user"
      ? [["edit", "Edit"]]
      : [["copy", "Copy"], ["speak", "Read aloud"], ["regenerate", "Regenerate"]];
    for (const [kind, label] of labels) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `secondary small ${kind}`;
      button.dataset.action = kind;
      button.textContent = label;
      button.addEventListener("click", () => this.actions[kind](turn));
      actions.append(button);
    }
    el.append(who, text, actions);
    Object.assign(turn, { el, text });
    this.turns.push(turn);
    this.list.append(el);
    this.refresh();
    el.scrollIntoView({ block: "nearest" });
    return turn;
  }
}
