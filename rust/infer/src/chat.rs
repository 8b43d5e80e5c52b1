//! Chat: a conversation of OpenAI-style messages (`[{"role", "content"}]`) rendered with the model's
//! chat template (`nano_tokenizer::chat`) into the prompt the next answer is generated from. This is
//! the one place that builds chat prompts: the Python binding (`nano.Engine.chat`), the browser
//! build, `nano-infer -i` and `nano-infer serve` all call it.
use nano_tokenizer::{special, ChatTemplate};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, GenerateOptions, GenerateStats};
use crate::error::{Error, Result};
use crate::tokenizer::ModelTokenizer;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// "user" or "assistant"; "system" and "developer" turns are left out by Nano's instruction
    /// template, which has no place for them (an imported model's template decides for itself).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Messages from their JSON text (a list of `{"role": ..., "content": ...}` objects), refused with
/// the position of what is wrong.
pub fn parse_messages(json: &str) -> Result<Vec<ChatMessage>> {
    serde_json::from_str(json).map_err(|e| {
        Error::InvalidInput(format!(
            "chat messages must be a list of {{\"role\": ..., \"content\": ...}} objects: {e}"
        ))
    })
}

/// Roles Nano's instruction template leaves out (it renders nothing for them, in every engine and
/// in the peers that run its exported template), as it has no place for them.
const UNPLACED_ROLES: [&str; 2] = ["system", "developer"];

/// Apart from system turns, the turns must alternate user, assistant, user, ... and end with a
/// user turn (the one to answer): the instruction template has a place for nothing else.
fn check_turns(messages: &[ChatMessage]) -> Result<()> {
    if messages.is_empty() {
        return Err(Error::InvalidInput(
            "a chat needs at least one message".into(),
        ));
    }
    let placed = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !UNPLACED_ROLES.contains(&m.role.as_str()));
    for (turn, (i, m)) in placed.enumerate() {
        let expected = ["user", "assistant"][turn % 2];
        if m.role != expected {
            let why = match m.role.as_str() {
                "user" | "assistant" => {
                    "turns must alternate user, assistant, user, ...".to_string()
                }
                other => format!(
                    "unknown role {other:?} (roles are \"user\", \"assistant\" and \"system\")"
                ),
            };
            return Err(Error::InvalidInput(format!(
                "chat message {i} has role {:?} where {expected:?} was expected: {why}",
                m.role
            )));
        }
    }
    let last = messages
        .iter()
        .rfind(|m| !UNPLACED_ROLES.contains(&m.role.as_str()));
    if last.is_none_or(|m| m.role != "user") {
        return Err(Error::InvalidInput(
            "the last chat message must be the user's (the turn to answer)".into(),
        ));
    }
    Ok(())
}

/// The Jinja source of the chat template of a model with tokenizer `tok`: the one an imported
/// model's file carries, else Nano's instruction template ([`special::chat_template`]).
pub fn chat_template(tok: &ModelTokenizer) -> String {
    tok.hf()
        .and_then(|h| h.chat_template.clone())
        .unwrap_or_else(special::chat_template)
}

/// The text the conversation becomes under the chat template, ending where the answer starts.
pub fn chat_prompt(tok: &ModelTokenizer, messages: &[ChatMessage]) -> Result<String> {
    if tok.chat_template().is_some() {
        // an imported model: its own template decides which roles and orders it takes
        if messages.is_empty() {
            return Err(Error::InvalidInput(
                "a chat needs at least one message".into(),
            ));
        }
        let json = serde_json::to_string(messages)
            .map_err(|e| Error::InvalidInput(format!("chat messages: {e}")))?;
        return tok.render_chat(&json, true);
    }
    check_turns(messages)?;
    let template =
        ChatTemplate::new(&chat_template(tok)).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let messages = serde_json::to_string(messages)
        .map_err(|e| Error::InvalidInput(format!("chat messages: {e}")))?;
    // Templates of other models name these; Nano's writes its marks itself.
    let mut extra = serde_json::Map::new();
    for (name, token) in [("bos_token", special::BOS), ("eos_token", special::EOS)] {
        if tok.token_to_id(token).is_some() {
            extra.insert(name.into(), token.into());
        }
    }
    let extra = serde_json::Value::Object(extra).to_string();
    template
        .render(&messages, true, &extra)
        .map_err(|e| Error::InvalidInput(e.to_string()))
}

