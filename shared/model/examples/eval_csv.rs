//! `cargo run --release -p nectar-model --example eval_csv -- TRAIN TEST ALGO [k=v ...]`:
//! the model side of `nectar eval` without the CLI crate (quick iteration on the algorithms).

use std::time::Instant;

use nectar_model::algo::AlgoSpec;
use nectar_model::evaluation::offline_eval;
use nectar_model::interactions::parse_ratings_csv;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: eval_csv TRAIN TEST ALGO [name=value ...]");
        std::process::exit(2);
    }
    let train = parse_ratings_csv(&std::fs::read_to_string(&args[0])?)?;
    let test = parse_ratings_csv(&std::fs::read_to_string(&args[1])?)?;
    let params: Vec<(String, String)> = args[3..]
        .iter()
        .map(|a| {
            let (k, v) = a.split_once('=').expect("name=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let spec = AlgoSpec::parse(&args[2], &params)?;
    let t = Instant::now();
    let r = offline_eval(&spec, &train, &test, 10)?;
    let m = &r.ranking;
    println!(
        "P {:.4} R {:.4} nDCG {:.4} MAP {:.4} HR {:.4} cov {:.4} users {} | rmse {:?} mae {:?} | fit {:.3}s rec {:.3}s total {:.3}s",
        m.precision, m.recall, m.ndcg, m.map, m.hit_rate, m.coverage, m.users_scored,
        r.rmse, r.mae, r.fit_seconds, r.recommend_seconds, t.elapsed().as_secs_f64()
    );
    Ok(())
}
