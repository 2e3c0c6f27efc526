//! Edge: owns every long-running task of `serve`, with one shutdown path.
//!
//! Each task is spawned through the runtime with a policy:
//! - **restart**: a task that ends before shutdown (it should never end) is started
//!   again after a backoff (1 s doubling to 60 s), and counted in
//!   `stellar_peer_injector_task_restarts_total{task}`. Used for the watches and loops
//!   whose state is rebuilt from the API server: the StellarNode watch (the cache keeps
//!   serving its last good snapshot meanwhile, and a re-list is published only once
//!   complete), the Lease, the rollout loop and the governing-Service task.
//! - **critical**: a task that ends before shutdown stops the process with an error,
//!   so that Kubernetes restarts the pod (liveness). Used for what cannot be rebuilt in
//!   place: the HTTPS and admin listeners and the certificate reloader (its state is
//!   shared with the listener's TLS configuration).
//!
//! Shutdown has two phases, each a [`watch`] channel every task may see (kubert's drain
//! signal is the model):
//! - **stepping down** ([`Runtime::stepping_down`]) becomes `true` the moment shutdown is
//!   requested, when [`Runtime::wait`] returns: what must not wait for the drain reacts to
//!   it (the Lease is released here, so that a standby leads at once, not after
//!   `--shutdown-delay`). From then on no task is restarted.
//! - **stop** ([`Runtime::stop_signal`]) becomes `true` when [`Runtime::shutdown`] starts,
//!   after the delay: restarting tasks are cancelled by it, the listeners drain on it, and
//!   [`Runtime::shutdown`] waits for all of them, bounded.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// What ended the runtime's wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or Ctrl-C.
    Signal,
    /// A critical task ended before shutdown: the process must fail.
    TaskEnded(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnEnd {
    Restart,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnStop {
    Cancel,
    Wait,
}

/// Owns the tasks; see the module docs.
pub struct Runtime {
    step_down_tx: watch::Sender<bool>,
    stop_tx: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, bool)>,
    names: Vec<&'static str>,
    metrics: Arc<Metrics>,
    backoff: (Duration, Duration),
}

impl Runtime {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (stop_tx, _) = watch::channel(false);
        let (step_down_tx, _) = watch::channel(false);
        Self {
            step_down_tx,
            stop_tx,
            tasks: JoinSet::new(),
            names: Vec::new(),
            metrics,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// Sets the restart backoff (first, most); for tests.
    pub fn with_backoff(mut self, first: Duration, most: Duration) -> Self {
        self.backoff = (first, most);
        self
    }

    /// The shutdown signal: becomes `true` once, when shutdown starts (after the delay).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Becomes `true` once, as soon as shutdown is requested ([`Self::wait`] returned),
    /// before the shutdown delay: for work that must not wait for the drain.
    pub fn stepping_down(&self) -> watch::Receiver<bool> {
        self.step_down_tx.subscribe()
    }

    /// Spawns a task that is restarted with backoff whenever it ends before shutdown,
    /// and cancelled at shutdown.
    pub fn spawn_restarting<F, Fut>(&mut self, name: &'static str, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_task(name, OnEnd::Restart, OnStop::Cancel, move || Some(make()));
    }

    /// Like [`Self::spawn_restarting`], but at shutdown the task is awaited, not
    /// cancelled: it watches [`Self::stop_signal`] or [`Self::stepping_down`] itself to
    /// finish its work (the Lease is released this way, on stepping down).
    pub fn spawn_restarting_draining<F, Fut>(&mut self, name: &'static str, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_task(name, OnEnd::Restart, OnStop::Wait, move || Some(make()));
    }

    /// Spawns a task whose end before shutdown stops the process. The task itself
    /// watches [`Self::stop_signal`] to finish its work at shutdown (the listeners drain).
    pub fn spawn_critical<Fut>(&mut self, name: &'static str, fut: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut once = Some(fut);
        self.spawn_task(name, OnEnd::Fail, OnStop::Wait, move || once.take());
    }

    /// A critical task that has nothing to finish: cancelled at shutdown.
    pub fn spawn_critical_cancel<Fut>(&mut self, name: &'static str, fut: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut once = Some(fut);
        self.spawn_task(name, OnEnd::Fail, OnStop::Cancel, move || once.take());
    }

    /// `make` gives the task's next run, or `None` when it cannot run again.
    fn spawn_task<F, Fut>(
        &mut self,
        name: &'static str,
        on_end: OnEnd,
        on_stop: OnStop,
        mut make: F,
    ) where
        F: FnMut() -> Option<Fut> + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.stop_signal();
        let stepping_down = self.stepping_down();
        let metrics = self.metrics.clone();
        let (first, most) = self.backoff;
        self.names.push(name);
        self.tasks.spawn(async move {
            let mut backoff = first;
            loop {
                let Some(task) = make() else {
                    return (name, on_end == OnEnd::Fail);
                };
                match on_stop {
                    OnStop::Cancel => tokio::select! {
                        () = task => {}
                        () = stopped(&mut stop) => return (name, false),
                    },
                    OnStop::Wait => task.await,
                }
                if *stop.borrow() || *stepping_down.borrow() {
                    return (name, false); // shutting down: nothing is restarted
                }
                if on_end == OnEnd::Fail {
                    return (name, true);
                }
                metrics.task_restart(name);
                tracing::error!(task = name, backoff = ?backoff, "task ended unexpectedly; restarting it after the backoff");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => return (name, false),
                }
                backoff = (backoff * 2).min(most);
            }
        });
    }

    /// Waits for `signal` or for a critical task to end first; then shutdown has been
    /// requested, and [`Self::stepping_down`] becomes `true`.
    pub async fn wait(&mut self, signal: impl Future<Output = ()>) -> Stop {
        let stop = self.wait_inner(signal).await;
        self.step_down_tx.send_replace(true);
        stop
    }

    async fn wait_inner(&mut self, signal: impl Future<Output = ()>) -> Stop {
        let mut signal = std::pin::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => return Stop::Signal,
                Some(ended) = self.tasks.join_next() => match ended {
                    Ok((name, true)) => return Stop::TaskEnded(name),
                    Ok((name, false)) => tracing::debug!(task = name, "task finished"),
                    Err(e) => {
                        tracing::error!(error = %crate::causes::Chain(&e), "a task panicked");
                        return Stop::TaskEnded("panicked");
                    }
                },
            }
        }
    }

    /// Starts shutdown and waits up to `timeout` for every task to finish.
    pub async fn shutdown(mut self, timeout: Duration) {
        self.step_down_tx.send_replace(true);
        self.stop_tx.send_replace(true);
        let mut left = self.names.clone();
        let tasks = &mut self.tasks;
        let all = async {
            while let Some(done) = tasks.join_next().await {
                if let Ok((name, _)) = done
                    && let Some(i) = left.iter().position(|n| *n == name)
                {
                    left.swap_remove(i);
                    tracing::debug!(task = name, "task stopped");
                }
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(?timeout, tasks = ?left, "tasks still running at the end of shutdown; aborting them");
            self.tasks.abort_all();
        }
    }
}

