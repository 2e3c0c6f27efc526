//! The commands, one file each; this module parses nothing and dispatches.

pub mod certs;
pub mod crd;
pub mod explain;
pub mod live_peers;
pub mod remote_secret;
pub mod render_config;

pub mod inject;
pub mod peers;
pub mod serve;

use crate::cli::{CertsArgs, Cli, Command, LogFormat};
use crate::error::Error;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => {
            init_tracing(a.log_format);
            serve::main(*a).await
        }
        Command::Inject(a) => {
            init_tracing(LogFormat::Plain);
            let out = inject::main(&a)?;
            print!("{out}");
            Ok(())
        }
        Command::Peers(a) => {
            init_tracing(LogFormat::Plain);
            peers::main(a).await
        }
        Command::Explain(a) => crate::cmd::explain::main(*a).await,
        Command::Crd => crd::main(),
        Command::Certs(CertsArgs { out, hosts, ips }) => {
            crate::cmd::certs::generate(&out, &hosts, &ips)?;
            eprintln!("wrote {}/{{ca.crt,tls.crt,tls.key}}", out.display());
            Ok(())
        }
        Command::RenderConfig(a) => Ok(crate::cmd::render_config::main(&a)?),
        Command::LivePeers(a) => {
            init_tracing(LogFormat::Plain);
            live_peers::main(a).await
        }
        Command::RemoteSecret(a) => {
            print!(
                "{}",
                crate::cmd::remote_secret::run(&a)
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
