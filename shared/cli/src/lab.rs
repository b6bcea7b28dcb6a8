//! `nectar lab`: the PEACH Lab on a laptop. Sets up the Lab's venv (`scripts/python-env.sh
//! --jupyter`: JupyterLab and the `nectar` package built from this checkout), then starts
//! JupyterLab on localhost in `examples/lab/` with `NECTAR_DATA_DIR` pointing at the data dir
//! (what the notebooks read), and prints the URL. `--dry-run` prints the plan instead.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

/// Flags of `nectar lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// The data dir the notebooks read (`NECTAR_DATA_DIR` in the kernel); `nectar demo` writes
    /// `./.nectar-demo`.
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar-demo")]
    pub data_dir: PathBuf,
    /// The Nectar checkout the package is built from (default: found from the working
    /// directory, else from this binary's location).
    #[arg(long, env = "NECTAR_REPO")]
    pub repo: Option<PathBuf>,
    /// The venv (default: `<repo>/.venv-lab`, the one the tests use).
    #[arg(long, env = "NECTAR_LAB_VENV")]
    pub venv: Option<PathBuf>,
    /// JupyterLab's port on 127.0.0.1.
    #[arg(long, default_value_t = 8888)]
    pub port: u16,
    /// Print what would run (as JSON) and exit.
    #[arg(long)]
    pub dry_run: bool,
}

/// A command line with the environment it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables set for it.
    pub env: Vec<(String, String)>,
}

/// What `nectar lab` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The checkout.
    pub repo: PathBuf,
    /// The venv.
    pub venv: PathBuf,
    /// The data dir (absolute).
    pub data_dir: PathBuf,
    /// Makes the venv and builds the package into it.
    pub setup: Step,
    /// Starts JupyterLab.
    pub server: Step,
    /// Where to open it (with its token).
    pub url: String,
}

/// Whether `dir` is a Nectar checkout (the package and its env script are there).
fn is_checkout(dir: &Path) -> bool {
    dir.join("python/pyproject.toml").is_file() && dir.join("scripts/python-env.sh").is_file()
}

/// The checkout: `--repo`, else the first ancestor of the working dir, else of this binary
/// (`target/debug/nectar` sits inside one), that is one.
fn find_repo(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(r) = explicit {
        if !is_checkout(r) {
            bail!(
                "--repo {}: not a Nectar checkout (no python/pyproject.toml and scripts/python-env.sh)",
                r.display()
            );
        }
        return Ok(r.to_path_buf());
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok()),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|s| {
            s.ancestors()
                .find(|a| is_checkout(a))
                .map(Path::to_path_buf)
        })
        .context(
            "nectar lab builds the Python package from a Nectar checkout: run it inside the \
             repository, or pass --repo DIR",
        )
}

/// Whether this process runs as root (the owner of `/proc/self`).
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn abs(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    }
}

/// The plan for `args`, with `token` as JupyterLab's access token.
pub fn plan(args: &LabArgs, token: &str) -> anyhow::Result<Plan> {
    let repo = abs(&find_repo(args.repo.as_deref())?);
    let venv = abs(&args.venv.clone().unwrap_or_else(|| repo.join(".venv-lab")));
    let data_dir = abs(&args.data_dir);
    let s = |p: &Path| p.display().to_string();
    let setup = Step {
        argv: vec![
            "bash".into(),
            s(&repo.join("scripts/python-env.sh")),
            "--jupyter".into(),
        ],
        env: vec![("NECTAR_LAB_VENV".into(), s(&venv))],
    };
    let nectar_bin = std::env::current_exe()
        .map(|p| s(&p))
        .unwrap_or_else(|_| "nectar".into());
    let mut server = Step {
        argv: vec![
            s(&venv.join("bin/jupyter")),
            "lab".into(),
            "--no-browser".into(),
            "--ip=127.0.0.1".into(),
            format!("--port={}", args.port),
            // Another port if this one is taken would print a URL other than ours.
            "--ServerApp.port_retries=0".into(),
            format!("--ServerApp.root_dir={}", s(&repo.join("examples/lab"))),
            format!("--IdentityProvider.token={token}"),
        ],
        env: vec![
            ("NECTAR_DATA_DIR".into(), s(&data_dir)),
            ("NECTAR_REPO".into(), s(&repo)),
            ("NECTAR_BIN".into(), nectar_bin),
        ],
    };
    if running_as_root() {
        // Jupyter refuses root unless told (containers and CI run as root).
        server.argv.push("--allow-root".into());
    }
    let url = format!(
        "http://127.0.0.1:{}/lab/tree/getting-started.ipynb?token={token}",
        args.port
    );
    Ok(Plan {
        repo,
        venv,
        data_dir,
        setup,
        server,
        url,
    })
}

impl Plan {
    /// The plan as JSON (`--dry-run`).
    pub fn to_json(&self) -> serde_json::Value {
        let step = |s: &Step| {
            let env: serde_json::Map<String, serde_json::Value> = s
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            json!({"argv": s.argv, "env": env})
        };
        json!({
            "repo": self.repo,
            "venv": self.venv,
            "data_dir": self.data_dir,
            "setup": step(&self.setup),
            "server": step(&self.server),
            "url": self.url,
        })
    }
}

