//! The `gantry` command line: run, demo, validate, schema.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request path (bench/).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gantry::config::{self, ConfigErrors};
use gantry::demo::{DEMO_CONFIG, DemoUpstreams};

/// Gantry, an API gateway: one binary, one YAML file.
#[derive(Parser)]
#[command(name = "gantry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway described by a config file.
    Run {
        /// The YAML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Serve an embedded demo config with built-in demo upstreams.
    Demo {
        /// Listen address of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Check a config file; print every error as FILE:LINE:COL: key.path: reason.
    Validate {
        /// The YAML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the JSON schema of the config file.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Validate { config } => match config::load_file(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => print_errors(&errors),
        },
        Command::Schema => match serde_json::to_string_pretty(&config::json_schema()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("cannot render the schema: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match config::load_file(&config) {
            Ok(compiled) => serve(compiled, None),
            Err(errors) => print_errors(&errors),
        },
        Command::Demo { listen } => demo(&listen),
    }
}

fn print_errors(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    ExitCode::FAILURE
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// One worker thread means one core: a current-thread runtime then avoids the work-stealing
/// scheduler's cross-thread wake-ups (measured in bench/). More threads get the multi-thread one.
fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

/// Printed once the listeners are bound (the demo's "try this" text).
type Banner = Box<dyn FnOnce(&gantry::RunningGateway)>;

/// Runs the gateway until SIGTERM or SIGINT, then drains within `shutdown_grace`.
fn serve(compiled: gantry::GatewayConfig, banner: Option<Banner>) -> ExitCode {
    let rt = match runtime(compiled.worker_threads) {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Install the handlers before the listeners are announced: a signal sent by whoever read
        // the announcement must never meet the default disposition (which kills without draining).
        let signals = Signals::install();
        let gateway = match gantry::start(compiled).await {
            Ok(gateway) => gateway,
            Err(err) => {
                eprintln!("gantry: {err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
                return ExitCode::FAILURE;
            }
        };
        for (name, addr) in gateway.addrs() {
            tracing::info!(listener = %name, %addr, "listening");
            eprintln!("gantry: listener {name} on http://{addr}");
        }
        if let Some(banner) = banner {
            banner(&gateway);
        }
        if let Err(err) = gateway.watch_config_file(CONFIG_DEBOUNCE) {
            tracing::warn!(error = %err, "config file changes will not be picked up; SIGHUP and POST /admin/reload still work");
        }
        signals.wait_for_shutdown(&gateway).await;
        tracing::info!(grace = ?gateway.shutdown_grace(), "shutting down: draining in-flight requests");
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// How long the config directory must be quiet before a change is reloaded.
const CONFIG_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(200);

/// The process signals Gantry acts on: SIGTERM and SIGINT drain and stop, SIGHUP reloads.
struct Signals {
    /// `None` when the handlers could not be installed; Ctrl-C is then the way out.
    unix: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let unix = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some((term, int, hup)),
            _ => None,
        };
        Self { unix }
    }

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads the config file meanwhile.
    async fn wait_for_shutdown(self, gateway: &gantry::RunningGateway) {
        let Some((mut term, mut int, mut hup)) = self.unix else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    // The outcome is logged and kept in the reload status.
                    let _ = gateway.reload().await;
                }
            }
        }
    }
}

fn demo(listen: &str) -> ExitCode {
    // The demo upstreams live on their own small runtime so the gateway's runtime stays as configured.
    // (A multi-thread runtime: its workers keep running the upstreams outside `block_on`.)
    let upstream_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the demo upstreams: {err}");
            return ExitCode::FAILURE;
        }
    };
    let upstreams = match upstream_rt.block_on(DemoUpstreams::start()) {
        Ok(upstreams) => upstreams,
        Err(err) => {
            eprintln!("cannot start the demo upstreams: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listen = listen.to_owned();
    let env = move |name: &str| {
        if name == "DEMO_LISTEN" {
            Some(listen.clone())
        } else {
            upstreams.env(name)
        }
    };
    let compiled = match config::load_str_with_env("demo.yaml", DEMO_CONFIG, &env) {
        Ok(compiled) => compiled,
        Err(errors) => return print_errors(&errors),
    };
    let code = serve(
        compiled,
        Some(Box::new(|gateway: &gantry::RunningGateway| {
            let Some((_, addr)) = gateway.addrs().first().cloned() else {
                return;
            };
            eprintln!(
                "\nGantry demo is up on http://{addr}\n\
                 Upstreams: users (2 instances, round robin), orders (1 instance).\n\
                 Try:\n  \
                 curl -s http://{addr}/v1/users/42          # routed to users, path rewritten to /users/42; run it twice: instance alternates\n  \
                 curl -s http://{addr}/v1/orders             # routed to orders (prefix), /v1 stripped\n  \
                 curl -s -X DELETE http://{addr}/v1/users/42 # 405 with Allow, as problem+json\n  \
                 curl -s http://{addr}/nope                  # 404 problem+json with a request id\n\
                 Ctrl-C stops it.\n"
            );
        })),
    );
    drop(upstream_rt);
    code
}
