//! `picloud`: the server and its command-line tool.

use std::process::ExitCode;

use clap::Parser;
use picloud::config::{Cli, Command, LogFormat};
use picloud::server::{self, build_app, open_database};
use picloud::{commands, fd_limit, telemetry};
use picloud_manager_core::db::redact_url;
use tokio_util::sync::CancellationToken;

// mimalloc, counting each thread's allocations so a script run's memory limit can be
// enforced (see picloud_executor_core::memory).
#[global_allocator]
static ALLOCATOR: picloud_executor_core::memory::CountingAllocator<mimalloc::MiMalloc> =
    picloud_executor_core::memory::CountingAllocator::new(mimalloc::MiMalloc);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    if let Err(message) = telemetry::init_tracing(log_format) {
        return config_error(&message);
    }
    if let Command::Sources(command) = cli.command {
        // The app's database, not PiCloud's: nothing of PiCloud's is opened.
        return match commands::sources(command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Serve(args) = &cli.command {
        if let Err(message) = args.validate() {
            return config_error(&message);
        }
    } else {
        // `serve` logs the database it uses; the CLI says it on stderr, so `--json`
        // output stays one parseable line.
        eprintln!("database: {}", commands::describe_database(&cli.database));
    }
    if !matches!(cli.command, Command::Serve(_) | Command::Migrate) {
        // Only `serve` and `migrate` create a database: anything else run from the
        // wrong directory would work on a new, empty one and report nothing wrong.
        if let Err(e) = commands::require_existing_database(&cli.database) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }

    let db = match open_database(&cli.database).await {
        Ok(db) => db,
        Err(e @ server::Error::DatabaseUrl(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!(
                "error: could not open the database {}: {e}",
                redact_url(&cli.database.url())
            );
            return ExitCode::FAILURE;
        }
    };

    let result = match cli.command {
        Command::Serve(args) => serve(db.clone(), &cli.database, args).await,
        Command::Migrate => {
            println!("database is up to date");
            Ok(())
        }
        Command::Apps(command) => commands::apps(&db, command).await,
        Command::Keys(command) => commands::keys(&db, command).await,
        Command::Admins(command) => commands::admins(&db, command).await,
        Command::Secrets(command) => commands::secrets(&db, &cli.database, command).await,
        Command::Sources(_) => unreachable!("handled before the database is opened"),
    };
    db.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<server::Error>() {
            Some(server::Error::Config(_)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            _ => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Reports a configuration error and gives its exit code, 2, as clap does for a bad
/// value.
fn config_error(message: &str) -> ExitCode {
    eprintln!("error: invalid configuration: {message}");
    ExitCode::from(2)
}

async fn serve(
    db: picloud_manager_core::Db,
    database: &picloud::config::DatabaseArgs,
    args: picloud::config::ServeArgs,
) -> anyhow::Result<()> {
    // Every connection is a file descriptor: use all the process may have.
    match fd_limit::raise_to_hard() {
        Ok((before, after)) => tracing::info!(
            soft_before = before.soft,
            soft = after.soft,
            hard = after.hard,
            "open-file limit"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let url = &database.url();
    picloud::master_key::unlock(&db, database).await?;
    let app = build_app(db, &args).await?;
    // Before the server says it listens: a supervisor may stop it at once, and a signal
    // arriving before the handlers exist would kill the process mid-request.
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(
        ShutdownSignals::install()?,
        shutdown.clone(),
    ));
    let addr = app.local_addr();
    if let Some(created) = app.bootstrap_key() {
        print_bootstrap_banner(&created.secret, addr);
    }
    tracing::info!(%addr, database = %redact_url(url), dashboard = %format!("http://{addr}/_/"), "PiCloud listening");

    app.run(shutdown).await?;
    Ok(())
}

/// Prints the first instance key once, to stdout (never to the log).
fn print_bootstrap_banner(secret: &str, addr: std::net::SocketAddr) {
    println!(
        "\n\
         ==================================================================\n\
         PiCloud created this instance's first admin key. It is shown ONCE:\n\n\
         \x20   {secret}\n\n\
         Try it:  curl -H 'Authorization: Bearer {secret}' http://{addr}/v1/apps\n\
         More:    picloud keys create --instance --name NAME\n\n\
         Dashboard: http://{addr}/_/\n\
         Create an admin to sign in:  picloud admins create --email you@example.com\n\
         ==================================================================\n"
    );
}

/// The signals that stop the server (SIGINT, i.e. Ctrl-C, and SIGTERM), listened for
/// from the moment this is made: from then on they no longer kill the process.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for the first of them.
    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `token` on the first shutdown signal.
async fn cancel_on_signal(signals: ShutdownSignals, token: CancellationToken) {
    signals.recv().await;
    tracing::info!("shutdown requested; finishing in-flight requests");
    token.cancel();
}