fn command(step: &Step) -> Command {
    let mut c = Command::new(&step.argv[0]);
    c.args(&step.argv[1..]);
    c.envs(step.env.iter().map(|(k, v)| (k, v)));
    c
}

fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Runs `nectar lab`.
pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    let plan = plan(args, &token())?;
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
        return Ok(());
    }
    if !plan.data_dir.join("events").is_dir() {
        eprintln!(
            "note: {} has no event log yet: `nectar demo --no-serve --data-dir {}` makes one",
            plan.data_dir.display(),
            plan.data_dir.display()
        );
    }
    eprintln!("Setting up {} (JupyterLab and the nectar package from {}; the first time takes a few minutes)…", plan.venv.display(), plan.repo.display());
    let status = command(&plan.setup)
        .status()
        .context("cannot run scripts/python-env.sh (bash is required)")?;
    if !status.success() {
        bail!("scripts/python-env.sh --jupyter failed ({status})");
    }
    let mut server = command(&plan.server)
        .spawn()
        .with_context(|| format!("cannot start {}", plan.server.argv[0]))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        if let Some(status) = server.try_wait()? {
            bail!("JupyterLab exited ({status}) before listening on {addr}");
        }
        if started.elapsed() > Duration::from_secs(120) {
            eprintln!("JupyterLab is not listening on {addr} after 120 s; still waiting for it");
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "The Lab is at {} (data dir {}; Ctrl-C stops it)",
        plan.url,
        plan.data_dir.display()
    );
    let status = server.wait()?;
    if !status.success() {
        bail!("JupyterLab exited ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_checkout() -> PathBuf {
        let d = std::env::temp_dir().join(format!("nectar-lab-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(d.join("python")).unwrap();
        std::fs::create_dir_all(d.join("scripts")).unwrap();
        std::fs::write(d.join("python/pyproject.toml"), "").unwrap();
        std::fs::write(d.join("scripts/python-env.sh"), "").unwrap();
        d
    }

    fn args(repo: Option<PathBuf>) -> LabArgs {
        LabArgs {
            data_dir: PathBuf::from("/data/demo"),
            repo,
            venv: None,
            port: 8899,
            dry_run: true,
        }
    }

    #[test]
    fn the_plan_builds_the_venv_then_starts_jupyterlab_on_the_data_dir() {
        // GIVEN a checkout
        let repo = fake_checkout();
        // WHEN the plan is made
        let p = plan(&args(Some(repo.clone())), "t0k3n").unwrap();
        // THEN the setup is the project's env script with JupyterLab, into <repo>/.venv-lab
        let venv = repo.join(".venv-lab").display().to_string();
        assert_eq!(
            p.setup.argv,
            [
                "bash".to_string(),
                repo.join("scripts/python-env.sh").display().to_string(),
                "--jupyter".to_string()
            ]
        );
        assert_eq!(p.setup.env, [("NECTAR_LAB_VENV".to_string(), venv.clone())]);
        // AND JupyterLab from that venv listens on localhost only, in examples/lab, with a token
        assert_eq!(p.server.argv[0], format!("{venv}/bin/jupyter"));
        for a in [
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            "--port=8899",
            "--IdentityProvider.token=t0k3n",
        ] {
            assert!(
                p.server.argv.contains(&a.to_string()),
                "{a} in {:?}",
                p.server.argv
            );
        }
        let root = format!(
            "--ServerApp.root_dir={}",
            repo.join("examples/lab").display()
        );
        assert!(p.server.argv.contains(&root));
        // AND root (containers, CI) is allowed only when this process is root
        assert_eq!(
            p.server.argv.contains(&"--allow-root".to_string()),
            running_as_root()
        );
        // AND the kernel gets the data dir the notebook reads
        assert!(p
            .server
            .env
            .contains(&("NECTAR_DATA_DIR".to_string(), "/data/demo".to_string())));
        // AND the URL opens the getting-started notebook with the token
        assert_eq!(
            p.url,
            "http://127.0.0.1:8899/lab/tree/getting-started.ipynb?token=t0k3n"
        );
        // AND the dry run prints all of it as JSON
        let j = p.to_json();
        assert_eq!(j["server"]["env"]["NECTAR_DATA_DIR"], "/data/demo");
        assert_eq!(j["url"], p.url);
    }

    #[test]
    fn a_directory_that_is_no_checkout_is_refused_naming_it() {
        let dir = std::env::temp_dir();
        let e = plan(&args(Some(dir.clone())), "t").unwrap_err().to_string();
        assert!(e.contains("not a Nectar checkout"), "{e}");
        assert!(e.contains(&dir.display().to_string()), "{e}");
    }

    #[test]
    fn the_checkout_is_found_from_the_working_dir_or_the_binary() {
        // The tests run inside the repository (cargo sets the working dir to the crate's).
        let found = find_repo(None).unwrap();
        assert!(found.join("python/pyproject.toml").is_file());
        assert!(found.join("shared/cli").is_dir());
    }
}
