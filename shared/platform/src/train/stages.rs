//! The stages of one training run (read, split, fit, evaluate, gate, refit, publish), over the
//! run's context; `nectar publish` ([`super::publish`]) runs the same read, split, evaluate,
//! gate and publish stages on artifacts made outside, without fit or refit.

use super::*;

/// What every stage of a run reads.
pub(super) struct Stages<'a, 'd, O, M, R, T, E> {
    pub(super) req: &'a TrainRequest,
    pub(super) task: &'a TaskConfig,
    pub(super) weights: &'a nectar_model::mapping::EventWeights,
    pub(super) deps: &'a TrainDeps<'d, O, M, R, T, E>,
    pub(super) observer: &'a dyn TrainObserver,
    pub(super) now_ms: i64,
    /// The task's current version, compared with the candidate by the gate.
    pub(super) current: Option<u64>,
}

impl<O, M, R, T, E> Stages<'_, '_, O, M, R, T, E>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    /// Runs the stages, filling `run`; `Ok` for a published or refused candidate.
    pub(super) async fn run(&self, run: &mut RunRecord) -> Result<(), TrainError> {
        let Self {
            task,
            deps,
            observer,
            ..
        } = *self;
        let (all, holdout_n) = self.read(run).await?;
        let cut = all.len() - holdout_n;
        let (train, test) = (all.view_rows(0..cut), all.view_rows(cut..all.len()));
        let holdout = self.split(run, train, test);

        let progress = |f: f64| observer.progress(f);
        let mut refitted = None;
        if !holdout.is_empty() {
            // 3. Candidate on the older part, scored on the holdout.
            observer.stage("fit");
            let t = Instant::now();
            let cand = run_cpu(|| deps.trainer.fit(task, train, &progress))?;
            cand.validate()
                .map_err(|p| TrainError::Models(ModelStoreError::InvalidArtifacts(p)))?;
            observer.candidate(&cand);
            run.durations_ms.insert("fit".into(), ms_since(t));
            // 4.–6. Scored and gated while the whole window is refitted from it.
            let (passed, refit) = self
                .evaluate_while_refitting(run, &holdout, train, test, &cand, all.view())
                .await;
            if !passed? {
                return Ok(());
            }
            refitted = refit;
        } else {
            tracing::warn!(
                holdout = test.rows.len(),
                "No warm holdout users: publishing without evaluation or gate."
            );
        }

        // The holdout's train matrix is not needed any more: free it before a cold fit.
        drop(holdout);
        let artifacts = match refitted {
            Some(r) => {
                let (a, ms) = r?;
                run.durations_ms.insert("refit".into(), ms);
                run.refit_on_full_window = true;
                a
            }
            // Nothing held out: the one fit is on the whole window.
            None if holdout_n == 0 => {
                observer.stage("fit");
                let t = Instant::now();
                let a = run_cpu(|| deps.trainer.fit(task, all.view(), &progress))?;
                run.durations_ms.insert("fit".into(), ms_since(t));
                a
            }
            // Rows held out but no warm user to score: no candidate to start from.
            None => {
                observer.stage("refit");
                let t = Instant::now();
                let a = run_cpu(|| deps.trainer.fit(task, all.view(), &progress))?;
                run.durations_ms.insert("refit".into(), ms_since(t));
                run.refit_on_full_window = true;
                a
            }
        };
        // The typed params (defaults filled in), so that serving folds users in with exactly
        // what training used.
        let spec =
            nectar_model::algo::AlgoSpec::parse(task.algorithm.as_str(), &task.param_strings())
                .ok();
        let mut artifacts = artifacts;
        artifacts.metadata = self.metadata(run, spec.as_ref(), None);
        self.publish(run, &artifacts).await
    }

    /// Evaluates and gates the candidate ([`Self::evaluate_and_gate`]) while a thread refits
    /// the whole window from it ([`Trainer::refit`]), so that the evaluation's serial parts
    /// (the baseline's matrix, loading the current version, the gate) overlap the refit's
    /// parallel iterations. The refit (with its milliseconds) is `None` when it did not run: a
    /// refused candidate on a runtime without worker threads, where the two run in turn.
    async fn evaluate_while_refitting(
        &self,
        run: &mut RunRecord,
        holdout: &Holdout,
        train: InteractionsView<'_>,
        test: InteractionsView<'_>,
        cand: &ModelArtifacts,
        all: InteractionsView<'_>,
    ) -> (
        Result<bool, TrainError>,
        Option<Result<(ModelArtifacts, u64), TrainerError>>,
    ) {
        let (task, trainer, observer) = (self.task, self.deps.trainer, self.observer);
        let refit = move || {
            observer.stage("refit");
            let t = Instant::now();
            trainer
                .refit(task, all, cand, &|f| observer.progress(f))
                .map(|a| (a, ms_since(t)))
        };
        let gate = self.evaluate_and_gate(run, holdout, train, test, cand);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| {
                    std::thread::scope(|s| {
                        let job = std::thread::Builder::new()
                            .name("nectar-refit".into())
                            .spawn_scoped(s, refit)
                            .expect("a thread for the refit");
                        let passed = h.block_on(gate);
                        let refitted = job
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        (passed, Some(refitted))
                    })
                })
            }
            _ => {
                let passed = gate.await;
                let refitted = matches!(passed, Ok(true)).then(refit);
                (passed, refitted)
            }
        }
    }

    /// 1. The window and its interactions (counts into `run`), and how many of the newest
    ///    rows are held out (`holdout_fraction` of the window).
    pub(super) async fn read(
        &self,
        run: &mut RunRecord,
    ) -> Result<(nectar_model::mapping::InteractionLog, usize), TrainError> {
        let Self {
            req,
            task,
            weights,
            deps,
            observer,
            now_ms,
            ..
        } = *self;
        // 1. Window and data.
        observer.stage("read");
        let t = Instant::now();
        let days = task.window.days;
        let (window, anchor) = match req.window {
            WindowChoice::Explicit(w) => (w, "explicit"),
            WindowChoice::Configured => {
                let (until, anchor) = match task.window.anchor {
                    Anchor::Now => (now_ms, "now"),
                    Anchor::Latest => (
                        latest_event_end_ms(deps.events, &req.site, READ_CONCURRENCY)
                            .await?
                            .ok_or(TrainError::NoData {
                                events: 0,
                                window: None,
                            })?,
                        "latest",
                    ),
                };
                (
                    TimeWindow {
                        since_ms: until - i64::from(days) * DAY_MS,
                        until_ms: until,
                    },
                    anchor,
                )
            }
        };
        run.window = WindowRecord {
            since_ms: window.since_ms,
            until_ms: window.until_ms,
            days,
            anchor: anchor.into(),
        };
        // Loaded before the read: an erasure recorded later is skipped by the next run.
        let erased = deps.erasures.erasure_set(&req.site).await?;
        let read = read_window(
            deps.events,
            &req.site,
            window,
            weights,
            READ_CONCURRENCY,
            &erased,
        )
        .await?;
        let all = read.interactions;
        run.counts.files = read.files;
        run.counts.lines = read.stats.lines;
        run.counts.duplicates = read.stats.duplicates;
        run.counts.malformed = read.stats.malformed;
        run.counts.skipped = read.stats.skipped + read.out_of_window;
        run.counts.torn_members = read.torn_members;
        run.counts.interactions = all.len() as u64;
        run.counts.users = all.users.len() as u64;
        run.counts.items = all.items.len() as u64;
        run.durations_ms.insert("read".into(), ms_since(t));
        if all.is_empty() {
            return Err(TrainError::NoData {
                events: read.stats.lines,
                window: Some(run.window.clone()),
            });
        }

        let holdout_n = (all.len() as f64 * task.holdout_fraction).floor() as usize;
        Ok((all, holdout_n))
    }

    /// 2. The time split's holdout (counts into `run`; the observer sees the split).
    pub(super) fn split(
        &self,
        run: &mut RunRecord,
        train: InteractionsView<'_>,
        test: InteractionsView<'_>,
    ) -> Holdout {
        let t = Instant::now();
        run.counts.train_interactions = train.rows.len() as u64;
        run.counts.holdout_interactions = test.rows.len() as u64;
        self.observer.split(train, test);
        let holdout = Holdout::new(train, test);
        run.counts.holdout_users_scored = holdout.len() as u64;
        run.durations_ms.insert("split".into(), ms_since(t));
        holdout
    }

    /// 3.–5. Scores the candidate, the popularity baseline and the current version on the
    /// holdout, then applies the gate: `false` (and `run` refused, with the reason) when the
    /// candidate is worse than the current version by more than `gate_max_drop`. Training
    /// and `nectar publish` both gate through here.
    pub(super) async fn evaluate_and_gate(
        &self,
        run: &mut RunRecord,
        holdout: &Holdout,
        train: InteractionsView<'_>,
        test: InteractionsView<'_>,
        cand: &ModelArtifacts,
    ) -> Result<bool, TrainError> {
        let Self {
            req,
            task,
            deps,
            observer,
            current,
            ..
        } = *self;
        observer.stage("evaluate");
        let t = Instant::now();
        run.metrics = run_cpu(|| holdout.evaluate_artifacts(cand));
        if task.algorithm != crate::config::Algorithm::Popular {
            // The popularity baseline on the same split (cheap: one count per item).
            let pop_task = crate::config::TaskConfig {
                algorithm: crate::config::Algorithm::Popular,
                params: BTreeMap::new(),
                ..task.clone()
            };
            let baseline = run_cpu(|| {
                deps.trainer
                    .fit(&pop_task, train, &|_| {})
                    .map(|pop| holdout.evaluate_artifacts(&pop))
            });
            match baseline {
                Ok(m) => run.baseline_metrics = Some(m),
                Err(e) => tracing::warn!(error = %e, "Popularity baseline not evaluated."),
            }
        }
        // 4. The current version, scored on the held-out events it was not trained on (its
        //    own window ends at `metadata.window.until_ms`; it has seen anything older, and
        //    scoring it there would favour it), and the candidate on the same events.
        if let Some(cur) = current {
            if let Some(items) = deps.models.load_items(&req.site, &req.task, cur).await? {
                let seen_until = items.metadata["window"]["until_ms"].as_i64();
                let start =
                    seen_until.map_or(0, |u| test.rows.partition_point(|r| r.timestamp_ms < u));
                let gate_holdout = if start == 0 {
                    holdout.clone()
                } else {
                    holdout.restricted(InteractionsView {
                        rows: &test.rows[start..],
                        ..test
                    })
                };
                if gate_holdout.len() >= MIN_GATE_USERS {
                    let users = gate_holdout.user_ids();
                    let states = deps
                        .models
                        .user_states(&req.site, &req.task, cur, &users)
                        .await?;
                    let states = users.into_iter().zip(states).collect();
                    let model = LoadedModel::new(&req.task, items);
                    run.current_metrics = Some(metrics_map(&run_cpu(|| {
                        gate_holdout.evaluate(&model, &states, K).map(|r| r.0)
                    })));
                    run.gate_metrics = Some(if start == 0 {
                        run.metrics.clone()
                    } else {
                        run_cpu(|| gate_holdout.evaluate_artifacts(cand))
                    });
                    run.gate = Some(format!(
                        "compared with v{cur} on {} held-out events newer than its window ({} users)",
                        test.rows.len() - start,
                        gate_holdout.len()
                    ));
                } else {
                    run.gate = Some(format!(
                        "skipped: {} users have held-out events newer than v{cur}'s window, \
                         fewer than {MIN_GATE_USERS}",
                        gate_holdout.len()
                    ));
                    tracing::warn!(gate = run.gate.as_deref().unwrap_or(""), "Gate skipped.");
                }
            }
        }
        run.durations_ms.insert("evaluate".into(), ms_since(t));
        // 5. The gate.
        if let (Some(cur), Some(cand_m)) = (&run.current_metrics, &run.gate_metrics) {
            let (c, n) = (
                cur.get(GATE_METRIC).copied().unwrap_or(0.0),
                cand_m.get(GATE_METRIC).copied().unwrap_or(0.0),
            );
            if n < c * (1.0 - task.gate_max_drop) {
                run.status = RunStatus::Refused;
                run.reason = Some(format!(
                    "{GATE_METRIC} {n:.4} is below the current version's {c:.4} by more than \
                     {:.1}%",
                    task.gate_max_drop * 100.0
                ));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The metadata stored with a version: what serving reads (`spec` for fold-in) and what
    /// the run was (window, metrics, and where external artifacts came from).
    pub(super) fn metadata(
        &self,
        run: &RunRecord,
        spec: Option<&nectar_model::algo::AlgoSpec>,
        source: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut m = serde_json::json!({
            "site": run.site,
            "task": run.task,
            "version": run.version,
            "algorithm": run.algorithm,
            "params": run.params,
            "spec": spec,
            "window": run.window,
            "metrics": run.metrics,
            "refit_on_full_window": run.refit_on_full_window,
            "trained_ms": self.now_ms,
        });
        if let Some(s) = source {
            m["source"] = s.clone();
        }
        m
    }

    /// 7. Publish: every key, then the pointer, then TTLs for the superseded version.
    pub(super) async fn publish(
        &self,
        run: &mut RunRecord,
        artifacts: &ModelArtifacts,
    ) -> Result<(), TrainError> {
        self.observer.stage("publish");
        let t = Instant::now();
        self.deps
            .models
            .publish(
                &self.req.site,
                &self.req.task,
                run.version,
                artifacts,
                &PublishOptions::from(&self.task.publish),
            )
            .await?;
        run.durations_ms.insert("publish".into(), ms_since(t));
        run.status = RunStatus::Published;
        Ok(())
    }
}
