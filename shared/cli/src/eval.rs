//! `nectar eval`: the offline bench every model claim is made with.
//!
//! `nectar eval --train FILE --test FILE --algo {popular,trending,item_knn,als,mf}
//! [--param NAME=VALUE]… [--k 10] [--recs-out FILE] [--preds-out FILE] [--json]`
//!
//! Input files are refeval CSVs (`user_id,item_id,rating,timestamp`, with header). The model
//! is fitted as the train task fits it, turned into the artifacts training publishes, and
//! ranked through the serving model and the one ranker with the train task's warm-only
//! protocol: `nectar_platform::train::offline`, shared with the Lab's `nectar.evaluate`. So `nectar eval` on the split that `nectar train --export-split`
//! writes reports the run record's candidate metrics. The outputs can be re-scored by
//! `baselines.py --score-recs/--score-preds`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nectar_model::algo::spec::ALGORITHMS;
use nectar_model::algo::AlgoSpec;
use nectar_model::evaluation::OfflineReport;
use nectar_model::interactions::{parse_ratings_csv, RatingRow, ValueMode};
use nectar_platform::train::offline;
use serde_json::{json, Map, Value};

/// Flags of `nectar eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Training CSV: user_id,item_id,rating,timestamp (with header).
    #[arg(long)]
    pub train: PathBuf,
    /// Test CSV, same columns.
    #[arg(long)]
    pub test: PathBuf,
    /// Algorithm to fit.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ALGORITHMS))]
    pub algo: String,
    /// Algorithm parameter, repeatable (e.g. --param factors=64 --param confidence=binary).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Cut-off of the ranking metrics and list length.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Write every scored user's list as user_id,rank,item_id,score.
    #[arg(long)]
    pub recs_out: Option<PathBuf>,
    /// Write a prediction for every test row as user_id,item_id,prediction (rating models).
    #[arg(long)]
    pub preds_out: Option<PathBuf>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

