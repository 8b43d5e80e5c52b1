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

use nano_tokenizer::{special, StreamDecoder, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

use crate::sampler::{Sampler, SamplerOptions};
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
    pub events: UnboundedSender<Event>,
}

/// What the engine thread tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// Generated text (never part of a stop string; may be empty of no characters).
    Text(String),
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
    decoder: StreamDecoder<'t>,
    /// Prompt and generated ids (what the repetition penalty sees).
    seen: Vec<u32>,
    generated: usize,
    /// Text not yet sent: a tail that may be the start of a stop string.
    held: String,
}

impl Active<'_> {
    fn send(&self, e: Event) -> bool {
        self.job.events.send(e).is_ok()
    }

    /// Appends `piece` and sends what can no longer be part of a stop string; true when a stop
    /// string appeared (the text before it sent, the rest dropped).
    fn push_text(&mut self, piece: &str) -> bool {
        self.held.push_str(piece);
        if let Some(at) = (self.job.stop.iter())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            self.flush();
            return true;
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
        let ready: String = self.held.drain(..self.held.len() - keep).collect();
        if !ready.is_empty() {
            self.send(Event::Text(ready));
        }
        false
    }

    fn flush(&mut self) {
        if !self.held.is_empty() {
            let text = std::mem::take(&mut self.held);
            self.send(Event::Text(text));
        }
    }

    fn finish(mut self, reason: &'static str, stopped: bool) -> Sequence {
        if !stopped {
            // Byte tokens of an unfinished character come out as U+FFFD (as in Engine::generate).
            let tail = self.decoder.finish().to_string();
            if self.push_text(&tail) {
                return self.done("stop");
            }
            self.flush();
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

/// Runs the engine until every sender of `shared` is gone (never, in the server).
pub fn run(
    mut engine: Engine,
    shared: Arc<Shared>,
    parallel: usize,
    ctx: usize,
    step_delay: Duration,
) {
    let tokenizer: Arc<Tokenizer> = engine.model().tokenizer().clone();
    let eos = tokenizer.token_to_id(special::EOS);
    let vocab = engine.model().config().vocab_size;
    let mut free: Vec<Sequence> = Vec::new();
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
            let mut seq = match free.pop() {
                Some(s) => s,
                None => match engine.new_sequence() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = job.events.send(Event::Error(e.to_string()));
                        continue;
                    }
                },
            };
            match engine.prefill(&mut seq, &job.ids) {
                Ok(row) => {
                    logits.extend_from_slice(&row);
                    active.push(Active {
                        sampler: Sampler::new(job.sampler.clone(), job.seed),
                        decoder: StreamDecoder::skipping_special(&tokenizer),
                        seen: job.ids.clone(),
                        generated: 0,
                        held: String::new(),
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
        // Sample every active request's next token; keep those that go on.
        let mut next_tokens = Vec::with_capacity(active.len());
        let mut going = Vec::with_capacity(active.len());
        for (mut a, row) in active.drain(..).zip(logits.chunks_exact_mut(vocab)) {
            if a.job.events.is_closed() {
                shared.cancelled.fetch_add(1, Ordering::Relaxed);
                free.push(a.seq);
                continue;
            }
            let step = match sample_one(&mut a, row, eos, ctx) {
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
    row: &mut [f32],
    eos: Option<u32>,
    ctx: usize,
) -> Result<Step, String> {
    let next = a.sampler.sample(row, &a.seen);
    if Some(next) == eos && !a.job.ignore_eos {
        return Ok(Step::Finished("stop", false));
    }
    a.seen.push(next);
    a.generated += 1;
    let piece = a.decoder.push(next).map_err(|e| e.to_string())?.to_string();
    a.decoder.take();
    if a.push_text(&piece) {
        return Ok(Step::Finished("stop", true));
    }
    if a.generated >= a.job.max_tokens || a.seen.len() >= ctx {
        return Ok(Step::Finished("length", false));
    }
    Ok(Step::Next(next))
}
