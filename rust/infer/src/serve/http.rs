//! Routes, handlers and the accept loop of the server.
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::api::{ApiError, ChatRequest, Checked, CompletionRequest, Prompt};
use super::batcher::{Event, Job, Shared, TokenLogprob};
use super::{prompt, Settings, MAX_CONNECTIONS};
use crate::tokenizer::ModelTokenizer;
use crate::Error;

struct App {
    s: Settings,
    shared: Arc<Shared>,
    tokenizer: Arc<ModelTokenizer>,
    created: u64,
    next_id: AtomicU64,
}

type AppState = State<Arc<App>>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

pub(crate) async fn serve(
    addr: String,
    s: Settings,
    shared: Arc<Shared>,
    tokenizer: Arc<ModelTokenizer>,
) -> Result<(), Error> {
    let io_err = |e: std::io::Error| Error::Io {
        path: addr.clone(),
        source: e,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(io_err)?;
    let local = listener.local_addr().map_err(io_err)?;
    let idle = s.idle_timeout;
    let body_limit = s.max_body_bytes;
    let protected = s.api_key.is_some();
    let app = Arc::new(App {
        s,
        shared,
        tokenizer,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        next_id: AtomicU64::new(1),
    });
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat));
    let api = if protected {
        api.layer(middleware::from_fn_with_state(app.clone(), auth))
    } else {
        api
    };
    let router = Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app.clone());
    eprintln!(
        "nano-infer serve: {} on http://{local} ({} parallel, context {}, KV cache {:.1} MiB)",
        app.s.model_id,
        app.s.parallel,
        app.s.ctx,
        app.s.kv_cache_bytes as f64 / (1 << 20) as f64
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => return Ok(()),
        };
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue, // e.g. too many open files: keep serving the others
            },
            _ = &mut shutdown => return Ok(()),
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn auth(State(app): AppState, req: Request, next: Next) -> Response {
    let want = app.s.api_key.as_deref().unwrap_or_default();
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared without an early exit, so the time taken says nothing about the key.
    let ok = got.is_some_and(|g| {
        g.len() == want.len()
            && g.bytes()
                .zip(want.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0
    });
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "a valid API key is required: Authorization: Bearer KEY",
        )
        .code("invalid_api_key")
        .into_response();
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

async fn health(State(app): AppState) -> Json<Value> {
    let sh = &app.shared;
    Json(json!({
        "status": "ok",
        "slots_busy": sh.busy.load(Ordering::Relaxed),
        "slots": app.s.parallel,
        "queued": sh.queued(),
        "requests_completed": sh.completed.load(Ordering::Relaxed),
        "requests_cancelled": sh.cancelled.load(Ordering::Relaxed),
    }))
}

async fn models(State(app): AppState) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": app.s.model_id, "object": "model", "created": app.created, "owned_by": "nano",
    }]}))
}

/// The request body as `T`: a body over the limit is 413, bad JSON or wrong types 400.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body =
        body.map_err(|e| ApiError::new(e.status(), "invalid_request_error", e.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid request body: {e}")))
}

async fn completions(State(app): AppState, body: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<(Vec<u32>, Checked), ApiError> {
        let req: CompletionRequest = parse(body)?;
        let checked = req.common.check(&app.s.model_id, app.s.max_tokens, false)?;
        let text = match req.prompt {
            Prompt::One(s) => s,
            Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
            Prompt::Many(_) => {
                return Err(ApiError::bad("prompt must be one string").param("prompt"))
            }
        };
        Ok((prompt::completion_ids(&app.tokenizer, &text), checked))
    };
    match run() {
        Ok((ids, checked)) => generate(app, ids, checked, Kind::Completion).await,
        Err(e) => e.into_response(),
    }
}

async fn chat(State(app): AppState, body: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<(Vec<u32>, Checked), ApiError> {
        let req: ChatRequest = parse(body)?;
        let checked = req.common.check(&app.s.model_id, app.s.max_tokens, true)?;
        Ok((prompt::chat_ids(&app.tokenizer, &req.messages)?, checked))
    };
    match run() {
        Ok((ids, checked)) => generate(app, ids, checked, Kind::Chat).await,
        Err(e) => e.into_response(),
    }
}

/// Queues the request and answers with its text, whole or as server-sent events.
async fn generate(app: Arc<App>, ids: Vec<u32>, c: Checked, kind: Kind) -> Response {
    let ctx = app.s.ctx;
    if ids.is_empty() {
        return ApiError::bad("the prompt is empty: at least one token is needed")
            .param("prompt")
            .into_response();
    }
    if ids.len() >= ctx {
        return ApiError::bad(format!(
            "the prompt of {} tokens leaves no room in the context of {ctx} tokens",
            ids.len()
        ))
        .param("prompt")
        .into_response();
    }
    let max_tokens = c.max_tokens.unwrap_or(ctx).min(ctx - ids.len());
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job {
        ids,
        sampler: c.sampler,
        seed: c.seed,
        max_tokens,
        stop: c.stop,
        ignore_eos: c.ignore_eos,
        logprobs: c.logprobs,
        events: tx,
    };
    if app.shared.submit(job).is_err() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the server is busy: too many requests are waiting; retry later",
        )
        .into_response();
    }
    let n = app.next_id.fetch_add(1, Ordering::Relaxed);
    let id = match kind {
        Kind::Completion => format!("cmpl-{n}"),
        Kind::Chat => format!("chatcmpl-{n}"),
    };
    let shape = Shape {
        logprobs: c.logprobs.is_some(),
        id,
        kind,
        model: app.s.model_id.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    if c.stream {
        stream(shape, rx).into_response()
    } else {
        whole(shape, rx).await
    }
}

