//! The write path's two batching stages (SPEC §5.2): signatures of concurrent submissions
//! are verified together ([`verifier`]), and accepted rows are written together, one
//! transaction per group ([`writer`]); `/verify`'s nonce lookups are gathered the same way
//! ([`nonces`]). All sit behind bounded queues; a full queue is answered with 503 at once
//! rather than queuing without end.

pub mod nonces;
pub mod verifier;
pub mod writer;

/// The queue is full or the stage has stopped: the request is refused, nothing was
/// stored, and the client may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    #[error("the {0} queue is full")]
    Full(&'static str),
    #[error("the {0} stage has stopped")]
    Stopped(&'static str),
}

/// Queues `job` for a stage with a channel for its answer and waits for it. A full queue
/// is refused at once; a stage that stopped (or dropped the job) is `Stopped`.
pub(crate) async fn ask<J, R>(
    queue: &tokio::sync::mpsc::Sender<(J, tokio::sync::oneshot::Sender<R>)>,
    job: J,
    stage: &'static str,
) -> Result<R, Overloaded> {
    use tokio::sync::mpsc::error::TrySendError;
    let (done, answer) = tokio::sync::oneshot::channel();
    queue.try_send((job, done)).map_err(|e| match e {
        TrySendError::Full(_) => Overloaded::Full(stage),
        TrySendError::Closed(_) => Overloaded::Stopped(stage),
    })?;
    answer.await.map_err(|_| Overloaded::Stopped(stage))
}

impl Overloaded {
    pub fn stage(&self) -> &'static str {
        match self {
            Overloaded::Full(s) | Overloaded::Stopped(s) => s,
        }
    }
}
