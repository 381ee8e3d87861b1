//! An ordered prefetch pool: run a job over the indices `0..n` on `k` worker threads, a bounded
//! number of results ahead of the consumer, and hand the results back in index order.
//!
//! Worker `w` runs the jobs `w, w + k, w + 2k, ...` and sends each result into its own bounded
//! channel; the consumer reads the channels round-robin, so results come out in index order
//! without a reorder buffer, and the result of job `j` never depends on `k`. A worker that has
//! `lookahead` results waiting blocks, so at most `k * (lookahead + 1)` jobs run ahead of the
//! consumer.
//!
//! A panic inside a job on a worker thread does not take the consumer down on another thread:
//! it comes back as the [`JobPanicked`] value in job order, after which the pool yields
//! nothing more. Errors that a job returns travel inside its result (`T = Result<_, _>`).
//! With zero workers the jobs run on the consumer's thread when it asks for them, and a panic
//! unwinds there as in any other call.
//!
//! ```
//! use advsoup_io::prefetch::OrderedPool;
//!
//! let squares: Vec<usize> = OrderedPool::spawn("squares", 5, 2, 2, |i| i * i)
//!     .expect("spawn workers")
//!     .map(|r| r.expect("no job panicked"))
//!     .collect();
//! assert_eq!(squares, [0, 1, 4, 9, 16]);
//! ```

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

/// A job that panicked on a worker thread: its index and the panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPanicked {
    /// The index of the job (its position in the output order).
    pub index: usize,
    /// The panic message (`"<non-string panic payload>"` when it was not a string).
    pub message: String,
}

impl std::fmt::Display for JobPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {} panicked: {}", self.index, self.message)
    }
}

impl std::error::Error for JobPanicked {}

type Job<T> = Arc<dyn Fn(usize) -> T + Send + Sync>;

/// Results of `job(0), job(1), ..., job(n - 1)`, prepared ahead on worker threads and yielded
/// in index order (see the [module docs](self)).
///
/// Dropping the pool early stops the workers after the job each is running.
pub struct OrderedPool<T> {
    job: Job<T>,
    receivers: Vec<Receiver<Result<T, JobPanicked>>>,
    next: usize,
    jobs: usize,
    failed: bool,
}

impl<T> std::fmt::Debug for OrderedPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedPool")
            .field("workers", &self.receivers.len())
            .field("next", &self.next)
            .field("jobs", &self.jobs)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<T: Send + 'static> OrderedPool<T> {
    /// Starts `min(workers, jobs)` threads named `<name>-<w>` running `job` over `0..jobs`,
    /// each at most `lookahead` finished results ahead of the consumer (a `lookahead` of 0
    /// hands each result over directly).
    ///
    /// # Errors
    /// When a thread cannot be spawned (the threads already started stop on their own).
    pub fn spawn<F>(
        name: &str,
        jobs: usize,
        workers: usize,
        lookahead: usize,
        job: F,
    ) -> std::io::Result<Self>
    where
        F: Fn(usize) -> T + Send + Sync + 'static,
    {
        let job: Job<T> = Arc::new(job);
        let workers = workers.min(jobs);
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<T, JobPanicked>>(lookahead);
            let job = job.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{w}"))
                .spawn(move || {
                    for j in (w..jobs).step_by(workers) {
                        let result = run_caught(&*job, j);
                        let stop = result.is_err();
                        if tx.send(result).is_err() || stop {
                            break; // the consumer is gone, or this job panicked
                        }
                    }
                })?;
            receivers.push(rx);
        }
        Ok(Self {
            job,
            receivers,
            next: 0,
            jobs,
            failed: false,
        })
    }
}

impl<T> OrderedPool<T> {
    /// The number of worker threads (0: jobs run on the consumer's thread).
    pub fn workers(&self) -> usize {
        self.receivers.len()
    }

    /// The index of the next result.
    pub fn position(&self) -> usize {
        self.next
    }
}

/// Runs `job(j)`, turning a panic into [`JobPanicked`].
fn run_caught<T>(job: &(dyn Fn(usize) -> T + Send + Sync), j: usize) -> Result<T, JobPanicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(j))).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "<non-string panic payload>".to_string());
        JobPanicked { index: j, message }
    })
}