/// Resolves once `stop` is (or already was) `true`; never if the sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn restarts(m: &Metrics, task: &str) -> bool {
        m.encode().lines().any(|l| {
            l.starts_with("stellar_peer_injector_task_restarts_total")
                && l.contains(&format!("task=\"{task}\""))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_is_restarted_with_backoff_and_counted() {
        let metrics = Arc::new(Metrics::new());
        let mut rt = Runtime::new(metrics.clone())
            .with_backoff(Duration::from_secs(1), Duration::from_secs(4));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        rt.spawn_restarting("watch", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Runs at 0 s, then after 1, 2, 4, 4 s of backoff.
        tokio::time::sleep(Duration::from_millis(11_500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert!(restarts(&metrics, "watch"));
        rt.shutdown(Duration::from_secs(1)).await;
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            after,
            "no restart after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_critical_task_that_ends_stops_the_wait() {
        let mut rt = Runtime::new(Arc::new(Metrics::new()));
        rt.spawn_restarting("loop", std::future::pending);
        rt.spawn_critical("listener", async {
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        let stop = rt.wait(std::future::pending()).await;
        assert_eq!(stop, Stop::TaskEnded("listener"));
        rt.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_restarting_tasks_and_waits_for_critical_ones() {
        let mut rt = Runtime::new(Arc::new(Metrics::new()));
        let done = Arc::new(AtomicUsize::new(0));
        rt.spawn_restarting("loop", std::future::pending);
        let mut stop = rt.stop_signal();
        let d = done.clone();
        rt.spawn_critical("listener", async move {
            stopped(&mut stop).await;
            tokio::time::sleep(Duration::from_secs(2)).await; // draining
            d.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(rt.wait(async {}).await, Stop::Signal);
        rt.shutdown(Duration::from_secs(10)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1, "the listener drained");
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_task_finishes_its_work_at_shutdown() {
        let mut rt = Runtime::new(Arc::new(Metrics::new()));
        let released = Arc::new(AtomicUsize::new(0));
        let (r, stop) = (released.clone(), rt.stop_signal());
        rt.spawn_restarting_draining("lease", move || {
            let (r, mut stop) = (r.clone(), stop.clone());
            async move {
                stopped(&mut stop).await;
                tokio::time::sleep(Duration::from_millis(200)).await; // the release call
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(rt.wait(async {}).await, Stop::Signal);
        rt.shutdown(Duration::from_secs(5)).await;
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stepping_down_comes_when_wait_returns_before_the_delay_and_stops_restarts() {
        let mut rt = Runtime::new(Arc::new(Metrics::new()))
            .with_backoff(Duration::from_millis(10), Duration::from_millis(10));
        let (released, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, n, step) = (released.clone(), runs.clone(), rt.stepping_down());
        rt.spawn_restarting_draining("lease", move || {
            let (r, n, mut step) = (r.clone(), n.clone(), step.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                stopped(&mut step).await;
                r.fetch_add(1, Ordering::SeqCst); // the release, then the task ends
            }
        });
        assert!(!*rt.stepping_down().borrow());
        assert_eq!(rt.wait(async {}).await, Stop::Signal);
        assert!(*rt.stepping_down().borrow());
        assert!(
            !*rt.stop_signal().borrow(),
            "stop comes only with shutdown()"
        );
        // The shutdown delay: the release happens at its start, and nothing restarts.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "not restarted while stepping down"
        );
        rt.shutdown(Duration::from_secs(1)).await;
    }
}
