//! Group commit of small independent writes (sign-ins): what arrives while a write is under
//! way waits and goes in the next one, which one background task runs, so concurrent
//! callers share one durable commit (redb's `fdatasync`, PostgreSQL's WAL flush, and one
//! round trip). Each caller still returns only once its item is written, or with the error
//! of its group's write: the guarantee is the one a commit of its own gives.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::{RecordsError, RecordsResult};

type Reply = oneshot::Sender<RecordsResult<()>>;

/// The queue of one kind of write. Cheap to clone (clones share the queue).
pub(crate) struct GroupCommit<T> {
    queue: Arc<Mutex<Queue<T>>>,
}

struct Queue<T> {
    /// Items waiting, each with whom to tell the outcome.
    waiting: Vec<(T, Reply)>,
    /// Whether the writing task runs (it takes what waits until nothing does).
    running: bool,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            })),
        }
    }
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Queues `item` and waits until a group holding it is written. `write` writes one group
    /// (all or nothing); it is used only when no writing task runs yet, to start one.
    pub(crate) async fn submit<W, F>(&self, item: T, what: &str, write: W) -> RecordsResult<()>
    where
        W: FnMut(Vec<T>) -> F + Send + 'static,
        F: Future<Output = RecordsResult<()>> + Send + 'static,
    {
        let (tell, told) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push((item, tell));
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            tokio::spawn(write_groups(Arc::clone(&self.queue), write));
        }
        told.await
            .map_err(|_| RecordsError::Unavailable(format!("{what}: the task writing it ended")))?
    }
}

/// Writes the items waiting, group by group, until none waits.
async fn write_groups<T, W, F>(queue: Arc<Mutex<Queue<T>>>, mut write: W)
where
    W: FnMut(Vec<T>) -> F,
    F: Future<Output = RecordsResult<()>>,
{
    // Should this task end early (its runtime shutting down), the guard lets the next item
    // start another one for the items still waiting, and those of the group it held are
    // answered with an error (their senders drop).
    let mut guard = Running(Some(Arc::clone(&queue)));
    loop {
        let group = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.running = false;
                guard.0 = None;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let (items, replies): (Vec<T>, Vec<Reply>) = group.into_iter().unzip();
        let result = write(items).await;
        let last = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let last = queue.waiting.is_empty();
            if last {
                queue.running = false;
                guard.0 = None;
            }
            last
        };
        if last {
            // Let go of what the writer holds (a database handle) before answering: a
            // caller that then drops its own handle and opens the file again finds it closed.
            drop(write);
            answer(replies, &result);
            return;
        }
        answer(replies, &result);
    }
}

/// Tells each caller of a group its outcome.
fn answer(replies: Vec<Reply>, result: &RecordsResult<()>) {
    for reply in replies {
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(RecordsError::Corrupt(m)) => Err(RecordsError::Corrupt(m.clone())),
            Err(e) => Err(RecordsError::Unavailable(e.to_string())),
        };
        // The caller may have gone (its request was dropped): nothing to tell.
        let _ = reply.send(outcome);
    }
}

/// Clears [`Queue::running`] if the writing task ends without emptying the queue.
struct Running<T>(Option<Arc<Mutex<Queue<T>>>>);

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            queue.lock().unwrap_or_else(PoisonError::into_inner).running = false;
        }
    }
}
