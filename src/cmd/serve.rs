//! `serve`: the webhook, the watches, the rollout loop and the admin listener, every task
//! owned by one [`Runtime`] with one shutdown path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::error::Error;
use crate::obs::events::EventSink;
use crate::obs::metrics::Metrics;
use crate::runtime::{Runtime, Stop};
use crate::server::{self, AdminState, AdmissionState, tls::CertWatcher};
use crate::watch::cache::{self, PeerCache};

pub async fn main(args: ServeArgs) -> Result<(), Error> {
    use crate::rollout::{controller, lease};
    let peer_settings = args.peers.settings()?;
    let inject_settings = args.patch.settings()?;
    let certs = CertWatcher::load(&args.tls_cert, &args.tls_key)?;
    let tls = certs.server_config()?;
    let client = args.kube.client().await?;
    let metrics = Arc::new(Metrics::new());
    certs.observe(&metrics);
    let cache = Arc::new(PeerCache::new());
    let draining = Arc::new(AtomicBool::new(false));
    // One identity for the Lease and the Events.
    let identity = crate::rollout::lease::identity();
    let rollout = rollout_settings(&args, &identity)?;
    let linked = Arc::new(crate::watch::remote::Linked::default());
    let resolve = resolve_settings(&args)?;

    let https = server::bind(args.listen).await?;
    let admin = server::bind(args.admin_listen).await?;
    tracing::info!(https = %args.listen, admin = %args.admin_listen, namespaces = ?args.kube.namespaces(),
        max_peers = peer_settings.max_peers, cluster_domain = %peer_settings.cluster_domain,
        config_mode = ?inject_settings.config_mode, "stellar-peer-injector starting");

    let mut rt = Runtime::new(metrics.clone());
    // The one Event recorder: every producer hands it notices through a bounded queue.
    let (events, queue) = EventSink::channel(crate::obs::events::QUEUE_CAPACITY, metrics.clone());
    {
        let reporter = kube::runtime::events::Reporter {
            controller: crate::rollout::controller::FIELD_MANAGER.into(),
            instance: Some(identity.clone()),
        };
        let (client, metrics) = (client.clone(), metrics.clone());
        rt.spawn_restarting("events", move || {
            crate::obs::events::run(
                queue.clone(),
                client.clone(),
                reporter.clone(),
                metrics.clone(),
            )
        });
    }
    {
        let (client, cache, metrics) = (client.clone(), cache.clone(), metrics.clone());
        let sources = cache::Sources {
            namespaces: args.kube.namespaces(),
            link_namespace: args.remote.secret_namespace(),
            link_files: args.remote.file_links()?,
            first_sync_timeout: args.remote_sync_timeout,
            linked: linked.clone(),
            own_cluster: Some(args.cluster_name.trim().to_owned()).filter(|c| !c.is_empty()),
        };
        rt.spawn_restarting("stellarnode-watch", move || {
            cache::run(
                client.clone(),
                sources.clone(),
                peer_settings.clone(),
                cache.clone(),
                metrics.clone(),
            )
        });
    }
    if args.create_governing_services {
        let (client, cache, metrics, events) = (
            client.clone(),
            cache.clone(),
            metrics.clone(),
            events.clone(),
        );
        rt.spawn_restarting("governing-services", move || {
            crate::watch::services::run(
                client.clone(),
                cache.clone(),
                events.clone(),
                metrics.clone(),
            )
        });
    }
    let leader = Arc::new(watch::channel(false).0);
    // Events derived from the snapshot (which every replica has) come from the leader
    // only; without a rollout loop there is no leader, and every replica records them.
    let (always, _) = watch::channel(true);
    let may_report = if rollout.is_some() {
        leader.subscribe()
    } else {
        always.subscribe()
    };
    if let Some((lease_settings, settings)) = rollout {
        let (c, l) = (client.clone(), leader.clone());
        // Released as soon as shutdown is requested, not after --shutdown-delay.
        let stop = rt.stepping_down();
        rt.spawn_restarting_draining("lease", move || {
            lease::run(c.clone(), lease_settings.clone(), l.clone(), stop.clone())
        });
        let (c, cache, metrics, l, events) = (
            client.clone(),
            cache.clone(),
            metrics.clone(),
            leader.clone(),
            events.clone(),
        );
        rt.spawn_restarting("rollout", move || {
            controller::run(
                c.clone(),
                cache.clone(),
                settings.clone(),
                l.subscribe(),
                events.clone(),
                metrics.clone(),
                linked.clone(),
            )
        });
    } else {
        tracing::info!("rollout loop off (--rollout=off)");
    }
    {
        let (cache, gate, events) = (cache.clone(), may_report.clone(), events.clone());
        rt.spawn_restarting("node-problems", move || {
            crate::obs::reports::run_problem_events(cache.clone(), gate.clone(), events.clone())
        });
    }
    if let Some(settings) = resolve {
        let (cache, gate, events, metrics) = (
            cache.clone(),
            may_report.clone(),
            events.clone(),
            metrics.clone(),
        );
        rt.spawn_restarting("peer-resolution", move || {
            crate::obs::reports::run_resolution_checks(
                cache.clone(),
                settings.clone(),
                gate.clone(),
                events.clone(),
                metrics.clone(),
            )
        });
    } else {
        tracing::info!("peer resolution checks off (--resolve-check-interval=0s)");
    }
    // Nothing to finish at shutdown: cancelled (it would otherwise poll forever).
    rt.spawn_critical_cancel(
        "tls-reloader",
        certs.run(args.tls_reload_interval, metrics.clone()),
    );
    let admission = server::admission_router(Arc::new(
        AdmissionState::new(cache.clone(), inject_settings, metrics.clone()).with_events(events),
    ));
    rt.spawn_critical(
        "https",
        server::TlsServer::new(https, tls, admission)
            .drain(args.drain_timeout)
            .run(rt.stop_signal()),
    );
    let admin_router = server::admin_router(Arc::new(AdminState {
        cache,
        metrics,
        draining: draining.clone(),
    }));
    rt.spawn_critical(
        "admin",
        server::serve_plain(admin, admin_router, rt.stop_signal()),
    );

    let stop = rt.wait(shutdown_signal()).await;
    draining.store(true, Ordering::SeqCst);
    // Stop acting as the rollout leader at once and give the Lease to a standby.
    leader.send_replace(false);
    let failed = match stop {
        Stop::Signal => {
            tracing::info!(delay = ?args.shutdown_delay, "shutdown requested: /readyz now fails; still serving until the delay ends");
            tokio::time::sleep(args.shutdown_delay).await;
            None
        }
        Stop::TaskEnded(task) => {
            tracing::error!(
                task,
                "a task the injector cannot run without ended; stopping so that Kubernetes restarts the pod"
            );
            Some(task)
        }
    };
    rt.shutdown(args.drain_timeout + std::time::Duration::from_secs(5))
        .await;
    tracing::info!("stopped");
    match failed {
        None => Ok(()),
        Some(task) => Err(Error::TaskEnded(task)),
    }
}

