//! Prompts as token ids: a completion prompt is encoded as plain text (after the BOS token of a
//! model whose tokenizer adds one); for a model imported with its own chat template (a Hugging
//! Face tokenizer section), chat messages are rendered by that template; otherwise laid out
//! in Nano's instruction template (`nano_tokenizer::special`), the format of its SFT data and of
//! the chat template its GGUF and Hugging Face exports carry: each user turn
//! `<|instruct_mark|> text <|response_mark|>`, each assistant turn `text <|eos|>`, system turns
//! left out (that template has no place for them). Message text is encoded with special tokens
//! off, so text that spells a special token stays text.
use nano_tokenizer::special;

use super::api::{ApiError, Message};
use crate::tokenizer::ModelTokenizer;

pub fn completion_ids(tok: &ModelTokenizer, prompt: &str) -> Vec<u32> {
    tok.prompt_ids(prompt)
}

pub fn chat_ids(tok: &ModelTokenizer, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
    if tok.chat_template().is_some() {
        let mut list = Vec::with_capacity(messages.len());
        for m in messages {
            let text = match &m.content {
                Some(c) => c.text()?,
                None => String::new(),
            };
            list.push(serde_json::json!({"role": m.role, "content": text}));
        }
        let json = serde_json::Value::Array(list).to_string();
        return tok
            .chat_ids(&json, true)
            .map_err(|e| ApiError::bad(e.to_string()).param("messages"));
    }
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
                ids.extend(tok.encode(&text, false));
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
