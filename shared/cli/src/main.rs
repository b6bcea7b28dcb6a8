//! `nectar`: Nectar's command line: the local dev server (the embedded twin of every Lambda),
//! config checks, and the offline tools.

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator (see the crate's Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
mod banner;
mod bench;
mod bench_report;
mod bench_serve;
mod bench_train;
mod compact;
mod demo;
mod dev;
mod eval;
mod export;
mod forget;
mod import;
mod lab;
mod publish;
mod report;
mod train;

/// Nectar: recommendations for broadcasters, on AWS Lambda or on this machine.
#[derive(Debug, Parser)]
#[command(name = "nectar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole flow on this machine: synthetic broadcaster data through collect, training,
    /// offline metrics, sample recommendations, then the dev server (`--no-serve` exits).
    Demo(demo::DemoArgs),
    /// Serve every HTTP route locally (collect, recommend, similar, items) on the embedded backends, or on real
    /// Kinesis/S3 when --stream/--bucket are given.
    Dev(dev::DevArgs),
    /// Run training tasks on the local event log into the local model store.
    Train(train::TrainArgs),
    /// The online report of a site (CTR per variant with intervals, lift, p-values, funnel)
    /// from the event log, as JSON, Markdown or one self-contained HTML page.
    Report(report::ReportArgs),
    /// Publish a version made outside Nectar (the artifact format: a directory or
    /// s3://bucket/prefix/) through the task's holdout, quality gate, atomic publish and
    /// registry. Exit codes: 0 published, 2 invalid artifacts, 3 refused by the gate, 1 failed.
    Publish(publish::PublishArgs),
    /// Write a published version's item side (item ids and factors, lists) in the artifact
    /// format, to a directory or s3://bucket/prefix/.
    Export(export::ExportArgs),
    /// Compact the finished UTC days of the event log into Parquet (`compacted/`), as the
    /// train Lambda's `compact` job does.
    Compact(compact::CompactArgs),
    /// Erase a user or a client of a site (GDPR): their history, factors and lists now,
    /// their events at the next training and compaction.
    Forget(forget::ForgetArgs),
    /// Import a MovieLens-style ratings CSV into the event log.
    Import(import::ImportArgs),
    /// Offline evaluation of an algorithm on train/test CSV files (refeval's protocol).
    Eval(eval::EvalArgs),
    /// The Lab: a venv with JupyterLab and the `nectar` Python package built from this
    /// checkout, started on localhost on the data dir (prints the URL; --dry-run prints the plan).
    Lab(lab::LabArgs),
    /// Admin keys (catalog upserts, key-protected endpoints).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Benchmarks of the hot paths on synthetic data (collect parsing, the recommend scan);
    /// each prints one JSON object.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Validate a declarative config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an admin key for a site: printed once, only its SHA-256 is stored
    /// (`<data-dir>/keys.txt`, read by `nectar dev` at start-up).
    Create {
        /// The site the key is bound to.
        #[arg(long)]
        site: String,
        /// Data dir of the embedded backends.
        #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
        data_dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file (or the embedded default) and print a summary.
    Check {
        /// The file; the embedded default when omitted.
        file: Option<std::path::PathBuf>,
    },
}

/// Logs go to stderr (stdout carries what a command prints: tables, JSON, keys), coloured only
/// on a terminal and without `NO_COLOR`. `quiet` lists the modules whose INFO lines repeat
/// what the command prints itself; `RUST_LOG` overrides all of it.
fn init_tracing(quiet: &[&str]) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let mut directives = "info,aws_config=warn,aws_smithy_runtime=warn".to_string();
        for module in quiet {
            directives.push_str(&format!(",{module}=warn"));
        }
        tracing_subscriber::EnvFilter::new(directives)
    });
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `nectar train` prints each run's outcome, and the demo also each answer's model version.
    let quiet: &[&str] = match cli.command {
        Command::Train(_) | Command::Publish(_) => &["nectar_platform::train"],
        Command::Demo(_) => &["nectar_platform::train", "nectar_platform::recommend"],
        _ => &[],
    };
    init_tracing(quiet);
    match cli.command {
        Command::Dev(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(dev::run(args))
        }
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Train(args) => runtime()?.block_on(train::run(args)),
        Command::Publish(args) => {
            let outcome = runtime()?.block_on(publish::run(args))?;
            outcome.report();
            let code = outcome.exit_code();
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Export(args) => runtime()?.block_on(export::run(args)).map(|_| ()),
        Command::Import(args) => runtime()?.block_on(import::run(args)),
        Command::Forget(args) => runtime()?.block_on(forget::run(args)).map(|_| ()),
        Command::Report(args) => runtime()?.block_on(report::run(args)),
        Command::Compact(args) => runtime()?.block_on(compact::run(args)),
        Command::Eval(args) => eval::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Bench { command } => bench::run(&command),
        Command::Key {
            command: KeyCommand::Create { site, data_dir },
        } => {
            if !nectar_model::event::is_valid_key(&site) {
                anyhow::bail!("site keys match [a-z0-9_-]{{1,64}}");
            }
            let key = nectar_platform::auth::AdminKeys::create(&data_dir.join("keys.txt"), &site)?;
            println!("{key}");
            eprintln!("Admin key for site {site}: shown once; only its SHA-256 is stored in {}. Restart nectar dev to load it.", data_dir.join("keys.txt").display());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let cfg = nectar_platform::config::NectarConfig::load(file.as_deref())?;
            let name = file.map_or_else(
                || "embedded default".to_string(),
                |f| f.display().to_string(),
            );
            println!(
                "{name}: ok ({} site(s): {})",
                cfg.sites.len(),
                cfg.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
    }
}
