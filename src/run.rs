//! What each subcommand does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tokio::sync::watch;

use crate::cache::{self, PeerCache};
use crate::cli::{CertsArgs, Cli, Command, InjectArgs, LogFormat, PeersArgs, ServeArgs};
use crate::error::Error;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::nodes::NodeRecord;
use crate::peers::PeerSnapshot;
use crate::runtime::{Runtime, Stop};
use crate::server::{self, AdminState, AdmissionState, tls::CertWatcher};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => {
            init_tracing(a.log_format);
            serve(*a).await
        }
        Command::Inject(a) => {
            init_tracing(LogFormat::Plain);
            let out = inject(&a)?;
            print!("{out}");
            Ok(())
        }
        Command::Peers(a) => {
            init_tracing(LogFormat::Plain);
            peers(a).await
        }
        Command::Explain(a) => crate::explain_cmd::main(*a).await,
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml().map_err(Error::Crd)?);
            Ok(())
        }
        Command::Certs(CertsArgs { out, hosts, ips }) => {
            crate::certs::generate(&out, &hosts, &ips)?;
            eprintln!("wrote {}/{{ca.crt,tls.crt,tls.key}}", out.display());
            Ok(())
        }
        Command::RenderConfig(a) => crate::config::render::main(&a),
        Command::RemoteSecret(a) => {
            print!(
                "{}",
                crate::remote_secret::run(&a)
                    .await
                    .map_err(Error::RemoteSecret)?
            );
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: `kubectl logs` and log collectors get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Plain => b.try_init(),
    };
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
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
    let linked = Arc::new(crate::remote::Linked::default());
    let resolve = resolve_settings(&args)?;

    let https = server::bind(args.listen).await?;
    let admin = server::bind(args.admin_listen).await?;
    tracing::info!(https = %args.listen, admin = %args.admin_listen, namespaces = ?args.kube.namespaces(),
        max_peers = peer_settings.max_peers, cluster_domain = %peer_settings.cluster_domain,
        config_mode = ?inject_settings.config_mode, "stellar-peer-injector starting");

    let mut rt = Runtime::new(metrics.clone());
    // The one Event recorder: every producer hands it notices through a bounded queue.
    let (events, queue) = EventSink::channel(crate::events::QUEUE_CAPACITY, metrics.clone());
    {
        let reporter = kube::runtime::events::Reporter {
            controller: crate::rollout::controller::FIELD_MANAGER.into(),
            instance: Some(identity.clone()),
        };
        let (client, metrics) = (client.clone(), metrics.clone());
        rt.spawn_restarting("events", move || {
            crate::events::run(
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
            crate::services::run(
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
            crate::reports::run_problem_events(cache.clone(), gate.clone(), events.clone())
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
            crate::reports::run_resolution_checks(
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
        plan: args.policy.plan(),
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
    if !crate::remote::valid_cluster_name(name) {
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
fn resolve_settings(args: &ServeArgs) -> Result<Option<crate::reports::ResolveSettings>, Error> {
    if args.resolve_check_interval.is_zero() {
        return Ok(None);
    }
    let resolver = args.dns.resolver().map_err(|e| {
        Error::Config(format!(
            "peer resolution checks: {e}; pass --dns-server, or --resolve-check-interval=0s to turn them off"
        ))
    })?;
    Ok(Some(crate::reports::ResolveSettings {
        interval: args.resolve_check_interval,
        grace: args.resolve_grace,
        resolver,
    }))
}

async fn shutdown_signal() {
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

async fn peers(args: PeersArgs) -> Result<(), Error> {
    let settings = args.peers.settings()?;
    let resolver = if args.resolve {
        Some(args.dns.resolver()?)
    } else {
        None
    };
    let client = args.kube.client().await?;
    let (snap, link_errors) = cache::snapshot_once(
        &client,
        &args.kube.namespaces(),
        &args.remote.sources()?,
        &settings,
    )
    .await?;
    let round = match &resolver {
        Some(r) => Some(crate::reports::check(r, &snap, &Default::default()).await),
        None => None,
    };
    let servers: Vec<String> = resolver
        .iter()
        .flat_map(|r| r.servers())
        .map(ToString::to_string)
        .collect();
    let out = crate::inspect::PeersView {
        snap: &snap,
        network: args.network.as_deref(),
        round: round.as_ref(),
        dns_servers: &servers,
        link_errors: &link_errors,
    }
    .render(args.output);
    for line in &out.notes {
        eprintln!("{line}");
    }
    print!("{}", out.stdout);
    Ok(())
}

/// Offline injection: returns the mutated manifests as multi-document YAML.
pub fn inject(args: &InjectArgs) -> Result<String, Error> {
    if args.nodes == "-" && args.file == "-" {
        return Err(Error::Config(
            "--nodes and -f cannot both read stdin".to_owned(),
        ));
    }
    let settings = args.peers.settings()?;
    let patch = args.patch.settings()?;
    let node_docs = crate::input::documents(&args.nodes)?;
    let records: Vec<NodeRecord> = node_docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("StellarNode"))
        .filter_map(|d| NodeRecord::from_json(d, &args.namespace))
        .collect();
    let snap = PeerSnapshot::build(1, &records, &settings);
    for p in &snap.problems {
        eprintln!("warning: {}: {}", p.node, p.message);
    }
    let docs = crate::input::documents(&args.file)?;
    Ok(crate::inject::offline::inject_documents(
        docs,
        &snap,
        &patch,
        &args.namespace,
    )?)
}

/// Parses the command line and runs it.
pub fn main_with(cli: Cli) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
