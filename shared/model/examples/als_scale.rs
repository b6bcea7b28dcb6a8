//! Scale bench: `cargo run --release -p nectar-model --example als_scale -- [N] [USERS] [ITEMS]
//! [FACTORS] [ITERATIONS] [indexed|keys]` (defaults 20 M, 1 M, 100 k, 64, 15, indexed). Generates
//! the seeded power-law dataset, builds the matrix (`keys`: through [`InteractionsBuilder`] with
//! string keys and timestamps, as the train task does), fits ALS and prints the timings as
//! JSON. Run it under `/usr/bin/time -v` for the peak RSS.

use std::time::Instant;

use nectar_model::algo::als::AlsParams;
use nectar_model::synthetic::SyntheticParams;
use nectar_model::InteractionsBuilder;

fn arg(args: &[String], i: usize, default: usize) -> usize {
    args.get(i)
        .map(|s| s.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = arg(&args, 0, 20_000_000);
    let users = arg(&args, 1, 1_000_000);
    let items = arg(&args, 2, 100_000);
    let factors = arg(&args, 3, 64);
    let iterations = arg(&args, 4, 15);

    let keys = args.get(5).map(String::as_str) == Some("keys");
    let synth = SyntheticParams::new(n, users, items);
    let t = Instant::now();
    let data = if keys {
        let mut b = InteractionsBuilder::with_capacity(n);
        let (mut ubuf, mut ibuf) = (String::new(), String::new());
        for (u, i, ts) in synth.records()? {
            use std::fmt::Write;
            ubuf.clear();
            ibuf.clear();
            write!(ubuf, "client-{u:08x}")?;
            write!(ibuf, "media:{i}")?;
            b.push(&ubuf, &ibuf, 1.0, ts);
        }
        b.build()?
    } else {
        synth.interactions()?
    };
    let build_s = t.elapsed().as_secs_f64();
    eprintln!(
        "built {} users × {} items, nnz {} in {build_s:.1}s",
        data.n_users(),
        data.n_items(),
        data.nnz()
    );

    let params = AlsParams::new()
        .factors(factors)
        .iterations(iterations)
        .regularization(0.1)
        .alpha(1.0)
        .check()?;
    let t = Instant::now();
    let model = params.fit_with_progress(&data, |it| {
        eprintln!("iteration {it} at {:.1}s", t.elapsed().as_secs_f64());
    })?;
    let fit_s = t.elapsed().as_secs_f64();
    let checksum: f64 = model.item_factors().iter().map(|&v| v as f64).sum();
    println!(
        "{{\"records\":{n},\"string_keys\":{keys},\"users\":{},\"items\":{},\"nnz\":{},\"factors\":{factors},\"iterations\":{iterations},\"threads\":{},\"build_seconds\":{build_s:.2},\"fit_seconds\":{fit_s:.2},\"item_factor_checksum\":{checksum:.6}}}",
        data.n_users(),
        data.n_items(),
        data.nnz(),
        rayon::current_num_threads()
    );
    Ok(())
}
