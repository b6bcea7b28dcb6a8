//! The Redis model store (single node or Redis Cluster / ElastiCache Serverless).
//!
//! Key layout (DESIGN.md "Models in Redis"); `<ver>` is the version number:
//!
//! | key | value |
//! |---|---|
//! | `nectar:{<site>:<model>}:current` | the current version, decimal |
//! | `nectar:{<site>:<model>}:versions` | sorted set of published versions (score = version) |
//! | `nectar:{<site>:<model>}:v<ver>:meta` | JSON: sizes, chunking, dims, metadata; written last |
//! | `nectar:{<site>:<model>}:v<ver>:items` | JSON array of item ids (row order) |
//! | `nectar:{<site>:<model>}:v<ver>:if:<c>` | item factors of rows `c·4096 ..`, little-endian f32 |
//! | `nectar:{<site>:<model>}:v<ver>:popular` | JSON `[[row, score], …]` |
//! | `nectar:{<site>:<model>}:v<ver>:sim:<c>` | JSON, per row of chunk `c`: `[[row, score], …]` |
//! | `nectar:{<site>:<model>}:v<ver>:users:<c>` | JSON array of the version's user ids (chunks of 10,000) |
//! | `nectar:{<site>:u:<user>}:<model>:v<ver>` | the user's factor vector, little-endian f32 |
//! | `nectar:{<site>:u:<user>}:<model>:v<ver>:top` | JSON `[[row, score], …]` (optional) |
//! | `nectar:{<site>:u:<user>}:hist` | list of recent item ids, newest first |
//! | `nectar:{<site>:u:<user>}:neg` | list of disliked/dismissed item ids, newest first (same TTL) |
//!
//! Item-side keys share the `{site:model}` hash slot; a user's keys share the user's slot, so
//! [`ModelStore::user_states`] is one pipelined round trip per slot. Cluster pipelines are
//! grouped by slot (a cluster pipeline must stay in one slot); every command has far fewer than
//! 3,999 arguments. Only superseded versions get a TTL.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};

mod forget;
use redis::{Pipeline, Value};

pub use super::redis_conn::{key_slot, RedisAuth, RedisConn, RedisOptions};
use super::{
    f32s_to_le, le_to_f32s, Factors, ModelArtifacts, ModelItems, ModelStore, ModelStoreError,
    PublishOptions, Scored, UserState, VersionMeta, COUNTS_TTL_SECS, ITEM_CHUNK_ROWS,
    USER_CHUNK_ROWS,
};

/// Commands per pipeline round trip (values can be large: keep pipelines bounded).
const PIPELINE_COMMANDS: usize = 512;
/// Item-side values per pipeline (factor chunks are up to ~1 MiB each).
const ITEM_PIPELINE_COMMANDS: usize = 16;
/// Pipelines in flight at once.
const CONCURRENCY: usize = 8;
/// TTL of a user's recent history, renewed on every append (30 days).
const HISTORY_TTL_SECS: i64 = 30 * 86_400;
/// History entries returned by [`ModelStore::user_states`].
const HISTORY_READ: isize = 100;

/// A command on one key, for pipelines that are grouped by slot.
enum Op {
    Set(String, Vec<u8>),
    Del(String),
    Expire(String, i64),
    Persist(String),
    Get(String),
    LRange(String, isize),
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Set(k, _)
            | Op::Del(k)
            | Op::Expire(k, _)
            | Op::Persist(k)
            | Op::Get(k)
            | Op::LRange(k, _) => k,
        }
    }
    fn add_to(self, p: &mut Pipeline) {
        match self {
            Op::Set(k, v) => p.set(k, v),
            Op::Del(k) => p.del(k),
            Op::Expire(k, s) => p.expire(k, s),
            Op::Persist(k) => p.persist(k),
            Op::Get(k) => p.get(k),
            Op::LRange(k, n) => p.lrange(k, 0, n - 1),
        };
    }
}

fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> ModelStoreError {
    move |source| ModelStoreError::Redis { op, source }
}