pub(crate) fn read_rows(path: &Path) -> anyhow::Result<Vec<RatingRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_ratings_csv(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `nectar eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let spec = AlgoSpec::parse(&args.algo, &args.params)?;
    if args.preds_out.is_some() && !spec.predicts_ratings() {
        bail!("--preds-out needs a rating model (--algo mf)");
    }
    let train = read_rows(&args.train)?;
    let test = read_rows(&args.test)?;
    for w in [
        duplicate_warning(&args.train, &train, Side::Train, &spec),
        duplicate_warning(&args.test, &test, Side::Test, &spec),
    ]
    .into_iter()
    .flatten()
    {
        eprintln!("{w}");
    }
    let report = evaluate(&spec, &train, &test, args.k)?;

    if let Some(path) = &args.recs_out {
        write_recs(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.preds_out {
        write_preds(path, &test, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = summary_json(args, &report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_table(args, &report);
    }
    Ok(())
}

/// Fits `spec` on `train` as the train task does, publishes its artifacts in memory and scores
/// them on `test` with the train task's protocol (see the module docs): the platform's
/// [`nectar_platform::train::offline::evaluate`], which the Lab's `nectar.evaluate` calls too.
pub fn evaluate(
    spec: &AlgoSpec,
    train: &[RatingRow],
    test: &[RatingRow],
    k: usize,
) -> anyhow::Result<OfflineReport> {
    if k == 0 {
        bail!("--k must be at least 1");
    }
    Ok(offline::evaluate(spec, train, test, k)?)
}

/// Which file a row set came from: duplicates combine differently in each.
#[derive(Clone, Copy)]
enum Side {
    Train,
    Test,
}

/// Rows that repeat an earlier row's (user, item) pair, and how many pairs are repeated.
fn duplicate_pairs(rows: &[RatingRow]) -> (usize, usize) {
    let mut seen: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        *seen.entry((&r.user_id, &r.item_id)).or_default() += 1;
    }
    let pairs = seen.values().filter(|&&n| n > 1).count();
    (rows.len() - seen.len(), pairs)
}

/// A warning when a file repeats (user, item) pairs, saying what the evaluation does with them
/// (the matrix builder and the warm test set combine them; see `from_rating_rows` and
/// `WarmTest`), since that changes what the metrics measure.
fn duplicate_warning(
    path: &Path,
    rows: &[RatingRow],
    side: Side,
    spec: &AlgoSpec,
) -> Option<String> {
    let (extra, pairs) = duplicate_pairs(rows);
    if extra == 0 {
        return None;
    }
    let how = match side {
        Side::Train => match spec.value_mode() {
            ValueMode::Binary => {
                "they are combined into one train cell of value 1 (the pair counts once, \
                 ratings ignored) with the newest timestamp"
            }
            ValueMode::Sum if spec.predicts_ratings() => {
                "their ratings are summed into one train cell with the newest timestamp (a pair \
                 rated 4 and then 5 trains as a rating of 9): keep one row per pair for a \
                 rating model"
            }
            ValueMode::Sum => {
                "their ratings are summed into one train cell (its confidence) with the newest \
                 timestamp"
            }
        },
        Side::Test if spec.predicts_ratings() => {
            "the pair counts once in the ranking metrics; RMSE/MAE score every row"
        }
        Side::Test => "the pair counts once in the ranking metrics",
    };
    Some(format!(
        "warning: {}: {extra} row(s) repeat an earlier (user, item) pair ({pairs} pair(s)); {how}.",
        path.display()
    ))
}

fn summary_json(args: &EvalArgs, r: &OfflineReport) -> Value {
    let mut o = Map::new();
    o.insert("algo".into(), json!(args.algo));
    o.insert(
        "params".into(),
        Value::Object(
            args.params
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        ),
    );
    o.extend(offline::report_json(r, args.k));
    Value::Object(o)
}

fn print_table(args: &EvalArgs, r: &OfflineReport) {
    let k = args.k;
    let m = &r.ranking;
    println!(
        "{} on {} users × {} items ({} train cells); {} users scored",
        args.algo,
        r.train.n_users(),
        r.train.n_items(),
        r.train.nnz(),
        m.users_scored
    );
    println!(
        "P@{k} {:.4}  R@{k} {:.4}  nDCG@{k} {:.4}  MAP@{k} {:.4}  HR@{k} {:.4}  cov@{k} {:.4}",
        m.precision, m.recall, m.ndcg, m.map, m.hit_rate, m.coverage
    );
    if let (Some(rmse), Some(mae)) = (r.rmse, r.mae) {
        println!("RMSE {rmse:.4}  MAE {mae:.4}");
    }
    println!(
        "fit {:.3} s, top-{k} for the {} scored users {:.3} s",
        r.fit_seconds, m.users_scored, r.recommend_seconds
    );
}

fn write_recs(path: &Path, r: &OfflineReport) -> anyhow::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "user_id,rank,item_id,score")?;
    let users = r.train.user_ids();
    let items = r.train.item_ids();
    for (&u, list) in r.test.users.iter().zip(&r.recs) {
        for (rank, &(i, score)) in list.iter().enumerate() {
            writeln!(
                w,
                "{},{},{},{}",
                users[u as usize],
                rank + 1,
                items[i as usize],
                score
            )?;
        }
    }
    w.flush()?;
    Ok(())
}

fn write_preds(path: &Path, test: &[RatingRow], r: &OfflineReport) -> anyhow::Result<()> {
    let preds = r
        .predictions
        .as_ref()
        .context("the model made no rating predictions")?;
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "user_id,item_id,prediction")?;
    for (row, p) in test.iter().zip(preds) {
        writeln!(w, "{},{},{}", row.user_id, row.item_id, p)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str, f32)]) -> Vec<RatingRow> {
        pairs
            .iter()
            .enumerate()
            .map(|(t, &(u, i, r))| RatingRow {
                user_id: u.into(),
                item_id: i.into(),
                rating: r,
                timestamp: t as i64,
            })
            .collect()
    }

    #[test]
    fn duplicate_pairs_are_reported_with_how_they_combine() {
        // GIVEN a train file where u1 rated i1 three times and u2 rated i2 twice
        let train = rows(&[
            ("u1", "i1", 4.0),
            ("u1", "i1", 5.0),
            ("u1", "i1", 3.0),
            ("u2", "i2", 1.0),
            ("u2", "i2", 2.0),
            ("u2", "i3", 2.0),
        ]);
        let path = Path::new("train.csv");
        let spec = |algo: &str, params: &[(&str, &str)]| {
            let p: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            AlgoSpec::parse(algo, &p).unwrap()
        };
        // WHEN the warning is built for a binary ranking model
        let w = duplicate_warning(path, &train, Side::Train, &spec("als", &[])).unwrap();
        // THEN it counts the repeated rows and pairs and says the pair counts once
        assert!(
            w.starts_with(
                "warning: train.csv: 3 row(s) repeat an earlier (user, item) pair (2 pair(s));"
            ),
            "{w}"
        );
        assert!(w.contains("value 1"), "{w}");
        // AND for the rating model it says the ratings are summed
        let w = duplicate_warning(path, &train, Side::Train, &spec("mf", &[])).unwrap();
        assert!(w.contains("summed"), "{w}");
        let w = duplicate_warning(
            path,
            &train,
            Side::Train,
            &spec("als", &[("confidence", "rating")]),
        )
        .unwrap();
        assert!(w.contains("summed") && w.contains("confidence"), "{w}");
        // AND a test file's repeats count once in the ranking metrics
        let w = duplicate_warning(path, &train, Side::Test, &spec("popular", &[])).unwrap();
        assert!(w.contains("counts once in the ranking metrics"), "{w}");
        // AND a file without repeats gives no warning
        assert!(duplicate_warning(path, &train[4..], Side::Train, &spec("als", &[])).is_none());
    }

    #[test]
    fn summing_duplicates_is_what_the_matrix_does() {
        // GIVEN a pair rated twice (the behaviour the warning describes)
        let train = rows(&[("u1", "i1", 4.0), ("u1", "i1", 5.0), ("u2", "i1", 1.0)]);
        // WHEN the matrix is built as for mf and for a binary model
        let sum = nectar_model::interactions::from_rating_rows(&train, ValueMode::Sum).unwrap();
        let bin = nectar_model::interactions::from_rating_rows(&train, ValueMode::Binary).unwrap();
        // THEN the cell holds 9 and 1
        let u = sum.user_index("u1").unwrap();
        assert_eq!(sum.user_row(u).1, &[9.0]);
        assert_eq!(bin.user_row(bin.user_index("u1").unwrap()).1, &[1.0]);
    }

    #[test]
    fn params_parse() {
        assert_eq!(
            parse_param("factors=64").unwrap(),
            ("factors".to_string(), "64".to_string())
        );
        assert!(parse_param("factors").is_err());
        assert!(parse_param("=3").is_err());
    }
}
