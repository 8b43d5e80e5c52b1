//! The engine thread of the server: requests wait in a bounded queue, up to `parallel` of them
//! hold a sequence (their own KV cache) and decode together, one [`Engine::decode_batch`] pass
//! per step. New requests are prefilled between steps; a request whose receiver is gone (the
//! client disconnected) is dropped at the next step. Each request samples with its own sampler
//! and seed, and its logits do not depend on what runs beside it, so a fixed seed gives the same
//! text whatever else runs.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::sampler::{Sampler, SamplerOptions};
use crate::tokenizer::{ModelTokenizer, TextStream};
use crate::{Engine, Sequence};

/// One generation request, checked by the HTTP layer.
pub struct Job {
    pub ids: Vec<u32>,
    pub sampler: SamplerOptions,
    pub seed: u64,
    /// New tokens at most (the context may end generation sooner).
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Report each token's log-probability and this many most likely alternatives.
    pub logprobs: Option<usize>,
    pub events: UnboundedSender<Event>,
}

/// A generated token's log-probability under the model (the log-softmax of its raw logits, before
/// the sampler's penalty and temperature) and the `top` most likely tokens' (id order breaks ties).
#[derive(Debug)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub top: Vec<(String, f64)>,
    /// Characters of generated text before this token.
    pub offset: usize,
}

/// What the engine thread tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// Generated text (never part of a stop string), and with `logprobs` the token that ended it.
    Text(String, Option<TokenLogprob>),
    Done {
        finish_reason: &'static str,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

/// State shared between the HTTP handlers and the engine thread.
pub struct Shared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    max_queue: usize,
    pub busy: AtomicUsize,
    pub cancelled: AtomicU64,
    pub completed: AtomicU64,
}

impl Shared {
    pub fn new(max_queue: usize) -> Self {
        Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            max_queue,
            busy: AtomicUsize::new(0),
            cancelled: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        }
    }

    /// Queues `job`, or hands it back when `max_queue` requests already wait.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.max_queue {
            return Err(job);
        }
        q.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A request holding a sequence.
struct Active<'t> {
    job: Job,
    seq: Sequence,
    sampler: Sampler,
    decoder: TextStream<'t>,
    /// Prompt and generated ids (what the repetition penalty sees).
    seen: Vec<u32>,
    generated: usize,
    /// Text not yet sent: a tail that may be the start of a stop string.
    held: String,
    /// Characters generated so far (sent, held or cut by a stop string).
    chars: usize,
}

impl Active<'_> {
    fn send(&self, e: Event) -> bool {
        self.job.events.send(e).is_ok()
    }

    /// Appends `piece`; returns the text that can no longer be part of a stop string and whether a
    /// stop string appeared (the text before it returned, the rest dropped).
    fn push_text(&mut self, piece: &str) -> (String, bool) {
        self.chars += piece.chars().count();
        self.held.push_str(piece);
        if let Some(at) = (self.job.stop.iter())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            return (std::mem::take(&mut self.held), true);
        }
        // Keep the longest tail that begins some stop string.
        let keep = (1..=self.held.len())
            .rev()
            .filter(|&n| self.held.is_char_boundary(self.held.len() - n))
            .find(|&n| {
                let tail = &self.held[self.held.len() - n..];
                self.job.stop.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(0);
        (self.held.drain(..self.held.len() - keep).collect(), false)
    }

    /// Sends `text` (with the token's log-probabilities, if any) unless there is nothing to send.
    fn send_text(&self, text: String, lp: Option<TokenLogprob>) {
        if !text.is_empty() || lp.is_some() {
            self.send(Event::Text(text, lp));
        }
    }

    fn finish(mut self, reason: &'static str, stopped: bool) -> Sequence {
        if !stopped {
            // Byte tokens of an unfinished character come out as U+FFFD (as in Engine::generate).
            let tail = self.decoder.finish().to_string();
            let (mut text, stop) = self.push_text(&tail);
            if !stop {
                text.push_str(&std::mem::take(&mut self.held));
            }
            self.send_text(text, None);
            if stop {
                return self.done("stop");
            }
        }
        self.done(reason)
    }

    fn done(self, reason: &'static str) -> Sequence {
        self.send(Event::Done {
            finish_reason: reason,
            prompt_tokens: self.job.ids.len(),
            completion_tokens: self.generated,
        });
        self.seq
    }
}

