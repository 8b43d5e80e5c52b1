//! The chat API: a conversation becomes the instruction template around each turn, built through
//! the Jinja chat template and the tokenizer, and the answer is generated after it.
mod common;

use common::{config, refs, weights};
use nano_infer::format::{v2026, DType, ModelConfig, TokenList};
use nano_infer::{parse_messages, ChatMessage, Engine, GenerateOptions, Model};
use nano_tokenizer::special;

/// Nano's special tokens (ids 0..6) and the letters a.. as ordinary tokens.
fn nano_tokens(n: usize) -> TokenList {
    let mut tokens: Vec<String> = special::DEFAULT_SPECIAL_TOKENS.map(String::from).to_vec();
    let mut flags = vec![true; tokens.len()];
    for i in 0..n - tokens.len() {
        tokens.push(char::from(b'a' + i as u8).to_string());
        flags.push(false);
    }
    TokenList {
        tokens,
        special: flags,
    }
}

fn engine(block_size: usize) -> Engine {
    let c = ModelConfig {
        block_size,
        vocab_size: 16,
        ..config()
    };
    let w = weights(&c);
    let bytes = v2026::encode_model(&c, &nano_tokens(16), None, &refs(&w), DType::F32).unwrap();
    Engine::new(Model::from_bytes(bytes).unwrap(), Some(1)).unwrap()
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::user("ab"),
        ChatMessage::assistant("cde"),
        ChatMessage::user("f"),
    ]
}

#[test]
fn a_conversation_is_the_instruction_template_around_each_turn() {
    let e = engine(64);
    let tok = e.model().tokenizer().clone();
    let id = |t: &str| tok.token_to_id(t).unwrap();
    let (im, rm, eos) = (
        id(special::INSTRUCT_MARK),
        id(special::RESPONSE_MARK),
        id(special::EOS),
    );
    let letters = |s: &str| tok.encode(s, false);
    let mut want = special::instruction_ids(im, &letters("ab"), rm);
    want.extend(letters("cde"));
    want.push(eos);
    want.extend(special::instruction_ids(im, &letters("f"), rm));
    assert_eq!(e.chat_prompt_ids(&conversation()).unwrap(), want);
    // one user turn is exactly the instruction mode of `generate`
    assert_eq!(
        e.chat_prompt_ids(&[ChatMessage::user("ab")]).unwrap(),
        e.prompt_ids("ab", true).unwrap()
    );
    // messages from JSON build the same prompt
    let parsed = parse_messages(
        r#"[{"role": "user", "content": "ab"}, {"role": "assistant", "content": "cde"},
            {"role": "user", "content": "f"}]"#,
    )
    .unwrap();
    assert_eq!(parsed, conversation());
}

#[test]
fn chat_generates_what_generate_does_from_the_same_ids() {
    let mut e = engine(64);
    let opts = GenerateOptions {
        max_new_tokens: 8,
        temperature: 0.0,
        ..Default::default()
    };
    let mut chat_text = String::new();
    let s1 = e
        .chat(&conversation(), &opts, &mut |p| {
            chat_text.push_str(p);
            true
        })
        .unwrap();
    let ids = e.chat_prompt_ids(&conversation()).unwrap();
    let mut ids_text = String::new();
    let s2 = e
        .generate_ids(ids.clone(), &opts, &mut |p| {
            ids_text.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(chat_text, ids_text);
    assert_eq!(s1.prompt_tokens, ids.len());
    assert_eq!(s1.generated_tokens, s2.generated_tokens);
}

#[test]
fn bad_conversations_are_refused_with_a_reason() {
    let mut e = engine(8);
    let opts = GenerateOptions::default();
    let err = |m: &[ChatMessage], e: &mut Engine| {
        e.chat(m, &opts, &mut |_| true).unwrap_err().to_string()
    };
    assert!(err(&[], &mut e).contains("at least one message"));
    assert!(err(&[ChatMessage::assistant("a")], &mut e).contains("alternate"));
    // 7 letters and the two marks: 9 ids in a context of 8
    assert!(err(&[ChatMessage::user("abcdefg")], &mut e).contains("longer than the context"));
}

#[test]
fn a_long_conversation_loses_its_oldest_exchanges_to_fit() {
    // ids per exchange: user "ab" = 4, answer "cde" + eos = 4; the last turn "f" = 3
    let e = engine(12);
    let mut h = conversation();
    assert_eq!(e.fit_chat(&mut h).unwrap(), 0, "11 ids leave room for one");
    let mut h = [conversation(), conversation()].concat();
    h.drain(3..4); // user, assistant, user, assistant, user: 4 + 4 + 4 + 4 + 3 ids
    let mut want = h[2..].to_vec();
    assert_eq!(e.fit_chat(&mut h).unwrap(), 2);
    assert_eq!(h, want);
    assert!(e.chat_prompt_ids(&h).unwrap().len() < 12);
    // the last user turn stays even when it alone is too long
    want = vec![ChatMessage::user("abcdefghijkl")];
    h = [conversation()[..2].to_vec(), want.clone()].concat();
    assert_eq!(e.fit_chat(&mut h).unwrap(), 2);
    assert_eq!(h, want);
}
