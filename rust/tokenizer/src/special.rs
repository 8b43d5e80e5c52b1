//! The special tokens of a Nano vocabulary and the instruction template built from them. This is the
//! one owner: the engine, `nano.infer`, SFT preparation and `nano.tokenizer` (through `nano._native`)
//! take the names from here.

/// Pads a short SFT sample (never a training target).
pub const PADDING: &str = "<|padding|>";
/// What a character outside the vocabulary becomes.
pub const UNKNOWN: &str = "<|unknown|>";
/// Begin of sequence.
pub const BOS: &str = "<|bos|>";
/// End of sequence: generation stops here; an SFT answer ends with it.
pub const EOS: &str = "<|eos|>";
/// Opens the instruction (the user's prompt).
pub const INSTRUCT_MARK: &str = "<|instruct_mark|>";
/// Closes the instruction; the answer follows.
pub const RESPONSE_MARK: &str = "<|response_mark|>";
/// The original project's signature token.
pub const BD4SUR: &str = "<|BD4SUR|>";

/// The special tokens of every vocabulary Nano builds, as ids 0, 1, ... in this order.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 7] = [
    PADDING,
    UNKNOWN,
    BOS,
    EOS,
    INSTRUCT_MARK,
    RESPONSE_MARK,
    BD4SUR,
];

/// The instruction template: `INSTRUCT_MARK prompt RESPONSE_MARK`, the answer following (and, in SFT
/// data, ending with `EOS`). `instruct` and `response` are the two marks' ids in the vocabulary.
pub fn instruction_ids(instruct: u32, prompt: &[u32], response: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(prompt.len() + 2);
    out.push(instruct);
    out.extend_from_slice(prompt);
    out.push(response);
    out
}

/// The instruction template as a Jinja chat template (what `nano_tokenizer::chat` renders, and what
/// exported GGUF / Hugging Face models carry): each user turn becomes `INSTRUCT_MARK content
/// RESPONSE_MARK`, each assistant turn `content EOS`. A conversation ending with a user turn thus
/// ends where the next answer starts, which is the generation prompt (so `add_generation_prompt`
/// adds nothing); other roles render nothing (the chat API refuses them first).
pub fn chat_template() -> String {
    format!(
        "{{%- for message in messages -%}}\
         {{%- if message['role'] == 'user' -%}}{INSTRUCT_MARK}{{{{ message['content'] }}}}{RESPONSE_MARK}\
         {{%- elif message['role'] == 'assistant' -%}}{{{{ message['content'] }}}}{EOS}\
         {{%- endif -%}}\
         {{%- endfor -%}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_template_renders_the_instruction_template() {
        let t = crate::ChatTemplate::new(&chat_template()).unwrap();
        let messages = r#"[{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                           {"role": "user", "content": "q2"}]"#;
        let text = t.render(messages, true, "{}").unwrap();
        let want = [INSTRUCT_MARK, "q1", RESPONSE_MARK, "a1", EOS].concat()
            + &[INSTRUCT_MARK, "q2", RESPONSE_MARK].concat();
        assert_eq!(text, want);
    }

    #[test]
    fn template_wraps_the_prompt_in_the_marks() {
        assert_eq!(instruction_ids(4, &[9, 8], 5), vec![4, 9, 8, 5]);
        assert_eq!(instruction_ids(4, &[], 5), vec![4, 5]);
    }
}