fn corrupt(key: &str, problem: impl ToString) -> ModelStoreError {
    ModelStoreError::Corrupt {
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

fn bytes_of(v: Value, key: &str) -> Result<Option<Vec<u8>>, ModelStoreError> {
    redis::from_redis_value::<Option<Vec<u8>>>(v).map_err(|e| corrupt(key, e))
}

fn json_of<T: serde::de::DeserializeOwned>(
    v: Value,
    key: &str,
) -> Result<Option<T>, ModelStoreError> {
    match bytes_of(v, key)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| corrupt(key, e)),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model data serialises to JSON")
}

/// Models in Redis.
#[derive(Debug, Clone)]
pub struct RedisModelStore {
    conn: RedisConn,
}

impl RedisModelStore {
    /// A store over a connection.
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }

    /// Connects (see [`RedisConn::connect`] for the URL forms).
    pub async fn connect(url: &str) -> Result<Self, ModelStoreError> {
        Self::connect_with(url, &RedisOptions::default()).await
    }

    /// Connects with credentials and/or CA certificates (see [`RedisConn::connect_with`]); the
    /// Lambdas connect through [`crate::model_store::redis_env::model_store_from_env`], which reads them.
    pub async fn connect_with(url: &str, options: &RedisOptions) -> Result<Self, ModelStoreError> {
        Ok(Self::new(
            RedisConn::connect_with(url, options)
                .await
                .map_err(redis_err("connect"))?,
        ))
    }

    /// The connection (for callers that add their own keys, e.g. tests).
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// `nectar:{<site>:<model>}`: the prefix of every item-side key.
    pub fn item_base(site: &str, model: &str) -> String {
        format!("nectar:{{{site}:{model}}}")
    }

    /// `nectar:{<site>:u:<user>}`: the prefix of every key of one user.
    pub fn user_base(site: &str, user: &str) -> String {
        format!("nectar:{{{site}:u:{user}}}")
    }

    /// The pointer key of a model.
    pub fn pointer_key(site: &str, model: &str) -> String {
        format!("{}:current", Self::item_base(site, model))
    }

    /// The metadata key of a version (written last).
    pub fn meta_key(site: &str, model: &str, version: u64) -> String {
        format!("{}:v{version}:meta", Self::item_base(site, model))
    }

    fn user_factor_key(site: &str, model: &str, version: u64, user: &str) -> String {
        format!("{}:{model}:v{version}", Self::user_base(site, user))
    }

    fn user_top_key(site: &str, model: &str, version: u64, user: &str) -> String {
        format!("{}:{model}:v{version}:top", Self::user_base(site, user))
    }

    fn history_key(site: &str, user: &str) -> String {
        format!("{}:hist", Self::user_base(site, user))
    }

    /// The user's negative-feedback list, beside the history (same slot, same TTL).
    fn rejected_key(site: &str, user: &str) -> String {
        format!("{}:neg", Self::user_base(site, user))
    }

    /// LPUSHes items onto a per-user list, trimmed to `max_len`, with the history's TTL.
    async fn push_list(
        &self,
        key: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for chunk in items.chunks(1000) {
            p.lpush(key, chunk).ignore();
        }
        p.ltrim(key, 0, max_len.max(1) as isize - 1).ignore();
        // A user who stops coming back stops costing memory.
        p.expire(key, HISTORY_TTL_SECS).ignore();
        self.conn
            .query(&p)
            .await
            .map_err(redis_err("LPUSH history"))?;
        Ok(())
    }

    /// `nectar:{<site>:cnt}:<hour start ms>`: a hash item → interaction count. Every bucket
    /// of a site is in one slot, so reading a window is one pipelined round trip.
    pub fn counts_key(site: &str, hour_ms: i64) -> String {
        format!("nectar:{{{site}:cnt}}:{hour_ms}")
    }

    /// Runs single-key commands, grouped by slot on a cluster and in bounded pipelines,
    /// returning the replies of the commands in the order given.
    async fn run_ops(
        &self,
        ops: Vec<Op>,
        per_pipe: usize,
    ) -> Result<Vec<Value>, redis::RedisError> {
        let n = ops.len();
        let mut groups: BTreeMap<u16, Vec<(usize, Op)>> = BTreeMap::new();
        let cluster = self.conn.is_cluster();
        for (i, op) in ops.into_iter().enumerate() {
            let slot = if cluster { key_slot(op.key()) } else { 0 };
            groups.entry(slot).or_default().push((i, op));
        }
        let mut batches: Vec<Vec<(usize, Op)>> = Vec::new();
        for (_, group) in groups {
            let mut it = group.into_iter().peekable();
            while it.peek().is_some() {
                batches.push(it.by_ref().take(per_pipe).collect());
            }
        }
        let results: Vec<Vec<(usize, Value)>> = futures::stream::iter(batches)
            .map(|batch| async move {
                let mut p = redis::pipe();
                let mut idx = Vec::with_capacity(batch.len());
                for (i, op) in batch {
                    idx.push(i);
                    op.add_to(&mut p);
                }
                let vals = self.conn.query(&p).await?;
                Ok::<_, redis::RedisError>(idx.into_iter().zip(vals).collect())
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = vec![Value::Nil; n];
        for (i, v) in results.into_iter().flatten() {
            out[i] = v;
        }
        Ok(out)
    }

    async fn get_meta(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<VersionMeta>, ModelStoreError> {
        let key = Self::meta_key(site, model, version);
        let v = self
            .run_ops(vec![Op::Get(key.clone())], 1)
            .await
            .map_err(redis_err("GET meta"))?;
        json_of(v.into_iter().next().unwrap_or(Value::Nil), &key)
    }

    /// Every key of a version (item side and per user), for TTLs and deletion.
    async fn version_keys(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Vec<String>, ModelStoreError> {
        let base = Self::item_base(site, model);
        let Some(meta) = self.get_meta(site, model, version).await? else {
            return Ok(Vec::new());
        };
        let mut keys = vec![
            format!("{base}:v{version}:items"),
            format!("{base}:v{version}:popular"),
        ];
        for c in 0..meta.item_chunks() {
            if meta.dim.is_some() {
                keys.push(format!("{base}:v{version}:if:{c}"));
            }
            if meta.has_similar {
                keys.push(format!("{base}:v{version}:sim:{c}"));
            }
        }
        let user_chunk_keys: Vec<String> = (0..meta.user_chunks())
            .map(|c| format!("{base}:v{version}:users:{c}"))
            .collect();
        let vals = self
            .run_ops(
                user_chunk_keys.iter().cloned().map(Op::Get).collect(),
                ITEM_PIPELINE_COMMANDS,
            )
            .await
            .map_err(redis_err("GET users"))?;
        for (k, v) in user_chunk_keys.iter().zip(vals) {
            for u in json_of::<Vec<String>>(v, k)?.unwrap_or_default() {
                if meta.user_dim.is_some() {
                    keys.push(Self::user_factor_key(site, model, version, &u));
                }
                if meta.has_user_top {
                    keys.push(Self::user_top_key(site, model, version, &u));
                }
            }
        }
        keys.extend(user_chunk_keys);
        // The meta key goes last: while it exists, the version's keys are all there or expiring
        // together.
        keys.push(Self::meta_key(site, model, version));
        Ok(keys)
    }

    async fn retire(
        &self,
        site: &str,
        model: &str,
        new_version: u64,
        options: &PublishOptions,
    ) -> Result<(), ModelStoreError> {
        let base = Self::item_base(site, model);
        let versions_key = format!("{base}:versions");
        let mut conn = self.conn.clone();
        let listed: Vec<u64> = match &mut conn {
            RedisConn::Single(c) => {
                redis::cmd("ZREVRANGE")
                    .arg(&versions_key)
                    .arg(0)
                    .arg(-1)
                    .query_async(c)
                    .await
            }
            RedisConn::Cluster(c) => {
                redis::cmd("ZREVRANGE")
                    .arg(&versions_key)
                    .arg(0)
                    .arg(-1)
                    .query_async(c)
                    .await
            }
        }
        .map_err(redis_err("ZREVRANGE versions"))?;
        let ttl = options.superseded_ttl.as_secs().max(1) as i64;
        for (rank, v) in listed.into_iter().filter(|&v| v != new_version).enumerate() {
            if rank + 1 >= options.keep_versions {
                // Beyond keep_versions: delete, meta first so readers see the version as gone.
                let mut keys = self.version_keys(site, model, v).await?;
                keys.rotate_right(1);
                self.run_ops(keys.into_iter().map(Op::Del).collect(), PIPELINE_COMMANDS)
                    .await
                    .map_err(redis_err("DEL superseded version"))?;
                let mut p = redis::pipe();
                p.zrem(&versions_key, v);
                self.conn.query(&p).await.map_err(redis_err("ZREM"))?;
            } else {
                let meta_key = Self::meta_key(site, model, v);
                let mut p = redis::pipe();
                p.ttl(&meta_key);
                let t: i64 = self
                    .conn
                    .query(&p)
                    .await
                    .map_err(redis_err("TTL"))?
                    .into_iter()
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or(-2);
                if t == -1 {
                    let keys = self.version_keys(site, model, v).await?;
                    self.run_ops(
                        keys.into_iter().map(|k| Op::Expire(k, ttl)).collect(),
                        PIPELINE_COMMANDS,
                    )
                    .await
                    .map_err(redis_err("EXPIRE superseded version"))?;
                }
            }
        }
        Ok(())
    }
}

impl ModelStore for RedisModelStore {
    #[tracing::instrument(skip(self, a, options), fields(items = a.item_ids.len(), users = a.user_ids.len()))]
    async fn publish(
        &self,
        site: &str,
        model: &str,
        version: u64,
        a: &ModelArtifacts,
        options: &PublishOptions,
    ) -> Result<(), ModelStoreError> {
        a.validate().map_err(ModelStoreError::InvalidArtifacts)?;
        if let Some(current) = self.current_version(site, model).await? {
            if current >= version {
                return Err(ModelStoreError::StaleVersion { version, current });
            }
        }
        let base = Self::item_base(site, model);
        // 1. Per-user keys (spread over the cluster).
        let mut user_ops = Vec::new();
        for (r, u) in a.user_ids.iter().enumerate() {
            if let Some(f) = &a.user_factors {
                user_ops.push(Op::Set(
                    Self::user_factor_key(site, model, version, u),
                    f32s_to_le(f.row(r)),
                ));
            }
            if let Some(t) = &a.user_top {
                user_ops.push(Op::Set(
                    Self::user_top_key(site, model, version, u),
                    to_json(&t[r]),
                ));
            }
        }
        self.run_ops(user_ops, PIPELINE_COMMANDS)
            .await
            .map_err(redis_err("SET user keys"))?;
        // 2. Item-side keys (one slot).
        let mut ops = vec![
            Op::Set(format!("{base}:v{version}:items"), to_json(&a.item_ids)),
            Op::Set(format!("{base}:v{version}:popular"), to_json(&a.popular)),
        ];
        let n = a.item_ids.len();
        for (c, start) in (0..n).step_by(ITEM_CHUNK_ROWS).enumerate() {
            let end = (start + ITEM_CHUNK_ROWS).min(n);
            if let Some(f) = &a.item_factors {
                ops.push(Op::Set(
                    format!("{base}:v{version}:if:{c}"),
                    f32s_to_le(&f.data[start * f.dim..end * f.dim]),
                ));
            }
            if let Some(s) = &a.similar {
                ops.push(Op::Set(
                    format!("{base}:v{version}:sim:{c}"),
                    to_json(&&s[start..end]),
                ));
            }
        }
        for (c, chunk) in a.user_ids.chunks(USER_CHUNK_ROWS).enumerate() {
            ops.push(Op::Set(
                format!("{base}:v{version}:users:{c}"),
                to_json(&chunk),
            ));
        }
        self.run_ops(ops, ITEM_PIPELINE_COMMANDS)
            .await
            .map_err(redis_err("SET item keys"))?;
        // 3. The meta key marks the version complete.
        let meta = VersionMeta {
            version,
            items: n,
            dim: a.item_factors.as_ref().map(|f| f.dim),
            chunk_rows: ITEM_CHUNK_ROWS,
            has_similar: a.similar.is_some(),
            users: a.user_ids.len(),
            user_dim: a.user_factors.as_ref().map(|f| f.dim),
            has_user_top: a.user_top.is_some(),
            user_chunk_rows: USER_CHUNK_ROWS,
            published_ms: crate::now_ms(),
            metadata: a.metadata.clone(),
        };
        self.run_ops(
            vec![Op::Set(
                Self::meta_key(site, model, version),
                to_json(&meta),
            )],
            1,
        )
        .await
        .map_err(redis_err("SET meta"))?;
        // 4. Switch the pointer, list the version.
        let mut p = redis::pipe();
        p.set(Self::pointer_key(site, model), version.to_string())
            .ignore()
            .zadd(format!("{base}:versions"), version, version as f64)
            .ignore();
        self.conn
            .query(&p)
            .await
            .map_err(redis_err("SET pointer"))?;
        // 5. Superseded versions: TTL, or deletion beyond keep_versions.
        self.retire(site, model, version, options).await
    }

    async fn current_version(
        &self,
        site: &str,
        model: &str,
    ) -> Result<Option<u64>, ModelStoreError> {
        let key = Self::pointer_key(site, model);
        let v = self
            .run_ops(vec![Op::Get(key.clone())], 1)
            .await
            .map_err(redis_err("GET pointer"))?;
        match bytes_of(v.into_iter().next().unwrap_or(Value::Nil), &key)? {
            None => Ok(None),
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|e| corrupt(&key, e)),
        }
    }

    async fn load_items(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<ModelItems>, ModelStoreError> {
        let Some(meta) = self.get_meta(site, model, version).await? else {
            return Ok(None);
        };
        let base = Self::item_base(site, model);
        let chunks = meta.item_chunks();
        let mut keys = vec![
            format!("{base}:v{version}:items"),
            format!("{base}:v{version}:popular"),
        ];
        if meta.dim.is_some() {
            keys.extend((0..chunks).map(|c| format!("{base}:v{version}:if:{c}")));
        }
        if meta.has_similar {
            keys.extend((0..chunks).map(|c| format!("{base}:v{version}:sim:{c}")));
        }
        let vals = self
            .run_ops(
                keys.iter().cloned().map(Op::Get).collect(),
                ITEM_PIPELINE_COMMANDS,
            )
            .await
            .map_err(redis_err("GET item keys"))?;
        let mut vals = keys.iter().zip(vals);
        let mut next_bytes = || -> Result<Option<(String, Vec<u8>)>, ModelStoreError> {
            let (k, v) = vals.next().expect("one reply per key");
            Ok(bytes_of(v, k)?.map(|b| (k.clone(), b)))
        };
        // A missing key means the version was deleted after its meta was read: it is gone.
        let Some((k, b)) = next_bytes()? else {
            return Ok(None);
        };
        let item_ids: Vec<String> = serde_json::from_slice(&b).map_err(|e| corrupt(&k, e))?;
        let Some((k, b)) = next_bytes()? else {
            return Ok(None);
        };
        let popular: Vec<Scored> = serde_json::from_slice(&b).map_err(|e| corrupt(&k, e))?;
        if item_ids.len() != meta.items {
            return Err(corrupt(&k, "item count differs from meta"));
        }
        let item_factors = match meta.dim {
            None => None,
            Some(dim) => {
                let mut data = Vec::with_capacity(meta.items * dim);
                for _ in 0..chunks {
                    let Some((k, b)) = next_bytes()? else {
                        return Ok(None);
                    };
                    data.extend(le_to_f32s(&b).ok_or_else(|| corrupt(&k, "not f32 data"))?);
                }
                if data.len() != meta.items * dim {
                    return Err(corrupt(&base, "item factor size differs from meta"));
                }
                Some(Factors { dim, data })
            }
        };
        let similar = if meta.has_similar {
            let mut all = Vec::with_capacity(meta.items);
            for _ in 0..chunks {
                let Some((k, b)) = next_bytes()? else {
                    return Ok(None);
                };
                let part: Vec<Vec<Scored>> =
                    serde_json::from_slice(&b).map_err(|e| corrupt(&k, e))?;
                all.extend(part);
            }
            Some(all)
        } else {
            None
        };
        Ok(Some(ModelItems {
            version,
            item_ids,
            item_factors,
            popular,
            similar,
            metadata: meta.metadata,
        }))
    }

    async fn user_states(
        &self,
        site: &str,
        model: &str,
        version: u64,
        users: &[String],
    ) -> Result<Vec<UserState>, ModelStoreError> {
        let mut ops = Vec::with_capacity(users.len() * 4);
        for u in users {
            ops.push(Op::Get(Self::user_factor_key(site, model, version, u)));
            ops.push(Op::Get(Self::user_top_key(site, model, version, u)));
            ops.push(Op::LRange(Self::history_key(site, u), HISTORY_READ));
            ops.push(Op::LRange(Self::rejected_key(site, u), HISTORY_READ));
        }
        let vals = self
            .run_ops(ops, PIPELINE_COMMANDS)
            .await
            .map_err(redis_err("GET user state"))?;
        let mut it = vals.into_iter();
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let (f, t, h, r) = (
                it.next().unwrap_or(Value::Nil),
                it.next().unwrap_or(Value::Nil),
                it.next().unwrap_or(Value::Nil),
                it.next().unwrap_or(Value::Nil),
            );
            let fk = Self::user_factor_key(site, model, version, u);
            let factors = match bytes_of(f, &fk)? {
                None => None,
                Some(b) => Some(le_to_f32s(&b).ok_or_else(|| corrupt(&fk, "not f32 data"))?),
            };
            let top = json_of::<Vec<Scored>>(t, &Self::user_top_key(site, model, version, u))?;
            let history = redis::from_redis_value::<Vec<String>>(h)
                .map_err(|e| corrupt(&Self::history_key(site, u), e))?;
            let rejected = redis::from_redis_value::<Vec<String>>(r)
                .map_err(|e| corrupt(&Self::rejected_key(site, u), e))?;
            out.push(UserState {
                factors,
                top,
                history,
                rejected,
            });
        }
        Ok(out)
    }

    async fn set_current(
        &self,
        site: &str,
        model: &str,
        version: u64,
        options: &PublishOptions,
    ) -> Result<bool, ModelStoreError> {
        if self.get_meta(site, model, version).await?.is_none() {
            return Ok(false);
        }
        let previous = self.current_version(site, model).await?;
        // The target's keys lose their TTL first (meta last, so a reader never sees a complete
        // meta over expiring data it relies on).
        let mut keys = self.version_keys(site, model, version).await?;
        if keys.is_empty() {
            return Ok(false);
        }
        let meta = keys.pop().expect("meta key is last");
        let mut ops: Vec<Op> = keys.into_iter().map(Op::Persist).collect();
        ops.push(Op::Persist(meta));
        self.run_ops(ops, PIPELINE_COMMANDS)
            .await
            .map_err(redis_err("PERSIST version"))?;
        let base = Self::item_base(site, model);
        let mut p = redis::pipe();
        p.set(Self::pointer_key(site, model), version.to_string())
            .ignore()
            .zadd(format!("{base}:versions"), version, version as f64)
            .ignore();
        self.conn
            .query(&p)
            .await
            .map_err(redis_err("SET pointer"))?;
        if let Some(prev) = previous.filter(|&p| p != version) {
            let ttl = options.superseded_ttl.as_secs().max(1) as i64;
            let keys = self.version_keys(site, model, prev).await?;
            self.run_ops(
                keys.into_iter().map(|k| Op::Expire(k, ttl)).collect(),
                PIPELINE_COMMANDS,
            )
            .await
            .map_err(redis_err("EXPIRE replaced version"))?;
        }
        Ok(true)
    }

    async fn append_history(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        self.push_list(&Self::history_key(site, user), items, max_len)
            .await
    }

    async fn append_rejected(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        self.push_list(&Self::rejected_key(site, user), items, max_len)
            .await
    }

    async fn add_item_counts(
        &self,
        site: &str,
        counts: &[(i64, String, u64)],
    ) -> Result<(), ModelStoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        let mut hours = std::collections::BTreeSet::new();
        for (hour, item, n) in counts {
            p.hincr(Self::counts_key(site, *hour), item, *n).ignore();
            hours.insert(*hour);
        }
        for hour in hours {
            p.expire(Self::counts_key(site, hour), COUNTS_TTL_SECS)
                .ignore();
        }
        self.conn
            .query(&p)
            .await
            .map_err(redis_err("HINCRBY counts"))?;
        Ok(())
    }

    async fn item_counts(
        &self,
        site: &str,
        hours: &[i64],
    ) -> Result<Vec<HashMap<String, u64>>, ModelStoreError> {
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for &h in hours {
            p.hgetall(Self::counts_key(site, h));
        }
        let replies = self
            .conn
            .query(&p)
            .await
            .map_err(redis_err("HGETALL counts"))?;
        replies
            .into_iter()
            .map(|v| {
                redis::from_redis_value::<HashMap<String, u64>>(v).map_err(|e| {
                    ModelStoreError::Corrupt {
                        key: format!("counts of {site}"),
                        problem: e.to_string(),
                    }
                })
            })
            .collect()
    }

    async fn forget_user(
        &self,
        site: &str,
        user: &str,
    ) -> Result<super::ForgetReport, ModelStoreError> {
        self.forget(site, user).await
    }
}
