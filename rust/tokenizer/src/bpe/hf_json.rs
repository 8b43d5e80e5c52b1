//! Reading HF `tokenizer.json` (and `tokenizer_config.json`) into a [`BpeSpec`]. Only what the
//! supported families use is accepted; anything else is refused with the field that has it, so a
//! tokenizer never silently encodes differently from HF.
use std::path::Path;

use serde_json::{Map, Value};

use super::normalize::{Normalizer, Step};
use super::{AddedToken, BpeSpec, BpeTokenizer, Family, Pattern};
use crate::{read_utf8_file, Result, TokenizerError};

/// Special-token names and the chat template of a model (`tokenizer_config.json`, GGUF).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HfConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    /// Whether a BOS token starts every encoded prompt (`add_bos_token`), when stated.
    pub add_bos_token: Option<bool>,
    /// The Jinja chat template, when the model has one.
    pub chat_template: Option<String>,
}

fn bad<T>(field: &str, msg: impl std::fmt::Display) -> Result<T> {
    Err(TokenizerError::Invalid(format!("{field}: {msg}")))
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str, at: &str) -> Result<&'a str> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        other => bad(
            &format!("{at}.{field}"),
            format!("expected a string, found {other:?}"),
        ),
    }
}

fn get_bool(obj: &Map<String, Value>, field: &str, default: bool) -> Result<bool> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => bad(field, format!("expected true or false, found {other}")),
    }
}

fn is_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .map_or_else(|| bad(at, "expected an object"), Ok)
}

fn type_of<'a>(obj: &'a Map<String, Value>, at: &str) -> Result<&'a str> {
    get_str(obj, "type", at)
}

/// The normalizer: none, NFC, or SentencePiece's Prepend("▁") + Replace(" " → "▁"), in sequences.
fn normalizer(v: Option<&Value>) -> Result<Normalizer> {
    let mut steps = Vec::new();
    if !is_null(v) {
        collect_normalizer(v.unwrap_or(&Value::Null), &mut steps)?;
    }
    Ok(Normalizer { steps })
}

fn collect_normalizer(v: &Value, steps: &mut Vec<Step>) -> Result<()> {
    let at = "normalizer";
    let obj = object(v, at)?;
    match type_of(obj, at)? {
        "Sequence" => {
            let Some(list) = obj.get("normalizers").and_then(Value::as_array) else {
                return bad("normalizer.normalizers", "expected a list");
            };
            for n in list {
                collect_normalizer(n, steps)?;
            }
        }
        "NFC" => steps.push(Step::Nfc),
        "Prepend" => steps.push(Step::Prepend(get_str(obj, "prepend", at)?.to_string())),
        "Replace" => {
            let pattern = obj.get("pattern").and_then(Value::as_object);
            let Some(Value::String(p)) = pattern.and_then(|p| p.get("String")) else {
                return bad(
                    "normalizer.Replace.pattern",
                    "only literal String patterns are supported",
                );
            };
            steps.push(Step::Replace {
                pattern: p.clone(),
                content: get_str(obj, "content", at)?.to_string(),
            });
        }
        other => return bad(at, format!("normalizer {other:?} is not supported")),
    }
    Ok(())
}