impl<T> Iterator for OrderedPool<T> {
    type Item = Result<T, JobPanicked>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.jobs {
            return None;
        }
        let j = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(Ok((self.job)(j)));
        }
        let result = self.receivers[j % self.receivers.len()]
            .recv()
            .unwrap_or_else(|_| {
                // A worker stops only after sending a panic, which the consumer stops at, so
                // this is a worker killed in a way that skipped unwinding.
                Err(JobPanicked {
                    index: j,
                    message: "the worker thread ended without a result".into(),
                })
            });
        self.failed = result.is_err();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.failed {
            0
        } else {
            self.jobs - self.next
        };
        (0, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Jobs that finish out of order (later indices faster) still come back in index order,
    /// for every worker count.
    #[test]
    fn results_come_back_in_index_order_for_any_worker_count() {
        let n = 23;
        for workers in [0, 1, 2, 3, 8, 40] {
            let pool = OrderedPool::spawn("order", n, workers, 2, move |i| {
                std::thread::sleep(Duration::from_micros(((n - i) * 50) as u64));
                i * 10 + 1
            })
            .unwrap();
            assert_eq!(pool.workers(), workers.min(n));
            let got: Vec<usize> = pool.map(|r| r.unwrap()).collect();
            assert_eq!(got, (0..n).map(|i| i * 10 + 1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn zero_jobs_yield_nothing_and_start_no_thread() {
        let mut pool =
            OrderedPool::spawn("empty", 0, 4, 2, |_| -> u8 { panic!("never run") }).unwrap();
        assert_eq!(pool.workers(), 0);
        assert!(pool.next().is_none());
        assert!(pool.next().is_none());
    }

    #[test]
    fn lookahead_bounds_the_jobs_run_ahead_of_the_consumer() {
        let started = Arc::new(AtomicUsize::new(0));
        let (workers, lookahead) = (3, 2);
        let counter = started.clone();
        let mut pool = OrderedPool::spawn("ahead", 1000, workers, lookahead, move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            i
        })
        .unwrap();
        let bound = workers * (lookahead + 1);
        // Wait until the workers are blocked (or a generous deadline passes).
        let deadline = Instant::now() + Duration::from_secs(5);
        while started.load(Ordering::SeqCst) < bound && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), bound);
        // Taking one result frees one slot: exactly one more job may start.
        assert_eq!(pool.next().unwrap().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(started.load(Ordering::SeqCst) <= bound + 1);
        let rest: Vec<usize> = pool.map(|r| r.unwrap()).collect();
        assert_eq!(rest, (1..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_comes_back_as_a_value_in_order_then_the_pool_stops() {
        for workers in [1, 2, 3] {
            let pool = OrderedPool::spawn("panics", 10, workers, 2, |i| {
                if i == 4 {
                    panic!("bad sample {i}");
                }
                i
            })
            .unwrap();
            let got: Vec<Result<usize, JobPanicked>> = pool.collect();
            assert_eq!(got.len(), 5, "{got:?}");
            for (i, r) in got[..4].iter().enumerate() {
                assert_eq!(r.as_ref().unwrap(), &i);
            }
            let err = got[4].clone().unwrap_err();
            assert_eq!(err.index, 4);
            assert_eq!(err.message, "bad sample 4");
            assert_eq!(err.to_string(), "job 4 panicked: bad sample 4");
        }
    }

    #[test]
    fn errors_returned_by_jobs_travel_in_the_result() {
        let got: Vec<Result<usize, String>> = OrderedPool::spawn("errors", 4, 2, 1, |i| {
            if i % 2 == 1 {
                Err(format!("sample {i}: truncated"))
            } else {
                Ok(i)
            }
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
        assert_eq!(
            got,
            [
                Ok(0),
                Err("sample 1: truncated".into()),
                Ok(2),
                Err("sample 3: truncated".into())
            ]
        );
    }

    #[test]
    fn dropping_the_pool_early_stops_the_workers() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        let mut pool = OrderedPool::spawn("drop", 1_000_000, 2, 1, move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            i
        })
        .unwrap();
        assert_eq!(pool.next().unwrap().unwrap(), 0);
        drop(pool);
        std::thread::sleep(Duration::from_millis(50));
        let after_drop = started.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), after_drop);
        assert!(after_drop < 100, "{after_drop}");
    }
}
