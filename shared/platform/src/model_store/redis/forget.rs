//! [`ModelStore::forget_user`](super::ModelStore::forget_user) on Redis. Every per-user key
//! shares the user's hash tag `nectar:{<site>:u:<user>}`, so one SCAN of that pattern on the
//! node owning the slot finds the history and the factor and top-list keys of every version
//! of every task (which also names the versions whose user lists hold the user). The keys are
//! deleted in one pipeline (one slot), then the user is cut out of those versions' `users:<c>`
//! chunks, keeping their TTL (a superseded version still expires on time).

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::Value;

use super::{
    json_of, key_slot, redis_err, to_json, ModelStoreError, Op, RedisConn, RedisModelStore,
    ITEM_PIPELINE_COMMANDS, PIPELINE_COMMANDS,
};
use crate::model_store::ForgetReport;

/// Keys asked per SCAN step.
const SCAN_COUNT: usize = 1000;

/// `s` with the glob characters of a SCAN pattern escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One user key, by what it holds.
#[derive(Debug, PartialEq, Eq)]
enum UserKey {
    History,
    Factors(String, u64),
    Top(String, u64),
    Other,
}

fn classify(rest: &str) -> UserKey {
    if rest == "hist" {
        return UserKey::History;
    }
    let (body, top) = match rest.strip_suffix(":top") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    match body
        .rsplit_once(":v")
        .and_then(|(m, v)| Some((m, v.parse::<u64>().ok()?)))
    {
        Some((m, v)) if top => UserKey::Top(m.to_string(), v),
        Some((m, v)) => UserKey::Factors(m.to_string(), v),
        None => UserKey::Other,
    }
}

impl RedisModelStore {
    /// Every key matching `pattern` in `slot` (SCAN on the node that owns the slot).
    async fn scan_slot(&self, slot: u16, pattern: &str) -> Result<Vec<String>, ModelStoreError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply: Value = match self.conn.clone() {
                RedisConn::Single(mut c) => cmd.query_async(&mut c).await,
                RedisConn::Cluster(mut c) => {
                    let route =
                        SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                    c.route_command(cmd, RoutingInfo::SingleNode(route)).await
                }
            }
            .map_err(redis_err("SCAN user keys"))?;
            let (next, batch): (u64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| super::corrupt("SCAN reply", e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    pub(super) async fn forget(
        &self,
        site: &str,
        user: &str,
    ) -> Result<ForgetReport, ModelStoreError> {
        let base = Self::user_base(site, user);
        let keys = self
            .scan_slot(key_slot(&base), &format!("{}:*", glob_escape(&base)))
            .await?;
        let mut report = ForgetReport::default();
        let mut versions = Vec::new();
        let hist = Self::history_key(site, user);
        if keys.contains(&hist) {
            let mut p = redis::pipe();
            p.llen(&hist);
            let n = self
                .conn
                .query(&p)
                .await
                .map_err(redis_err("LLEN history"))?;
            report.history_items =
                redis::from_redis_value::<(usize,)>(Value::Array(n)).map_or(0, |(n,)| n);
        }
        for k in &keys {
            match classify(k.strip_prefix(&format!("{base}:")).unwrap_or_default()) {
                UserKey::Factors(m, v) => {
                    report.factors += 1;
                    report.add_version(&m, v);
                    versions.push((m, v));
                }
                UserKey::Top(m, v) => {
                    report.top_lists += 1;
                    report.add_version(&m, v);
                    versions.push((m, v));
                }
                UserKey::History | UserKey::Other => {}
            }
        }
        self.run_ops(keys.into_iter().map(Op::Del).collect(), PIPELINE_COMMANDS)
            .await
            .map_err(redis_err("DEL user keys"))?;
        versions.sort();
        versions.dedup();
        for (model, version) in versions {
            self.forget_in_user_list(site, &model, version, user)
                .await?;
        }
        Ok(report)
    }

    /// Removes `user` from the `users:<c>` chunks of a version (keeping each chunk's TTL).
    async fn forget_in_user_list(
        &self,
        site: &str,
        model: &str,
        version: u64,
        user: &str,
    ) -> Result<(), ModelStoreError> {
        let Some(meta) = self.get_meta(site, model, version).await? else {
            return Ok(());
        };
        let base = Self::item_base(site, model);
        let chunk_keys: Vec<String> = (0..meta.user_chunks())
            .map(|c| format!("{base}:v{version}:users:{c}"))
            .collect();
        let vals = self
            .run_ops(
                chunk_keys.iter().cloned().map(Op::Get).collect(),
                ITEM_PIPELINE_COMMANDS,
            )
            .await
            .map_err(redis_err("GET users"))?;
        for (k, v) in chunk_keys.iter().zip(vals) {
            let Some(mut ids) = json_of::<Vec<String>>(v, k)? else {
                continue;
            };
            let before = ids.len();
            ids.retain(|u| u != user);
            if ids.len() != before {
                let mut p = redis::pipe();
                p.cmd("SET")
                    .arg(k)
                    .arg(to_json(&ids))
                    .arg("KEEPTTL")
                    .ignore();
                self.conn.query(&p).await.map_err(redis_err("SET users"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_are_classified_by_suffix_and_patterns_escape_globs() {
        assert_eq!(classify("hist"), UserKey::History);
        assert_eq!(classify("als:v12"), UserKey::Factors("als".into(), 12));
        assert_eq!(
            classify("item-knn:v3:top"),
            UserKey::Top("item-knn".into(), 3)
        );
        assert_eq!(classify("odd"), UserKey::Other);
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