/// The byte-level pre-tokenizer: `ByteLevel { use_regex: true }` (GPT-2's pattern), or
/// `Sequence [Split(pattern, Isolated), ByteLevel { use_regex: false }]`.
fn byte_level_pre_tokenizer(v: &Value) -> Result<(Pattern, bool)> {
    let at = "pre_tokenizer";
    let obj = object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => {
            if !get_bool(obj, "use_regex", true)? {
                return bad(
                    at,
                    "ByteLevel without its regex and no Split before it is not supported",
                );
            }
            Ok((Pattern::Gpt2, get_bool(obj, "add_prefix_space", false)?))
        }
        "Sequence" => {
            let list = obj
                .get("pretokenizers")
                .and_then(Value::as_array)
                .map_or_else(|| bad("pre_tokenizer.pretokenizers", "expected a list"), Ok)?;
            let [split, byte_level] = list.as_slice() else {
                return bad(at, "expected Sequence [Split, ByteLevel]");
            };
            let split = object(split, at)?;
            let byte_level = object(byte_level, at)?;
            if type_of(split, at)? != "Split" || type_of(byte_level, at)? != "ByteLevel" {
                return bad(at, "expected Sequence [Split, ByteLevel]");
            }
            let Some(Value::String(regex)) = split
                .get("pattern")
                .and_then(Value::as_object)
                .and_then(|p| p.get("Regex"))
            else {
                return bad("pre_tokenizer.Split.pattern", "expected a Regex pattern");
            };
            let Some(pattern) = Pattern::from_regex(regex) else {
                return bad(
                    "pre_tokenizer.Split.pattern",
                    format!("{regex:?} is not the GPT-2, Llama 3 or Qwen2 pattern"),
                );
            };
            if get_str(split, "behavior", at)? != "Isolated" || get_bool(split, "invert", false)? {
                return bad(
                    "pre_tokenizer.Split",
                    "only behavior Isolated, not inverted, is supported",
                );
            }
            if get_bool(byte_level, "use_regex", true)? {
                return bad(
                    "pre_tokenizer.ByteLevel",
                    "use_regex after a Split is not supported",
                );
            }
            if get_bool(byte_level, "add_prefix_space", false)? {
                return bad(
                    "pre_tokenizer.ByteLevel",
                    "add_prefix_space after a Split is not supported",
                );
            }
            Ok((pattern, false))
        }
        other => bad(at, format!("pre-tokenizer {other:?} is not supported")),
    }
}

/// The decoder of a SentencePiece vocabulary: whether it strips one leading space.
fn strips_leading_space(v: Option<&Value>) -> Result<bool> {
    let Some(obj) = v.and_then(Value::as_object) else {
        return Ok(false);
    };
    let steps: Vec<&Value> = match obj.get("decoders").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![v.unwrap_or(&Value::Null)],
    };
    for s in steps {
        let Some(s) = s.as_object() else { continue };
        if s.get("type").and_then(Value::as_str) == Some("Strip")
            && s.get("content").and_then(Value::as_str) == Some(" ")
            && s.get("start").and_then(Value::as_u64).unwrap_or(0) > 0
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn merges(v: Option<&Value>) -> Result<Vec<(String, String)>> {
    let Some(list) = v.and_then(Value::as_array) else {
        return bad("model.merges", "expected a list");
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            // Older files: "left right" (neither part contains a space).
            Value::String(s) => match s.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                _ => bad(
                    &format!("model.merges[{i}]"),
                    format!("{s:?} is not \"left right\""),
                ),
            },
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok((a.clone(), b.clone())),
                _ => bad(&format!("model.merges[{i}]"), "expected [left, right]"),
            },
            _ => bad(&format!("model.merges[{i}]"), "expected a string or a pair"),
        })
        .collect()
}

fn added_tokens(v: Option<&Value>) -> Result<Vec<AddedToken>> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let at = format!("added_tokens[{i}]");
        let obj = object(t, &at)?;
        let content = get_str(obj, "content", &at)?.to_string();
        for flag in ["single_word", "lstrip", "rstrip"] {
            if get_bool(obj, flag, false)? {
                return bad(
                    &at,
                    format!("{content:?} sets {flag}, which is not supported"),
                );
            }
        }
        let Some(id) = obj
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
        else {
            return bad(&format!("{at}.id"), "expected a 32-bit id");
        };
        out.push(AddedToken {
            id,
            content,
            special: get_bool(obj, "special", false)?,
            normalized: get_bool(obj, "normalized", true)?,
        });
    }
    Ok(out)
}

