//! Streaming a run: the run's future and its events, polled together.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use taper_tool::CancellationToken;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::run::{Answer, Event};

/// Where a run sends its events (nowhere, for a plain run).
pub(crate) struct Sink(Option<mpsc::UnboundedSender<Event>>);

impl Sink {
    pub(crate) fn none() -> Sink {
        Sink(None)
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some(tx) = &self.0 {
            // The stream owns the receiver for as long as the run can send.
            let _ = tx.send(event);
        }
    }
}

type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer>> + Send + 'a>>;

/// The events of one run ([`Agent::stream`](crate::Agent::stream),
/// [`Session::stream`](crate::Session::stream)), as a [`Stream`] of
/// `Result<Event>`: deltas, tool calls and results, steps, then [`Event::Usage`] and
/// [`Event::Done`], or one error.
///
/// The run makes progress only while the stream is polled. Dropping the stream stops
/// it within one token and cancels running tools; so does
/// [`cancel`](EventStream::cancel), which ends the stream with
/// [`Error::Cancelled`](crate::Error::Cancelled).
///
/// # Example
///
/// ```
/// use futures_util::StreamExt;
/// use taper::{Agent, Decoder, Event};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("DeepSeek-R1-0528-Qwen3-8B-Q4_K_M.gguf");
/// # let tokenizer = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/cache/r1_qwen3.tokenizer.json");
/// # let config = taper_model::Preset::Tiny.config(taper_model::Architecture::Qwen3, Some(151_936));
/// # taper_model::ModelWriter::new(config).tokenizer_json(std::fs::read_to_string(tokenizer)?).write_gguf(&path)?;
/// let decoder = Decoder::load(&path)?;
/// let agent = Agent::builder(&decoder).thinking_budget(16).max_answer_tokens(16).build()?;
/// let mut events = agent.stream("Why is the sky blue?");
/// while let Some(event) = events.next().await {
///     match event? {
///         Event::ThinkingDelta(text) | Event::AnswerDelta(text) => print!("{text}"),
///         Event::Done(answer) => println!("\n{} tokens", answer.usage.generated_tokens),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventStream<'a> {
    run: Option<RunFuture<'a>>,
    events: mpsc::UnboundedReceiver<Event>,
    finals: VecDeque<Result<Event>>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for EventStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("running", &self.run.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> EventStream<'a> {
    pub(crate) fn new<F, Fut>(start: F) -> EventStream<'a>
    where
        F: FnOnce(Sink, CancellationToken) -> Fut,
        Fut: Future<Output = Result<Answer>> + Send + 'a,
    {
        let (tx, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let run = Box::pin(start(Sink(Some(tx)), cancel.clone()));
        EventStream {
            run: Some(run),
            events,
            finals: VecDeque::new(),
            cancel,
        }
    }

    /// Stops the run: within one token while decoding, at once while tools run.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancellation token, to cancel it from elsewhere.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

impl Stream for EventStream<'_> {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(Some(event)) = this.events.poll_recv(cx) {
            return Poll::Ready(Some(Ok(event)));
        }
        if let Some(run) = &mut this.run {
            let Poll::Ready(result) = run.as_mut().poll(cx) else {
                return match this.events.try_recv() {
                    Ok(event) => Poll::Ready(Some(Ok(event))),
                    Err(_) => Poll::Pending,
                };
            };
            this.run = None;
            match result {
                Ok(answer) => {
                    this.finals.push_back(Ok(Event::Usage(answer.usage)));
                    this.finals.push_back(Ok(Event::Done(answer)));
                }
                Err(e) => this.finals.push_back(Err(e)),
            }
        }
        if let Ok(event) = this.events.try_recv() {
            return Poll::Ready(Some(Ok(event)));
        }
        Poll::Ready(this.finals.pop_front())
    }
}