/// What one sampled token did to a request.
enum Step {
    /// Decode this token next.
    Next(u32),
    Finished(&'static str, bool),
}

/// One sequence per slot, each with room for `ctx` positions: the server's memory is taken at
/// the start (an impossible size fails there), and does not grow with use.
pub fn slots(engine: &Engine, parallel: usize, ctx: usize) -> crate::Result<Vec<Sequence>> {
    (0..parallel)
        .map(|_| {
            let mut s = engine.new_sequence()?;
            s.reserve(ctx)?;
            Ok(s)
        })
        .collect()
}

/// Runs the engine on the sequences `free` (one per slot) for ever.
pub fn run(
    mut engine: Engine,
    shared: Arc<Shared>,
    mut free: Vec<Sequence>,
    ctx: usize,
    step_delay: Duration,
) {
    let parallel = free.len();
    let tokenizer: Arc<ModelTokenizer> = engine.model().tokenizer().clone();
    let stop = tokenizer.stop_ids();
    let vocab = engine.model().config().vocab_size;
    let mut active: Vec<Active> = Vec::new();
    // Logits to sample from, one row per active request, in `active` order.
    let mut logits: Vec<f32> = Vec::new();
    loop {
        let mut admitted = Vec::new();
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while active.is_empty() && q.is_empty() {
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            while active.len() + admitted.len() < parallel {
                match q.pop_front() {
                    Some(job) => admitted.push(job),
                    None => break,
                }
            }
        }
        for job in admitted {
            if job.events.is_closed() {
                shared.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut seq = free.pop().expect("a free sequence for every slot");
            match engine.prefill(&mut seq, &job.ids) {
                Ok(row) => {
                    logits.extend_from_slice(&row);
                    active.push(Active {
                        sampler: Sampler::new(job.sampler.clone(), job.seed),
                        decoder: tokenizer.stream_decoder(),
                        seen: job.ids.clone(),
                        generated: 0,
                        held: String::new(),
                        chars: 0,
                        job,
                        seq,
                    });
                }
                Err(e) => {
                    let _ = job.events.send(Event::Error(e.to_string()));
                    free.push(seq);
                }
            }
        }
        shared.busy.store(active.len(), Ordering::Relaxed);
        // Sample every active request's next token (None: its client is gone). Requests are
        // independent (each has its own sampler, seed and stream), so they are sampled over the
        // team, each with the same result as on its own.
        let mut steps: Vec<Option<Result<Step, String>>> = active.iter().map(|_| None).collect();
        let work: Vec<_> = (active.iter_mut())
            .zip(logits.chunks_exact_mut(vocab))
            .zip(steps.iter_mut())
            .collect();
        engine.for_each_in_team(work, |((a, row), step)| {
            if !a.job.events.is_closed() {
                *step = Some(sample_one(a, &tokenizer, row, &stop, ctx));
            }
        });
        // Keep the requests that go on, in order.
        let mut next_tokens = Vec::with_capacity(active.len());
        let mut going = Vec::with_capacity(active.len());
        for (a, step) in active.drain(..).zip(steps) {
            let Some(step) = step else {
                shared.cancelled.fetch_add(1, Ordering::Relaxed);
                free.push(a.seq);
                continue;
            };
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    a.send(Event::Error(e));
                    free.push(a.seq);
                    continue;
                }
            };
            match step {
                Step::Next(t) => {
                    next_tokens.push(t);
                    going.push(a);
                }
                Step::Finished(reason, stopped) => {
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    free.push(a.finish(reason, stopped));
                }
            }
        }
        active = going;
        logits.clear();
        if active.is_empty() {
            shared.busy.store(0, Ordering::Relaxed);
            continue;
        }
        if !step_delay.is_zero() {
            std::thread::sleep(step_delay);
        }
        let mut seqs: Vec<&mut Sequence> = active.iter_mut().map(|a| &mut a.seq).collect();
        match engine.decode_batch(&mut seqs, &next_tokens) {
            Ok(l) => logits = l,
            Err(e) => {
                // Not expected (positions and ids were checked): fail these requests, keep serving.
                for a in active.drain(..) {
                    a.send(Event::Error(e.to_string()));
                    free.push(a.seq);
                }
            }
        }
    }
}

/// Samples one token for `a` from `row` and says what it did.
fn sample_one(
    a: &mut Active,
    tok: &ModelTokenizer,
    row: &mut [f32],
    stop: &[u32],
    ctx: usize,
) -> Result<Step, String> {
    let table = a.job.logprobs.map(|k| LogprobTable::new(row, k));
    let next = a.sampler.sample(row, &a.seen);
    if stop.contains(&next) && !a.job.ignore_eos {
        return Ok(Step::Finished("stop", false));
    }
    a.seen.push(next);
    a.generated += 1;
    let piece = a.decoder.push(next).map_err(|e| e.to_string())?.to_string();
    a.decoder.take();
    let offset = a.chars;
    let (text, stopped) = a.push_text(&piece);
    let lp = table.map(|t| t.entry(tok, next, offset));
    a.send_text(text, lp);
    if stopped {
        return Ok(Step::Finished("stop", true));
    }
    if a.generated >= a.job.max_tokens || a.seen.len() >= ctx {
        return Ok(Step::Finished("length", false));
    }
    Ok(Step::Next(next))
}

/// Log-softmax of one row of raw logits (in f64), kept for the token sampled from it.
struct LogprobTable {
    /// log Σ exp(logit).
    lse: f64,
    /// The row's logits (before the sampler's penalty changes them).
    logits: Vec<f32>,
    /// The `k` most likely ids, most likely first (lower id first on ties).
    top: Vec<u32>,
}

impl LogprobTable {
    fn new(row: &[f32], k: usize) -> Self {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
        let lse = max
            + row
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let mut top: Vec<u32> = Vec::with_capacity(k + 1);
        for (id, &l) in row.iter().enumerate() {
            let at = top.partition_point(|&t| row[t as usize] >= l);
            if at < k {
                top.insert(at, id as u32);
                top.truncate(k);
            }
        }
        LogprobTable {
            lse,
            logits: row.to_vec(),
            top,
        }
    }

    fn entry(&self, tok: &ModelTokenizer, id: u32, offset: usize) -> TokenLogprob {
        let name = |id: u32| tok.id_to_token(id).unwrap_or_default().to_string();
        let lp = |id: u32| self.logits[id as usize] as f64 - self.lse;
        TokenLogprob {
            token: name(id),
            logprob: lp(id),
            top: self.top.iter().map(|&t| (name(t), lp(t))).collect(),
            offset,
        }
    }
}
