//! The bandit port on Redis (key layout in [`super::bandit`]). Each call touches one hash slot
//! (`{<site>:rec}`, `{<site>:exp:<endpoint>}` or `{<site>:explore}`) and is one pipelined round
//! trip, except: variant increments take one per endpoint, and exploration reads take two
//! (the first-seen set, then the counts of the items found) and a write that forgets old items
//! a second.

use std::collections::{BTreeMap, HashMap};

use nectar_model::online::bandit::ArmCounts;
use redis::Value;

use super::bandit::{
    BanditStore, ExploreItem, ExploreUpdate, OnceMark, ServedRef, VariantCounter, VariantCounts,
    VariantIncrement, MAX_EXPLORE_ITEMS,
};
use super::redis::RedisModelStore;
use super::ModelStoreError;

/// Commands per pipeline.
const PIPE: usize = 512;

fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> ModelStoreError {
    move |source| ModelStoreError::Redis { op, source }
}

fn corrupt(key: &str, problem: impl ToString) -> ModelStoreError {
    ModelStoreError::Corrupt {
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

impl RedisModelStore {
    /// `nectar:{<site>:exp:<endpoint>}`: the endpoint's variant counters (a hash).
    pub fn variant_counts_key(site: &str, endpoint: &str) -> String {
        format!("nectar:{{{site}:exp:{endpoint}}}")
    }

    /// `nectar:{<site>:rec}:<rec id>`: a served answer, for the attribution window.
    pub fn served_key(site: &str, rec_id: &str) -> String {
        format!("nectar:{{{site}:rec}}:{rec_id}")
    }

    fn mark_key(site: &str, mark: OnceMark, rec_id: &str) -> String {
        format!("{}:{}", Self::served_key(site, rec_id), mark.suffix())
    }

    /// `nectar:{<site>:explore}:first`: items → first seen (ms), a sorted set.
    pub fn explore_first_key(site: &str) -> String {
        format!("nectar:{{{site}:explore}}:first")
    }

    /// `nectar:{<site>:explore}:last`: items → last seen (ms), a sorted set.
    pub fn explore_last_key(site: &str) -> String {
        format!("nectar:{{{site}:explore}}:last")
    }

    /// `nectar:{<site>:explore}:counts`: `<item>:i` impressions, `<item>:c` clicks.
    pub fn explore_counts_key(site: &str) -> String {
        format!("nectar:{{{site}:explore}}:counts")
    }

    /// `SET key value NX EX ttl` for each pair, in bounded pipelines; whether each was set.
    async fn set_nx(
        &self,
        pairs: Vec<(String, Vec<u8>)>,
        ttl_secs: u64,
        op: &'static str,
    ) -> Result<Vec<bool>, ModelStoreError> {
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(PIPE) {
            let mut p = redis::pipe();
            for (k, v) in chunk {
                p.cmd("SET")
                    .arg(k)
                    .arg(v.as_slice())
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_secs.max(1));
            }
            let replies = self.conn().query(&p).await.map_err(redis_err(op))?;
            out.extend(replies.into_iter().map(|v| !matches!(v, Value::Nil)));
        }
        Ok(out)
    }
}

impl BanditStore for RedisModelStore {
    async fn remember_served(
        &self,
        site: &str,
        served: &[(String, ServedRef)],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        let pairs = served
            .iter()
            .map(|(id, r)| {
                let v = serde_json::to_vec(r).expect("a served ref serialises");
                (Self::served_key(site, id), v)
            })
            .collect();
        self.set_nx(pairs, ttl_secs, "SET served").await
    }

    async fn served_refs(
        &self,
        site: &str,
        rec_ids: &[String],
    ) -> Result<Vec<Option<ServedRef>>, ModelStoreError> {
        let mut out = Vec::with_capacity(rec_ids.len());
        for chunk in rec_ids.chunks(PIPE) {
            let mut p = redis::pipe();
            for id in chunk {
                p.get(Self::served_key(site, id));
            }
            let replies = self
                .conn()
                .query(&p)
                .await
                .map_err(redis_err("GET served"))?;
            for (id, v) in chunk.iter().zip(replies) {
                let b = redis::from_redis_value::<Option<Vec<u8>>>(v)
                    .map_err(|e| corrupt(&Self::served_key(site, id), e))?;
                out.push(match b {
                    None => None,
                    Some(b) => Some(
                        serde_json::from_slice(&b)
                            .map_err(|e| corrupt(&Self::served_key(site, id), e))?,
                    ),
                });
            }
        }
        Ok(out)
    }

    async fn mark_once(
        &self,
        site: &str,
        mark: OnceMark,
        rec_ids: &[String],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        let pairs = rec_ids
            .iter()
            .map(|id| (Self::mark_key(site, mark, id), b"1".to_vec()))
            .collect();
        self.set_nx(pairs, ttl_secs, "SET NX mark").await
    }

    async fn add_variant_counts(
        &self,
        site: &str,
        increments: &[VariantIncrement],
    ) -> Result<(), ModelStoreError> {
        let mut by_endpoint: BTreeMap<&str, Vec<&VariantIncrement>> = BTreeMap::new();
        for inc in increments.iter().filter(|i| i.n > 0) {
            by_endpoint.entry(&inc.endpoint).or_default().push(inc);
        }
        for (endpoint, incs) in by_endpoint {
            let key = Self::variant_counts_key(site, endpoint);
            let mut p = redis::pipe();
            for inc in incs {
                let field = format!("{}:{}", inc.variant, inc.counter.suffix());
                p.hincr(&key, field, inc.n).ignore();
            }
            self.conn()
                .query(&p)
                .await
                .map_err(redis_err("HINCRBY variant"))?;
        }
        Ok(())
    }

    async fn variant_counts(
        &self,
        site: &str,
        endpoint: &str,
    ) -> Result<HashMap<String, VariantCounts>, ModelStoreError> {
        let key = Self::variant_counts_key(site, endpoint);
        let mut p = redis::pipe();
        p.hgetall(&key);
        let v = self
            .conn()
            .query(&p)
            .await
            .map_err(redis_err("HGETALL variant"))?
            .pop()
            .unwrap_or(Value::Nil);
        let fields: HashMap<String, u64> =
            redis::from_redis_value(v).map_err(|e| corrupt(&key, e))?;
        let mut out: HashMap<String, VariantCounts> = HashMap::new();
        for (field, n) in fields {
            if let Some((variant, counter)) = VariantCounter::parse_field(&field) {
                counter.add_to(out.entry(variant.to_string()).or_default(), n);
            }
        }
        Ok(out)
    }

    async fn add_explore(&self, site: &str, update: &ExploreUpdate) -> Result<(), ModelStoreError> {
        let first = Self::explore_first_key(site);
        let last = Self::explore_last_key(site);
        let counts = Self::explore_counts_key(site);
        let mut p = redis::pipe();
        for chunk in update.seen.chunks(PIPE) {
            // LT / GT: a batch with an earlier (later) sighting moves the first (last) time.
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&first).arg("LT");
            for (item, t, _) in chunk {
                cmd.arg(*t).arg(item);
            }
            p.add_command(cmd).ignore();
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&last).arg("GT");
            for (item, _, t) in chunk {
                cmd.arg(*t).arg(item);
            }
            p.add_command(cmd).ignore();
        }
        for (item, c) in &update.counts {
            if c.impressions > 0 {
                p.hincr(&counts, format!("{item}:i"), c.impressions)
                    .ignore();
            }
            if c.clicks > 0 {
                p.hincr(&counts, format!("{item}:c"), c.clicks).ignore();
            }
        }
        p.cmd("ZRANGEBYSCORE")
            .arg(&last)
            .arg("-inf")
            .arg(format!("({}", update.keep_since_ms))
            .arg("LIMIT")
            .arg(0)
            .arg(PIPE);
        let old = self
            .conn()
            .query(&p)
            .await
            .map_err(redis_err("ZADD explore"))?
            .pop()
            .unwrap_or(Value::Nil);
        let old: Vec<String> = redis::from_redis_value(old).map_err(|e| corrupt(&last, e))?;
        if !old.is_empty() {
            let mut p = redis::pipe();
            p.zrem(&first, &old).ignore();
            p.zrem(&last, &old).ignore();
            let fields: Vec<String> = old
                .iter()
                .flat_map(|i| [format!("{i}:i"), format!("{i}:c")])
                .collect();
            p.hdel(&counts, fields).ignore();
            self.conn()
                .query(&p)
                .await
                .map_err(redis_err("ZREM explore"))?;
        }
        Ok(())
    }

    async fn explore_items(
        &self,
        site: &str,
        since_ms: i64,
    ) -> Result<Vec<ExploreItem>, ModelStoreError> {
        let first = Self::explore_first_key(site);
        let counts = Self::explore_counts_key(site);
        let mut p = redis::pipe();
        p.cmd("ZRANGE")
            .arg(&first)
            .arg("+inf")
            .arg(since_ms)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_EXPLORE_ITEMS)
            .arg("WITHSCORES");
        let v = self
            .conn()
            .query(&p)
            .await
            .map_err(redis_err("ZRANGE explore"))?
            .pop()
            .unwrap_or(Value::Nil);
        let items: Vec<(String, f64)> =
            redis::from_redis_value(v).map_err(|e| corrupt(&first, e))?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = items
            .iter()
            .flat_map(|(i, _)| [format!("{i}:i"), format!("{i}:c")])
            .collect();
        let mut p = redis::pipe();
        p.cmd("HMGET").arg(&counts).arg(&fields);
        let v = self
            .conn()
            .query(&p)
            .await
            .map_err(redis_err("HMGET explore"))?
            .pop()
            .unwrap_or(Value::Nil);
        let values: Vec<Option<u64>> =
            redis::from_redis_value(v).map_err(|e| corrupt(&counts, e))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(k, (item, t))| ExploreItem {
                item,
                first_seen_ms: t as i64,
                counts: ArmCounts::new(
                    values.get(2 * k).copied().flatten().unwrap_or(0),
                    values.get(2 * k + 1).copied().flatten().unwrap_or(0),
                ),
            })
            .collect())
    }
}
