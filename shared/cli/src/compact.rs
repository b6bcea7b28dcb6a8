//! `nectar compact`: compacts the finished UTC days of the event log into Parquet (the local
//! twin of the train Lambda's `compact` job), on the data dir or, with `--bucket`, on S3.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::compact::{
    compact_day, compact_site, CompactOptions, CompactOutcome,
};
use nectar_platform::privacy::LocalErasureLog;

use crate::backends::Backends;

/// Flags of `nectar compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// Data dir of the embedded backends (its event log is compacted in place).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Compact the event log in this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// The site; every site of the config when omitted.
    #[arg(long)]
    pub site: Option<String>,
    /// Only this finished UTC day (`YYYY-MM-DD`); every finished day that needs it when omitted.
    #[arg(long)]
    pub date: Option<String>,
    /// Declarative config file (its sites); the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// One line per day: what was done, rows, parts, sizes, time.
fn describe(o: &CompactOutcome) -> String {
    let status = serde_json::to_value(o.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match &o.manifest {
        Some(m) => format!(
            "{} {} {status}: {} distinct events from {} raw lines in {} objects ({} duplicates, {} malformed, {} torn members), {} part(s), raw {} B -> parquet {} B, {} ms",
            o.site,
            o.date,
            m.distinct_event_ids,
            m.raw_lines,
            m.raw_objects.len(),
            m.duplicates,
            m.malformed_lines,
            m.torn_members,
            m.parts.len(),
            m.raw_bytes,
            m.parquet_bytes,
            o.duration_ms
        ),
        None => format!("{} {} {status}", o.site, o.date),
    }
}

/// Runs `nectar compact`.
pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    let cfg = NectarConfig::load(args.config.as_deref())?;
    let sites: Vec<String> = match &args.site {
        Some(s) if cfg.site(s).is_some() => vec![s.clone()],
        Some(s) => bail!("site {s:?} is not in the config"),
        None => cfg.sites.keys().cloned().collect(),
    };
    let store = Backends::new(&args.data_dir)
        .events(args.bucket.as_deref())
        .await;
    let (opts, now) = (CompactOptions::default(), nectar_platform::now_ms());
    // The erasures `nectar forget` and `nectar dev` record in the data dir.
    let erasures = LocalErasureLog::new(&args.data_dir);
    let mut compacted = 0;
    for site in &sites {
        let outcomes = match &args.date {
            Some(date) => vec![compact_day(&store, &erasures, site, date, opts, now)
                .await
                .with_context(|| format!("compacting {site} {date}"))?],
            None => compact_site(&store, &erasures, site, opts, now)
                .await
                .with_context(|| format!("compacting {site}"))?,
        };
        for o in &outcomes {
            println!("{}", describe(o));
        }
        compacted += outcomes.iter().filter(|o| o.manifest.is_some()).count();
    }
    if args.date.is_none() {
        println!(
            "{compacted} day(s) compacted; every other finished day of {} site(s) is up to date.",
            sites.len()
        );
    }
    Ok(())
}