/// The Lease and loop settings, or `None` with `--rollout=off`.
fn rollout_settings(
    args: &ServeArgs,
    identity: &str,
) -> Result<
    Option<(
        crate::rollout::lease::LeaseSettings,
        crate::rollout::controller::RolloutSettings,
    )>,
    Error,
> {
    use crate::rollout::{controller, lease};
    if args.rollout == controller::Mode::Off {
        return Ok(None);
    }
    let namespace = args.lease_namespace.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
        Error::Config("the rollout loop needs a namespace for its leader Lease: pass --lease-namespace or set POD_NAMESPACE (or --rollout=off)".into())
    })?;
    let settings = controller::RolloutSettings {
        mode: args.rollout,
        plan: args.policy.plan(args.patch.peer_updates),
        debounce: args.debounce,
        windows: args.policy.rollout_window.clone(),
        stuck_after: args.stuck_after,
        namespaces: args.kube.namespaces(),
        coordination: coordination(args, &namespace)?,
    };
    Ok(Some((
        lease::LeaseSettings::new(args.lease_name.clone(), namespace, identity.to_owned()),
        settings,
    )))
}

/// This cluster's side of the cross-cluster rollout protocol, when clusters are linked.
fn coordination(
    args: &ServeArgs,
    namespace: &str,
) -> Result<Option<crate::rollout::coordination::Coordinator>, Error> {
    let linking =
        args.remote.secret_namespace().is_some() || !args.remote.remote_kubeconfigs.is_empty();
    let name = args.cluster_name.trim();
    if !linking {
        return Ok(None);
    }
    if !crate::watch::remote::valid_cluster_name(name) {
        return Err(Error::Config(format!(
            "linked clusters need this cluster's name for their rollouts to take turns: pass --cluster-name \
             (1-63 lower-case letters, digits or '-'; got {name:?}), or --rollout=off"
        )));
    }
    if args
        .remote
        .remote_kubeconfigs
        .iter()
        .any(|(n, _)| n == name)
    {
        return Err(Error::Config(format!(
            "--remote-kubeconfig links cluster {name:?}, which is this cluster's --cluster-name; give every cluster its own name"
        )));
    }
    Ok(Some(crate::rollout::coordination::Coordinator {
        cluster: name.to_owned(),
        namespace: namespace.to_owned(),
        leader_lease: args.lease_name.clone(),
    }))
}

/// The resolution checks' settings, or `None` with `--resolve-check-interval=0s`.
fn resolve_settings(
    args: &ServeArgs,
) -> Result<Option<crate::obs::reports::ResolveSettings>, Error> {
    if args.resolve_check_interval.is_zero() {
        return Ok(None);
    }
    let resolver = args.dns.resolver().map_err(|e| {
        Error::Config(format!(
            "peer resolution checks: {e}; pass --dns-server, or --resolve-check-interval=0s to turn them off"
        ))
    })?;
    Ok(Some(crate::obs::reports::ResolveSettings {
        interval: args.resolve_check_interval,
        grace: args.resolve_grace,
        resolver,
    }))
}

/// SIGTERM or Ctrl-C: the one way a long-running command is asked to stop.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
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