/// [`chat_prompt`] as token ids, encoded with the special tokens matched (the template's marks are
/// special tokens; so is a mark typed in a message, as with `transformers`' `apply_chat_template`).
pub fn chat_prompt_ids(tok: &ModelTokenizer, messages: &[ChatMessage]) -> Result<Vec<u32>> {
    Ok(tok.encode(&chat_prompt(tok, messages)?, true))
}

impl Engine {
    /// [`chat_template`] of this engine's model.
    pub fn chat_template(&self) -> String {
        chat_template(self.model().tokenizer())
    }

    /// [`chat_prompt`] for this engine's model.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        chat_prompt(self.model().tokenizer(), messages)
    }

    /// The token ids the next answer is generated after ([`chat_prompt_ids`]), checked as every
    /// prompt is (not empty, within the context, inside the vocabulary).
    pub fn chat_prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let ids = chat_prompt_ids(self.model().tokenizer(), messages)?;
        self.check_prompt_ids(&ids)?;
        Ok(ids)
    }

    /// Drops the oldest exchanges (a user turn and its answer) from `messages` until the prompt
    /// leaves room in the context for at least one new token; returns how many messages went. The
    /// last user turn always stays (if it alone is too long, [`Engine::chat`] refuses it).
    pub fn fit_chat(&self, messages: &mut Vec<ChatMessage>) -> Result<usize> {
        let block = self.model().config().block_size;
        let mut dropped = 0;
        while messages.len() > 2 {
            let text = self.chat_prompt(messages)?;
            if self.model().tokenizer().encode(&text, true).len() < block {
                break;
            }
            messages.drain(..2);
            dropped += 2;
        }
        Ok(dropped)
    }

    /// Generates the assistant's answer to the conversation, handing each new piece to `on_piece`
    /// (return false to stop), as [`Engine::generate`] does; `opts.instruct` is ignored (the chat
    /// template already wraps every turn).
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerateStats> {
        opts.validate()?;
        let ids = self.chat_prompt_ids(messages)?;
        self.generate_ids(ids, opts, on_piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(rs: &[&str]) -> Vec<ChatMessage> {
        rs.iter()
            .map(|r| ChatMessage {
                role: r.to_string(),
                content: "x".into(),
            })
            .collect()
    }

    #[test]
    fn turns_must_alternate_and_end_with_the_user() {
        assert!(check_turns(&roles(&["user"])).is_ok());
        assert!(check_turns(&roles(&["user", "assistant", "user"])).is_ok());
        assert!(check_turns(&roles(&[
            "system",
            "user",
            "developer",
            "assistant",
            "user"
        ]))
        .is_ok());
        for (bad, why) in [
            (vec![], "at least one"),
            (vec!["assistant"], "alternate"),
            (vec!["user", "user"], "alternate"),
            (vec!["user", "assistant"], "last chat message"),
            (vec!["system"], "last chat message"),
            (vec!["user", "system", "user"], "alternate"),
            (vec!["user", "tool"], "unknown role"),
        ] {
            let err = check_turns(&roles(&bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn messages_parse_from_json_or_are_refused() {
        let m = parse_messages(r#"[{"role": "user", "content": "hi"}]"#).unwrap();
        assert_eq!(m, vec![ChatMessage::user("hi")]);
        for bad in [
            "{}",
            "[{\"role\": \"user\"}]",
            "[{\"role\": \"user\", \"content\": 3}]",
            "[{\"role\": \"user\", \"content\": \"a\", \"name\": \"b\"}]",
            "[",
        ] {
            assert!(parse_messages(bad).is_err(), "{bad}");
        }
    }
}