/// Parses the text of a `tokenizer.json`.
pub(crate) fn parse(text: &str, config: HfConfig) -> Result<BpeSpec> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| TokenizerError::Json(e.to_string()))?;
    let root = object(&root, "tokenizer.json")?;
    let model = object(root.get("model").unwrap_or(&Value::Null), "model")?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if kind != "BPE" {
        return bad(
            "model.type",
            format!("{kind:?} models are not supported (only BPE)"),
        );
    }
    if !is_null(model.get("dropout")) {
        return bad("model.dropout", "BPE dropout is not supported");
    }
    for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if !matches!(model.get(field), None | Some(Value::Null)) {
            return bad(&format!("model.{field}"), "is not supported");
        }
    }
    let Some(vocab) = model.get("vocab").and_then(Value::as_object) else {
        return bad("model.vocab", "expected an object of token: id");
    };
    let vocab = vocab
        .iter()
        .map(
            |(t, id)| match id.as_u64().and_then(|i| u32::try_from(i).ok()) {
                Some(id) => Ok((t.clone(), id)),
                None => bad("model.vocab", format!("{t:?} has no 32-bit id")),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let merges = merges(model.get("merges"))?;
    let normalizer = normalizer(root.get("normalizer"))?;
    let byte_fallback = get_bool(model, "byte_fallback", false)?;
    let pre = root.get("pre_tokenizer");
    let (family, strip) = if is_null(pre) {
        // SentencePiece style: no pre-tokenizer, the normalizer marks spaces.
        let unk_token = match model.get("unk_token") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let family = Family::SentencePiece {
            byte_fallback,
            unk_token,
            fuse_unk: get_bool(model, "fuse_unk", false)?,
        };
        (family, strips_leading_space(root.get("decoder"))?)
    } else {
        if byte_fallback {
            return bad(
                "model.byte_fallback",
                "byte fallback with a byte-level pre-tokenizer is not supported",
            );
        }
        if normalizer.steps.iter().any(|s| *s != Step::Nfc) {
            return bad(
                "normalizer",
                "only NFC is supported before a byte-level pre-tokenizer",
            );
        }
        let (pattern, add_prefix_space) = byte_level_pre_tokenizer(pre.unwrap_or(&Value::Null))?;
        (
            Family::ByteLevel {
                pattern,
                add_prefix_space,
            },
            false,
        )
    };
    Ok(BpeSpec {
        family,
        normalizer,
        vocab,
        merges,
        added: added_tokens(root.get("added_tokens"))?,
        ignore_merges: get_bool(model, "ignore_merges", false)?,
        strip_leading_space: strip,
        config,
    })
}

/// A token name in `tokenizer_config.json`: a string or an object with `content`.
fn token_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Parses the text of a `tokenizer_config.json`.
pub(crate) fn parse_config(text: &str) -> Result<HfConfig> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| TokenizerError::Json(e.to_string()))?;
    let root = object(&root, "tokenizer_config.json")?;
    let chat_template = match root.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // A list of named templates: the one named "default".
        Some(Value::Array(list)) => list.iter().find_map(|t| {
            let t = t.as_object()?;
            (t.get("name")?.as_str()? == "default")
                .then(|| t.get("template")?.as_str().map(str::to_string))?
        }),
        Some(_) => {
            return bad(
                "chat_template",
                "expected a string or a list of named templates",
            )
        }
    };
    Ok(HfConfig {
        bos_token: token_name(root.get("bos_token")),
        eos_token: token_name(root.get("eos_token")),
        pad_token: token_name(root.get("pad_token")),
        unk_token: token_name(root.get("unk_token")),
        add_bos_token: root.get("add_bos_token").and_then(Value::as_bool),
        chat_template,
    })
}

/// Prefixes a file's errors with its path.
fn in_file(path: &Path, e: TokenizerError) -> TokenizerError {
    match e {
        TokenizerError::Json(m) => TokenizerError::Json(format!("{}: {m}", path.display())),
        TokenizerError::Invalid(m) => TokenizerError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    }
}

impl BpeTokenizer {
    /// From the text of a `tokenizer.json` (and the model's special-token names, if known).
    pub fn from_hf_json(text: &str, config: HfConfig) -> Result<BpeTokenizer> {
        BpeTokenizer::from_spec(parse(text, config)?)
    }

    /// From a `tokenizer.json` file, or a model folder holding `tokenizer.json` (and, when
    /// present, `tokenizer_config.json` for special-token names and the chat template).
    pub fn from_hf_path(path: impl AsRef<Path>) -> Result<BpeTokenizer> {
        let path = path.as_ref();
        let (json, config_path) = if path.is_dir() {
            (
                path.join("tokenizer.json"),
                Some(path.join("tokenizer_config.json")),
            )
        } else {
            (
                path.to_path_buf(),
                path.parent().map(|p| p.join("tokenizer_config.json")),
            )
        };
        let config = match config_path.filter(|p| p.is_file()) {
            Some(p) => parse_config(&read_utf8_file(&p)?).map_err(|e| in_file(&p, e))?,
            None => HfConfig::default(),
        };
        let text = read_utf8_file(&json)?;
        BpeTokenizer::from_hf_json(&text, config).map_err(|e| in_file(&json, e))
    }
}
