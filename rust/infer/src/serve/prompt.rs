//! Prompts as token ids: a completion prompt is encoded as plain text; chat messages are laid out
//! in Nano's instruction template (`nano_tokenizer::special`), the format of its SFT data and of
//! the chat template its GGUF and Hugging Face exports carry: each user turn
//! `<|instruct_mark|> text <|response_mark|>`, each assistant turn `text <|eos|>`, system turns
//! left out (that template has no place for them). Message text is encoded with special tokens
//! off, so text that spells a special token stays text.
use nano_tokenizer::{special, Tokenizer};

use super::api::{ApiError, Message};

pub fn completion_ids(tok: &Tokenizer, prompt: &str) -> Vec<u32> {
    tok.encode(prompt, false)
}

pub fn chat_ids(tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
    let mark = |name: &str| {
        tok.token_to_id(name).ok_or_else(|| {
            ApiError::bad(format!(
                "this model's vocabulary lacks {name}: it has no chat template"
            ))
        })
    };
    let (instruct, response, eos) = (
        mark(special::INSTRUCT_MARK)?,
        mark(special::RESPONSE_MARK)?,
        mark(special::EOS)?,
    );
    let last = messages
        .last()
        .ok_or_else(|| ApiError::bad("messages must not be empty").param("messages"))?;
    if last.role != "user" {
        return Err(ApiError::bad(format!(
            "the last message must come from the user, not {:?}",
            last.role
        ))
        .param("messages"));
    }
    let mut ids = Vec::new();
    for m in messages {
        let text = match &m.content {
            Some(c) => c.text()?,
            None => String::new(),
        };
        match m.role.as_str() {
            "user" => ids.extend(special::instruction_ids(
                instruct,
                &tok.encode(&text, false),
                response,
            )),
            "assistant" => {
                tok.encode_into(&text, false, &mut ids);
                ids.push(eos);
            }
            "system" | "developer" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "message role must be system, user or assistant, got {other:?}"
                ))
                .param("messages"))
            }
        }
    }
    Ok(ids)
}
