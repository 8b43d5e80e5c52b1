//! Prompts as token ids: a completion prompt is encoded as plain text (after the BOS token of a
//! model whose tokenizer adds one); chat messages become the prompt `crate::chat` builds for every
//! engine (the model's chat template, rendered, encoded with special tokens matched).
use super::api::{ApiError, Message};
use crate::chat::{self, ChatMessage};
use crate::tokenizer::ModelTokenizer;

pub fn completion_ids(tok: &ModelTokenizer, prompt: &str) -> Vec<u32> {
    tok.prompt_ids(prompt)
}

pub fn chat_ids(tok: &ModelTokenizer, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
    let mut turns = Vec::with_capacity(messages.len());
    for m in messages {
        let content = match &m.content {
            Some(c) => c.text()?,
            None => String::new(),
        };
        turns.push(ChatMessage {
            role: m.role.clone(),
            content,
        });
    }
    chat::chat_prompt_ids(tok, &turns).map_err(|e| ApiError::bad(e.to_string()).param("messages"))
}
