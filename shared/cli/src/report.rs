//! `nectar report`: the online report of a site (CTR per variant with intervals, lift,
//! p-values, funnel) from the local data dir or an S3 bucket, as JSON, Markdown or one HTML
//! page. The same code as the scheduled report task, without writing to the bucket.

use std::path::{Path, PathBuf};

use crate::backends::Backends;
use anyhow::{bail, Context};
use nectar_platform::catalog::Catalog;
use nectar_platform::config::NectarConfig;
use nectar_platform::report::{build_report, render, Format, ReportRequest};

use crate::train::parse_time;

/// The range when `--since` is not given: this many days before `--until`.
const DEFAULT_DAYS: i64 = 7;

/// Flags of `nectar report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Data dir of the embedded backends (event log, catalog).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Read the event log from this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// Read the catalog (coverage, diversity) from this DynamoDB table instead of the data dir;
    /// with --bucket and without it, coverage and diversity are null.
    #[arg(long, env = "NECTAR_CATALOG_TABLE")]
    pub catalog_table: Option<String>,
    /// AWS endpoint URL for S3 and DynamoDB (e.g. a local moto server; S3 then uses
    /// path-style addressing); AWS_ENDPOINT_URL works too.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The site; the config's only (or first) site when omitted.
    #[arg(long)]
    pub site: Option<String>,
    /// Only this endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Range start: YYYY-MM-DD (UTC midnight) or an RFC 3339 time; default --until − 7 days.
    #[arg(long)]
    pub since: Option<String>,
    /// Range end (exclusive): YYYY-MM-DD (UTC midnight) or an RFC 3339 time; default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Output format; default: from the --out extension, else json.
    #[arg(long, value_parser = ["html", "json", "md"])]
    pub format: Option<String>,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Declarative config file; the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// A `--since`/`--until` value in ms UTC; a date is its UTC midnight.
fn time_flag(flag: &str, value: &str) -> anyhow::Result<i64> {
    parse_time(value, false).with_context(|| format!("{flag} {value:?}"))
}

/// The output format: `--format`, else the `--out` extension, else JSON.
fn format_of(format: Option<&str>, out: Option<&Path>) -> Format {
    format
        .and_then(Format::parse)
        .or_else(|| {
            out.and_then(|o| o.extension())
                .and_then(|e| e.to_str())
                .and_then(Format::parse)
        })
        .unwrap_or(Format::Json)
}

/// The site asked for, else the config's only (or first) one.
fn pick_site(cfg: &NectarConfig, site: Option<&str>) -> anyhow::Result<String> {
    let known = || cfg.sites.keys().cloned().collect::<Vec<_>>().join(", ");
    match site {
        Some(s) if cfg.site(s).is_some() => Ok(s.to_string()),
        Some(s) => bail!("--site {s:?}: unknown site (the config has: {})", known()),
        None => cfg
            .sites
            .keys()
            .next()
            .cloned()
            .context("the config declares no site"),
    }
}

/// Runs `nectar report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let cfg = NectarConfig::load(args.config.as_deref())?;
    let site = pick_site(&cfg, args.site.as_deref())?;
    let until_ms = match &args.until {
        Some(u) => time_flag("--until", u)?,
        None => nectar_platform::now_ms(),
    };
    let since_ms = match &args.since {
        Some(s) => time_flag("--since", s)?,
        None => until_ms - DEFAULT_DAYS * 86_400_000,
    };
    if since_ms >= until_ms {
        bail!("--since must be before --until");
    }
    let format = format_of(args.format.as_deref(), args.out.as_deref());
    let backends = Backends::new(&args.data_dir).with_endpoint_url(args.endpoint_url.clone());
    if args.bucket.is_none() && !args.data_dir.is_dir() {
        bail!(
            "--data-dir {}: no such directory (run nectar dev or nectar demo first, or pass --bucket)",
            args.data_dir.display()
        );
    }
    let store = backends.events(args.bucket.as_deref()).await;
    let catalog = match &args.catalog_table {
        Some(table) => {
            let items = backends
                .catalog_table(table)
                .await
                .load_site(&site)
                .await
                .with_context(|| format!("--catalog-table {table}: cannot read site {site}"))?;
            let catalog = Catalog::in_memory();
            catalog.replace_site(&site, items);
            Some(catalog)
        }
        None if args.bucket.is_none() => Some(
            Catalog::open(&args.data_dir)
                .with_context(|| format!("reading the catalog of {}", args.data_dir.display()))?,
        ),
        None => None,
    };
    let req = ReportRequest {
        site: site.clone(),
        endpoint: args.endpoint.clone(),
        since_ms,
        until_ms,
    };
    let report = build_report(&store, catalog.as_ref(), &cfg, &req).await?;
    let text = render(&report, format);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("--out {}: cannot write it", path.display()))?;
            eprintln!(
                "{site}: report of {} endpoint(s), {} – {}, written to {}",
                report.endpoints.len(),
                report.since.as_deref().unwrap_or("?"),
                report.until.as_deref().unwrap_or("?"),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_flag_then_the_extension() {
        assert_eq!(
            format_of(Some("md"), Some(Path::new("x.html"))),
            Format::Markdown
        );
        assert_eq!(format_of(None, Some(Path::new("r.HTML"))), Format::Html);
        assert_eq!(format_of(None, Some(Path::new("r.txt"))), Format::Json);
        assert_eq!(format_of(None, None), Format::Json);
    }

    #[test]
    fn times_are_dates_at_utc_midnight_or_rfc3339_and_errors_name_the_flag() {
        assert_eq!(
            time_flag("--since", "2026-11-20").unwrap(),
            1_795_132_800_000
        );
        assert_eq!(
            time_flag("--until", "2026-11-20T01:00:00+01:00").unwrap(),
            1_795_132_800_000
        );
        let e = format!("{:#}", time_flag("--since", "yesterday").unwrap_err());
        assert!(e.starts_with("--since \"yesterday\""), "{e}");
    }
}
