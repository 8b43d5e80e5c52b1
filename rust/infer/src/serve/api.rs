//! The OpenAI-compatible request bodies, their checks, and the error bodies
//! (`{"error": {"message", "type", "param", "code"}}`).
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::sampler::SamplerOptions;

/// An error answer: status, OpenAI error type and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }
    pub fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }
    pub fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// `stop`: one string or a list of strings.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// The fields /v1/completions and /v1/chat/completions share. Unknown fields are ignored, as
/// OpenAI clients send fields a server may not know.
#[derive(Deserialize, Debug, Default)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    /// The chat endpoint's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Extension (llama.cpp's and vLLM's name).
    pub top_k: Option<i64>,
    /// Extension: Nano's multiplicative repetition penalty (docs/sampling.md).
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    pub n: Option<u64>,
    pub stream: Option<bool>,
    /// Extension: keep generating past `<|eos|>`.
    pub ignore_eos: Option<bool>,
    /// Completions: how many alternatives to report with each token's log-probability (0..=5).
    /// Chat: refused unless absent, null or false.
    pub logprobs: Option<serde_json::Value>,
    pub top_logprobs: Option<serde_json::Value>,
}

/// A prompt: a string, or a list holding one string.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub common: Common,
}

/// Message content: a string or a list of `{"type": "text", "text": ...}` parts.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize, Debug)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub common: Common,
}

impl Content {
    pub fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    _ => Err(ApiError::bad(format!(
                        "message content part of type {:?} is not supported (text only)",
                        p.kind
                    ))
                    .param("messages")),
                })
                .collect(),
        }
    }
}

/// Checked sampling and length options of a request.
pub struct Checked {
    pub sampler: SamplerOptions,
    pub seed: u64,
    /// As asked (None: up to the end of the context).
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub ignore_eos: bool,
    pub logprobs: Option<usize>,
}

/// Most alternatives a request may ask for with `logprobs` (OpenAI's limit for completions).
pub const MAX_LOGPROBS: usize = 5;

/// Most stop strings per request, and longest one (bytes).
pub const MAX_STOPS: usize = 8;
pub const MAX_STOP_BYTES: usize = 256;

impl Common {
    /// Checks the options (sampling ones through [`SamplerOptions::validate`]);
    /// `max_tokens_limit` is the server's cap on `max_tokens`; `chat`: for /v1/chat/completions.
    pub fn check(
        &self,
        served: &str,
        max_tokens_limit: usize,
        chat: bool,
    ) -> Result<Checked, ApiError> {
        if let Some(m) = &self.model {
            if m != served {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    format!("the model {m:?} does not exist; this server serves {served:?}"),
                )
                .param("model")
                .code("model_not_found"));
            }
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad(format!("n must be 1, got {n}")).param("n"));
            }
        }
        let absent = |v: &Option<serde_json::Value>| {
            matches!(
                v,
                None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false))
            )
        };
        let logprobs = if !chat {
            if !absent(&self.top_logprobs) {
                return Err(ApiError::bad(
                    "top_logprobs is for chat; completions take logprobs: N",
                )
                .param("top_logprobs"));
            }
            match &self.logprobs {
                v if absent(v) => None,
                Some(v) => match v.as_u64() {
                    Some(n) if n as usize <= MAX_LOGPROBS => Some(n as usize),
                    _ => {
                        return Err(ApiError::bad(format!(
                            "logprobs must be an integer from 0 to {MAX_LOGPROBS}, got {v}"
                        ))
                        .param("logprobs"))
                    }
                },
                None => None,
            }
        } else if !absent(&self.logprobs) || !absent(&self.top_logprobs) {
            return Err(
                ApiError::bad("logprobs are supported by /v1/completions only").param("logprobs"),
            );
        } else {
            None
        };
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(ApiError::bad(format!(
                    "{name} is not supported (only 0); use repetition_penalty (docs/sampling.md)"
                ))
                .param(if name == "presence_penalty" {
                    "presence_penalty"
                } else {
                    "frequency_penalty"
                }));
            }
        }
        let top_k = SamplerOptions::top_k_from(self.top_k.unwrap_or(0))
            .map_err(|e| ApiError::bad(e.to_string()).param("top_k"))?;
        let sampler = SamplerOptions {
            temperature: self.temperature.unwrap_or(1.0),
            top_k,
            top_p: self.top_p.unwrap_or(1.0),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
        };
        sampler
            .validate()
            .map_err(|e| ApiError::bad(e.to_string()))?;
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => None,
            Some(0) => {
                return Err(ApiError::bad("max_tokens must be at least 1").param("max_tokens"))
            }
            Some(m) if m > max_tokens_limit as u64 => {
                return Err(ApiError::bad(format!(
                    "max_tokens must be at most {max_tokens_limit}, got {m}"
                ))
                .param("max_tokens"))
            }
            Some(m) => Some(m as usize),
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS
            || stop
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(ApiError::bad(format!(
                "stop must be at most {MAX_STOPS} non-empty strings of at most {MAX_STOP_BYTES} bytes"
            ))
            .param("stop"));
        }
        Ok(Checked {
            sampler,
            seed: self.seed.unwrap_or_else(random_seed),
            max_tokens,
            stop,
            stream: self.stream.unwrap_or(false),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            logprobs,
        })
    }
}

/// A seed for a request that gives none (OpenAI's default: a different text each time).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