/// The fixed fields of one response's objects.
struct Shape {
    id: String,
    kind: Kind,
    model: String,
    created: u64,
    /// The request asked for log-probabilities.
    logprobs: bool,
}

/// The completions API's `logprobs` object for `tokens`.
fn logprobs_json(tokens: &[TokenLogprob]) -> Value {
    let top: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let m: serde_json::Map<String, Value> =
                t.top.iter().map(|(s, lp)| (s.clone(), json!(lp))).collect();
            Value::Object(m)
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": tokens.iter().map(|t| t.offset).collect::<Vec<_>>(),
    })
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn wrap(&self, chunk: bool, choice: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id, "object": self.object(chunk), "created": self.created,
            "model": self.model, "choices": [choice],
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    /// A streamed piece of text (`finish` on the last chunk).
    fn chunk(&self, text: Option<&str>, finish: Option<&str>, usage: Option<Value>) -> Value {
        let choice = match self.kind {
            Kind::Completion => json!({"index": 0, "text": text.unwrap_or(""),
                                       "logprobs": null, "finish_reason": finish}),
            Kind::Chat => {
                let delta = match text {
                    Some(t) => json!({"content": t}),
                    None => json!({}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        self.wrap(true, choice, usage)
    }
}

fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
}

/// Collects the whole text.
async fn whole(shape: Shape, mut rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    let mut lps = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t, lp) => {
                text.push_str(&t);
                lps.extend(lp);
            }
            Event::Error(m) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, Json(error_body(&m))).into_response()
            }
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let choice = match shape.kind {
                    Kind::Completion => json!({"index": 0, "text": text,
                        "logprobs": shape.logprobs.then(|| logprobs_json(&lps)),
                        "finish_reason": finish_reason}),
                    Kind::Chat => {
                        json!({"index": 0, "logprobs": null, "finish_reason": finish_reason,
                                         "message": {"role": "assistant", "content": text}})
                    }
                };
                let u = usage(prompt_tokens, completion_tokens);
                return Json(shape.wrap(false, choice, Some(u))).into_response();
            }
        }
    }
    let m = "the engine dropped the request";
    (StatusCode::INTERNAL_SERVER_ERROR, Json(error_body(m))).into_response()
}

/// Server-sent events: (for chat, a first chunk with the role), one chunk per piece of text, a
/// last chunk with the finish reason and usage, then `data: [DONE]`. Dropping the body (the client
/// went away) drops the receiver, which cancels the request at the engine's next step.
fn stream(
    shape: Shape,
    rx: mpsc::UnboundedReceiver<Event>,
) -> SseBody<impl tokio_stream::Stream<Item = Result<Sse, Infallible>>> {
    let data = |v: Value| Ok(Sse::default().data(v.to_string()));
    let first = (shape.kind == Kind::Chat).then(|| {
        let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": null, "finish_reason": null});
        data(shape.wrap(true, choice, None))
    });
    let events = UnboundedReceiverStream::new(rx).map(move |ev| match ev {
        Event::Text(t, lp) => {
            let mut chunk = shape.chunk(Some(&t), None, None);
            if let Some(lp) = lp {
                chunk["choices"][0]["logprobs"] = logprobs_json(std::slice::from_ref(&lp));
            }
            data(chunk)
        }
        Event::Done {
            finish_reason,
            prompt_tokens,
            completion_tokens,
        } => data(shape.chunk(
            None,
            Some(finish_reason),
            Some(usage(prompt_tokens, completion_tokens)),
        )),
        Event::Error(m) => data(error_body(&m)),
    });
    let done = tokio_stream::once(Ok(Sse::default().data("[DONE]")));
    SseBody::new(tokio_stream::iter(first).chain(events).chain(done))
}
