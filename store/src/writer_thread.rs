//! One thread for every write transaction of a redb file (the embedded store, the embedded
//! records): redb has one writer at a time, so one thread loses nothing, where writes on
//! tokio's blocking pool pile threads up — each waiting for the write lock, or started
//! because a task spawns its next write before the pool's last thread counts itself idle
//! again; 64 of them under the benchmark, each with an allocator heap of its own, doubled
//! the broker's peak memory (issue #17).

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// The handle of a writer thread. Cheap to clone; the thread ends when the last clone is
/// dropped (after the jobs already sent).
#[derive(Clone)]
pub struct WriterThread {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for WriterThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterThread").finish_non_exhaustive()
    }
}

impl WriterThread {
    /// Starts a thread named `name`.
    pub fn start(name: &str) -> std::io::Result<WriterThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for job in queue {
                    // A panicking job answers its caller with `None` (its sender drops)
                    // and leaves the thread to the next one.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(WriterThread { jobs })
    }

    /// Runs `job` on the thread, after the jobs sent before it. `None`: it panicked, or the
    /// thread is gone. What `job` holds (a database handle) is dropped before the answer,
    /// so a caller that then drops its own handle and opens the file again finds it closed.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tell, told) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = job();
            // The caller may have gone (its request was dropped): nothing to tell.
            let _ = tell.send(out);
        });
        self.jobs.send(job).ok()?;
        told.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::WriterThread;

    #[tokio::test]
    async fn jobs_run_in_order_and_a_panic_costs_only_its_own_answer() {
        let writer = WriterThread::start("test-writer").expect("thread");
        let held = Arc::new(());
        let job_holds = Arc::clone(&held);
        let answer = writer
            .run(move || {
                let _held = &job_holds;
                1
            })
            .await;
        assert_eq!(answer, Some(1));
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "what the job held is dropped before its answer"
        );
        let panicked: Option<u8> = writer.run(|| panic!("a failing write")).await;
        assert_eq!(panicked, None, "a panic is no answer");
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let runs: Vec<_> = (0..5)
            .map(|i| {
                let order = Arc::clone(&order);
                writer.run(move || order.lock().map(|mut o| o.push(i)).is_ok())
            })
            .collect();
        for r in futures_util::future::join_all(runs).await {
            assert_eq!(r, Some(true), "the thread goes on after a panic");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4]);
    }
}
