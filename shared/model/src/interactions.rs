//! The user × item interaction matrix, in compressed sparse rows both ways.
//!
//! Users and items are identified by strings outside the model and by dense `u32` indices
//! inside it. Indices follow the *natural order* of the keys ([`key_cmp`]): all-digit keys
//! first, by numeric value, then the others byte-wise. That makes indexing independent of the
//! order records arrive in, and matches refeval's `np.unique` order on MovieLens ids, which
//! matters wherever ties are broken by the lower item index.
//!
//! The builder keeps records as flat arrays of interned indices and builds the CSR by a
//! counting sort, so 20 M records cost a few hundred MB, not a map of maps.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::mapping::InteractionsView;

/// Total order on user/item keys: all-digit keys first, by numeric value (without parsing, so
/// any length works), then every other key byte-wise.
pub fn key_cmp(a: &str, b: &str) -> Ordering {
    let da = is_digits(a);
    let db = is_digits(b);
    match (da, db) {
        (true, true) => {
            let ta = a.trim_start_matches('0');
            let tb = b.trim_start_matches('0');
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| a.len().cmp(&b.len()))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// A compressed sparse row matrix with `f32` values; column indices within a row are sorted
/// and unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Csr {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    data: Vec<f32>,
    n_cols: usize,
}

impl Csr {
    /// Builds a matrix from its parts, checking that they are consistent (monotone `indptr`,
    /// sorted unique in-range column indices per row).
    pub fn from_parts(
        indptr: Vec<u64>,
        indices: Vec<u32>,
        data: Vec<f32>,
        n_cols: usize,
    ) -> Result<Self, ModelError> {
        if indptr.is_empty() || indptr[0] != 0 {
            return Err(ModelError::Shape("indptr must start with 0".into()));
        }
        if *indptr.last().unwrap_or(&0) as usize != indices.len() || indices.len() != data.len() {
            return Err(ModelError::Shape(
                "indptr end, indices and data lengths differ".into(),
            ));
        }
        for w in indptr.windows(2) {
            if w[1] < w[0] {
                return Err(ModelError::Shape("indptr is not monotone".into()));
            }
            let row = &indices[w[0] as usize..w[1] as usize];
            if row.windows(2).any(|p| p[0] >= p[1]) {
                return Err(ModelError::Shape(
                    "row indices not sorted and unique".into(),
                ));
            }
            if row.last().is_some_and(|&c| c as usize >= n_cols) {
                return Err(ModelError::Shape("column index out of range".into()));
            }
        }
        Ok(Self {
            indptr,
            indices,
            data,
            n_cols,
        })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Row pointers: row `r` is `indptr[r]..indptr[r + 1]`.
    pub fn indptr(&self) -> &[u64] {
        &self.indptr
    }

    /// Column index of every entry, row by row.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Value of every entry, row by row.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The range of entry positions of row `r`.
    pub fn row_range(&self, r: usize) -> std::ops::Range<usize> {
        self.indptr[r] as usize..self.indptr[r + 1] as usize
    }

    /// Column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let rg = self.row_range(r);
        (&self.indices[rg.clone()], &self.data[rg])
    }

    /// The transpose, by a counting sort (rows of the result stay sorted because rows of
    /// `self` are visited in order).
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0u64; self.n_cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for j in 0..self.n_cols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut data = vec![0f32; self.nnz()];
        for r in 0..self.n_rows() {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let p = next[c as usize] as usize;
                indices[p] = r as u32;
                data[p] = v;
                next[c as usize] += 1;
            }
        }
        Csr {
            indptr,
            indices,
            data,
            n_cols: self.n_rows(),
        }
    }

    /// The same pattern with every value mapped by `f`.
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Csr {
        Csr {
            indptr: self.indptr.clone(),
            indices: self.indices.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
            n_cols: self.n_cols,
        }
    }

    /// Value at `(r, c)`, if stored.
    pub fn get(&self, r: usize, c: u32) -> Option<f32> {
        let (cols, vals) = self.row(r);
        cols.binary_search(&c).ok().map(|p| vals[p])
    }
}

/// The interaction matrix: user and item keys, `user × item` and `item × user` CSR with the
/// same values, and optionally the newest timestamp (ms) of every cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interactions {
    user_ids: Vec<String>,
    item_ids: Vec<String>,
    user_items: Csr,
    item_users: Csr,
    /// Aligned with `user_items` entries.
    last_timestamps: Option<Vec<i64>>,
}

impl Interactions {
    /// Builds the matrix from already indexed `(user, item, value)` triples (mostly for tests):
    /// keys become the decimal indices, duplicates are summed, no timestamps.
    pub fn from_indexed(
        n_users: usize,
        n_items: usize,
        entries: &[(u32, u32, f32)],
    ) -> Result<Self, ModelError> {
        let mut b = InteractionsBuilder::new();
        for &(u, i, _) in entries {
            if u as usize >= n_users {
                return Err(ModelError::OutOfRange {
                    what: "user",
                    index: u as usize,
                    len: n_users,
                });
            }
            if i as usize >= n_items {
                return Err(ModelError::OutOfRange {
                    what: "item",
                    index: i as usize,
                    len: n_items,
                });
            }
        }
        // Register every key so empty rows/columns exist too.
        let users: Vec<String> = (0..n_users).map(|u| u.to_string()).collect();
        let items: Vec<String> = (0..n_items).map(|i| i.to_string()).collect();
        for u in &users {
            b.intern_user(u);
        }
        for i in &items {
            b.intern_item(i);
        }
        for &(u, i, v) in entries {
            b.push_indexed(u, i, v, 0);
        }
        let mut m = b.build()?;
        m.last_timestamps = None;
        Ok(m)
    }

    /// Number of users (rows).
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of items (columns).
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Number of stored (user, item) cells.
    pub fn nnz(&self) -> usize {
        self.user_items.nnz()
    }

    /// User keys, by index.
    pub fn user_ids(&self) -> &[String] {
        &self.user_ids
    }

    /// Item keys, by index.
    pub fn item_ids(&self) -> &[String] {
        &self.item_ids
    }

    /// The `user × item` matrix.
    pub fn user_items(&self) -> &Csr {
        &self.user_items
    }

    /// The `item × user` matrix (same values).
    pub fn item_users(&self) -> &Csr {
        &self.item_users
    }

    /// Newest timestamp (ms) of every cell, aligned with [`Csr::data`] of
    /// [`Self::user_items`], when the matrix was built from timed records.
    pub fn last_timestamps(&self) -> Option<&[i64]> {
        self.last_timestamps.as_deref()
    }

    /// Item indices and values of user `u`'s row (sorted by item index).
    pub fn user_row(&self, u: u32) -> (&[u32], &[f32]) {
        self.user_items.row(u as usize)
    }

    /// Index of a user key (binary search in natural order).
    pub fn user_index(&self, key: &str) -> Option<u32> {
        self.user_ids
            .binary_search_by(|k| key_cmp(k, key))
            .ok()
            .map(|p| p as u32)
    }

    /// Index of an item key (binary search in natural order).
    pub fn item_index(&self, key: &str) -> Option<u32> {
        self.item_ids
            .binary_search_by(|k| key_cmp(k, key))
            .ok()
            .map(|p| p as u32)
    }

    /// The same matrix with every value mapped by `f` (e.g. a confidence transform).
    pub fn map_values(&self, f: impl Fn(f32) -> f32 + Copy) -> Interactions {
        Interactions {
            user_ids: self.user_ids.clone(),
            item_ids: self.item_ids.clone(),
            user_items: self.user_items.map_values(f),
            item_users: self.item_users.map_values(f),
            last_timestamps: self.last_timestamps.clone(),
        }
    }

    /// The same pattern with every value set to 1.
    pub fn binarized(&self) -> Interactions {
        self.map_values(|_| 1.0)
    }
}

/// How the values of duplicate (user, item) records combine into a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ValueMode {
    /// The cell is the sum of the (decayed) weights.
    #[default]
    Sum,
    /// The cell is 1 whenever the pair occurred (refeval's binary matrix).
    Binary,
}

/// Exponential time decay: a record `age` ms older than `anchor_ms` weighs
/// `0.5^(age / half_life_ms)`; records newer than the anchor are not boosted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeDecay {
    /// Half-life in milliseconds (> 0).
    pub half_life_ms: f64,
    /// The reference time (ms), usually the end of the training window.
    pub anchor_ms: i64,
}

impl TimeDecay {
    /// The multiplier for a record at `timestamp_ms`.
    pub fn factor(&self, timestamp_ms: i64) -> f32 {
        let age = (self.anchor_ms - timestamp_ms).max(0) as f64;
        (0.5f64).powf(age / self.half_life_ms) as f32
    }
}

/// Collects `(user, item, weight, timestamp)` records and builds [`Interactions`].
#[derive(Debug, Default)]
pub struct InteractionsBuilder {
    user_keys: HashMap<Box<str>, u32>,
    item_keys: HashMap<Box<str>, u32>,
    users: Vec<u32>,
    items: Vec<u32>,
    weights: Vec<f32>,
    timestamps: Vec<i64>,
    decay: Option<TimeDecay>,
    mode: ValueMode,
}

impl InteractionsBuilder {
    /// An empty builder (values summed, no decay).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for `n` more records.
    pub fn with_capacity(n: usize) -> Self {
        let mut b = Self::new();
        b.reserve(n);
        b
    }

    /// Applies exponential decay to every record's weight (see [`TimeDecay`]).
    pub fn time_decay(mut self, half_life_ms: f64, anchor_ms: i64) -> Result<Self, ModelError> {
        if !(half_life_ms.is_finite() && half_life_ms > 0.0) {
            return Err(ModelError::param("half_life", "must be a positive number"));
        }
        self.decay = Some(TimeDecay {
            half_life_ms,
            anchor_ms,
        });
        Ok(self)
    }

    /// Sets how duplicate records combine (default [`ValueMode::Sum`]).
    pub fn value_mode(mut self, mode: ValueMode) -> Self {
        self.mode = mode;
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn intern_user(&mut self, key: &str) -> u32 {
        intern(&mut self.user_keys, key)
    }

    fn intern_item(&mut self, key: &str) -> u32 {
        intern(&mut self.item_keys, key)
    }

    /// Adds one record. Records with a zero or non-finite weight are ignored (a zero weight in
    /// config means "this event type does not count"). Duplicates of a (user, item) pair are
    /// combined by the [`ValueMode`]; the cell keeps the newest timestamp. A negative weight
    /// (negative feedback) is summed with the pair's other records, and a pair whose total is
    /// not positive has no cell at all (in both modes): every algorithm sees a disliked item as
    /// unobserved, never as a positive, and a dislike cancels that much of the pair's plays.
    pub fn push(&mut self, user_key: &str, item_key: &str, weight: f32, timestamp_ms: i64) {
        if weight == 0.0 || !weight.is_finite() {
            return;
        }
        let u = self.intern_user(user_key);
        let i = self.intern_item(item_key);
        self.push_indexed(u, i, weight, timestamp_ms);
    }

    /// Adds every row of an interned view, as [`Self::push`] would with the rows' keys, with
    /// each row's time mapped by `time`. Each distinct key is hashed once rather than once per
    /// row: the train task's tens of millions of rows share a million users.
    pub fn push_view(&mut self, view: InteractionsView<'_>, time: impl Fn(i64) -> i64) {
        const NEW: u32 = u32::MAX;
        let mut users = vec![NEW; view.users.len()];
        let mut items = vec![NEW; view.items.len()];
        self.reserve(view.rows.len());
        for r in view.rows {
            if r.weight == 0.0 || !r.weight.is_finite() {
                continue;
            }
            let u = match users[r.user as usize] {
                NEW => {
                    let u = self.intern_user(&view.users[r.user as usize]);
                    users[r.user as usize] = u;
                    u
                }
                u => u,
            };
            let i = match items[r.item as usize] {
                NEW => {
                    let i = self.intern_item(&view.items[r.item as usize]);
                    items[r.item as usize] = i;
                    i
                }
                i => i,
            };
            self.push_indexed(u, i, r.weight, time(r.timestamp_ms));
        }
    }

    fn reserve(&mut self, n: usize) {
        self.users.reserve(n);
        self.items.reserve(n);
        self.weights.reserve(n);
        self.timestamps.reserve(n);
    }

    fn push_indexed(&mut self, u: u32, i: u32, weight: f32, timestamp_ms: i64) {
        let w = match &self.decay {
            Some(d) => weight * d.factor(timestamp_ms),
            None => weight,
        };
        self.users.push(u);
        self.items.push(i);
        self.weights.push(w);
        self.timestamps.push(timestamp_ms);
    }

    /// Builds the matrix: keys indexed in natural order, cells deduplicated.
    pub fn build(self) -> Result<Interactions, ModelError> {
        let InteractionsBuilder {
            user_keys,
            item_keys,
            users,
            items,
            weights,
            timestamps,
            mode,
            ..
        } = self;
        if user_keys.is_empty() || item_keys.is_empty() {
            return Err(ModelError::EmptyData);
        }
        let (user_ids, user_map) = sorted_keys(user_keys);
        let (item_ids, item_map) = sorted_keys(item_keys);
        let n_users = user_ids.len();
        let n_items = item_ids.len();

        // Counting sort of the records by (new) user index.
        let mut row_start = vec![0u64; n_users + 1];
        for &u in &users {
            row_start[user_map[u as usize] as usize + 1] += 1;
        }
        for r in 0..n_users {
            row_start[r + 1] += row_start[r];
        }
        let n = users.len();
        let mut next = row_start.clone();
        let mut s_items = vec![0u32; n];
        let mut s_w = vec![0f32; n];
        let mut s_t = vec![0i64; n];
        for k in 0..n {
            let r = user_map[users[k] as usize] as usize;
            let p = next[r] as usize;
            s_items[p] = item_map[items[k] as usize];
            s_w[p] = weights[k];
            s_t[p] = timestamps[k];
            next[r] += 1;
        }
        drop((users, items, weights, timestamps, next));

        // Sort each row by item and merge duplicates in place.
        let mut indptr = Vec::with_capacity(n_users + 1);
        indptr.push(0u64);
        let mut out = 0usize;
        let mut perm: Vec<u32> = Vec::new();
        let mut tmp: Vec<(u32, f32, i64)> = Vec::new();
        for r in 0..n_users {
            let (a, b) = (row_start[r] as usize, row_start[r + 1] as usize);
            perm.clear();
            perm.extend(0..(b - a) as u32);
            perm.sort_by_key(|&k| s_items[a + k as usize]);
            tmp.clear();
            for &k in &perm {
                let p = a + k as usize;
                let (i, w, t) = (s_items[p], s_w[p], s_t[p]);
                match tmp.last_mut() {
                    Some(last) if last.0 == i => {
                        last.1 += w;
                        last.2 = last.2.max(t);
                    }
                    _ => tmp.push((i, w, t)),
                }
            }
            // `out <= a` always holds, so writing back in place never clobbers unread entries.
            // Negative feedback: a pair whose total is not positive is dropped (clamped at 0).
            for &(i, w, t) in tmp.iter().filter(|c| c.1 > 0.0) {
                s_items[out] = i;
                s_w[out] = match mode {
                    ValueMode::Sum => w,
                    ValueMode::Binary => 1.0,
                };
                s_t[out] = t;
                out += 1;
            }
            indptr.push(out as u64);
        }
        s_items.truncate(out);
        s_w.truncate(out);
        s_t.truncate(out);
        s_items.shrink_to_fit();
        s_w.shrink_to_fit();
        s_t.shrink_to_fit();
        if out == 0 {
            return Err(ModelError::EmptyData);
        }
        let user_items = Csr {
            indptr,
            indices: s_items,
            data: s_w,
            n_cols: n_items,
        };
        let item_users = user_items.transpose();
        Ok(Interactions {
            user_ids,
            item_ids,
            user_items,
            item_users,
            last_timestamps: Some(s_t),
        })
    }
}

fn intern(map: &mut HashMap<Box<str>, u32>, key: &str) -> u32 {
    if let Some(&i) = map.get(key) {
        return i;
    }
    let i = map.len() as u32;
    map.insert(key.into(), i);
    i
}

/// Keys in natural order and the map from insertion index to sorted index.
fn sorted_keys(map: HashMap<Box<str>, u32>) -> (Vec<String>, Vec<u32>) {
    let mut keys: Vec<(Box<str>, u32)> = map.into_iter().collect();
    keys.sort_unstable_by(|a, b| key_cmp(&a.0, &b.0));
    let mut remap = vec![0u32; keys.len()];
    let mut ids = Vec::with_capacity(keys.len());
    for (new, (k, old)) in keys.into_iter().enumerate() {
        remap[old as usize] = new as u32;
        ids.push(k.into_string());
    }
    (ids, remap)
}

/// One row of a refeval / MovieLens style ratings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingRow {
    /// User key.
    pub user_id: String,
    /// Item key.
    pub item_id: String,
    /// The rating (or any interaction weight).
    pub rating: f32,
    /// Unix time in seconds, as MovieLens stores it.
    pub timestamp: i64,
}

/// Parses CSV text `user_id,item_id,rating,timestamp` with that header (no quoting).
pub fn parse_ratings_csv(text: &str) -> Result<Vec<RatingRow>, ModelError> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .ok_or_else(|| ModelError::InvalidInput("empty CSV".into()))?;
    let cols: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    if cols != ["user_id", "item_id", "rating", "timestamp"] {
        return Err(ModelError::InvalidInput(format!(
            "expected header user_id,item_id,rating,timestamp, got `{header}`"
        )));
    }
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || ModelError::InvalidInput(format!("line {}: `{line}`", n + 2));
        let mut f = line.split(',');
        let (u, i, r, t) = match (f.next(), f.next(), f.next(), f.next(), f.next()) {
            (Some(u), Some(i), Some(r), Some(t), None) => (u, i, r, t),
            _ => return Err(bad()),
        };
        rows.push(RatingRow {
            user_id: u.trim().to_string(),
            item_id: i.trim().to_string(),
            rating: r.trim().parse().map_err(|_| bad())?,
            timestamp: t.trim().parse().map_err(|_| bad())?,
        });
    }
    Ok(rows)
}

/// Builds the matrix from rating rows: every row is an interaction; with
/// [`ValueMode::Binary`] cells are 1, with [`ValueMode::Sum`] they hold the rating.
/// Timestamps (seconds) are stored as ms.
pub fn from_rating_rows(rows: &[RatingRow], mode: ValueMode) -> Result<Interactions, ModelError> {
    let mut b = InteractionsBuilder::with_capacity(rows.len()).value_mode(mode);
    for r in rows {
        let u = b.intern_user(&r.user_id);
        let i = b.intern_item(&r.item_id);
        // Zero ratings still mark an interaction in the ranking protocol.
        let w = if mode == ValueMode::Binary {
            1.0
        } else {
            r.rating
        };
        b.push_indexed(u, i, w, r.timestamp.saturating_mul(1000));
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_key_order() {
        // GIVEN mixed keys WHEN sorted THEN digits come first by value, then byte order
        let mut k = vec!["10", "b", "9", "a1", "010", "2"];
        k.sort_by(|a, b| key_cmp(a, b));
        assert_eq!(k, vec!["2", "9", "10", "010", "a1", "b"]);
    }

    #[test]
    fn negative_feedback_cancels_a_pair_and_never_counts_as_positive() {
        for mode in [ValueMode::Sum, ValueMode::Binary] {
            // GIVEN a disliked item never played, a played-then-disliked one, and a liked one
            let mut b = InteractionsBuilder::new().value_mode(mode);
            b.push("u1", "disliked", -1.0, 1);
            b.push("u1", "cancelled", 1.0, 1);
            b.push("u1", "cancelled", -1.0, 2);
            b.push("u1", "kept", 3.0, 1);
            b.push("u1", "kept", -0.5, 2);
            b.push("u2", "disliked", 1.0, 1);
            // WHEN built
            let m = b.build().unwrap();
            // THEN only pairs with a positive total have a cell, net of the dislike
            let kept = m.item_index("kept").unwrap();
            let (cols, vals) = m.user_row(0);
            assert_eq!(cols, &[kept][..], "{mode:?}");
            let want = if mode == ValueMode::Sum { 2.5 } else { 1.0 };
            assert_eq!(vals, &[want][..]);
            // AND another user's positive on the same item is untouched
            assert_eq!(m.user_row(1).0, &[m.item_index("disliked").unwrap()][..]);
        }
    }

    #[test]
    fn a_view_builds_the_matrix_its_keys_build() {
        use crate::mapping::{Interaction, InteractionLog};
        // GIVEN a log whose id tables hold keys without rows in the view pushed (u9, z), a
        // zero weight and a repeated pair
        let mut log = InteractionLog::new();
        let rows = [
            ("u9", "z", 1.0, 1),
            ("u2", "b", 1.0, 2_500),
            ("u1", "a", 0.0, 3_000),
            ("u1", "b", 2.0, 3_700),
            ("u2", "b", 1.0, 4_200),
            ("u10", "a", -1.0, 5_000),
            ("u10", "c", 1.0, 6_000),
        ];
        for (u, i, w, t) in rows {
            log.push(Interaction {
                user: u.into(),
                item: i.into(),
                weight: w,
                timestamp_ms: t,
                event_id: String::new(),
            });
        }
        let view = log.view_rows(1..rows.len());
        let secs = |t: i64| t.div_euclid(1000) * 1000;
        // WHEN built from the view and from the same rows' keys
        let mut a = InteractionsBuilder::new();
        a.push_view(view, secs);
        let mut b = InteractionsBuilder::new();
        for (u, i, w, t) in &rows[1..] {
            b.push(u, i, *w, secs(*t));
        }
        // THEN the matrices are equal, and keys without rows are not in it
        let (a, b) = (a.build().unwrap(), b.build().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.user_ids(), &["u1", "u10", "u2"]);
        assert_eq!(a.item_ids(), &["a", "b", "c"]);
        assert_eq!(a.last_timestamps().unwrap()[0], 3_000);
    }

    #[test]
    fn builder_sums_duplicates_and_keeps_newest_timestamp() {
        // GIVEN records with a duplicate pair, pushed out of order
        let mut b = InteractionsBuilder::new();
        b.push("u2", "i1", 1.0, 5);
        b.push("u1", "i2", 2.0, 7);
        b.push("u1", "i2", 3.0, 4);
        b.push("u1", "i1", 1.0, 1);
        b.push("u1", "i3", 0.0, 1); // ignored: zero weight
                                    // WHEN built
        let m = b.build().unwrap();
        // THEN keys are sorted, duplicates summed with the max timestamp, both CSRs agree
        assert_eq!(m.user_ids(), ["u1", "u2"]);
        assert_eq!(m.item_ids(), ["i1", "i2"]);
        assert_eq!(m.user_row(0), (&[0u32, 1][..], &[1.0f32, 5.0][..]));
        assert_eq!(m.user_row(1), (&[0u32][..], &[1.0f32][..]));
        assert_eq!(m.last_timestamps().unwrap(), &[1, 7, 5]);
        assert_eq!(m.item_users().row(0), (&[0u32, 1][..], &[1.0f32, 1.0][..]));
        assert_eq!(m.item_users().row(1), (&[0u32][..], &[5.0f32][..]));
        assert_eq!(m.user_index("u2"), Some(1));
        assert_eq!(m.item_index("zz"), None);
    }

    #[test]
    fn binary_mode_and_decay() {
        // GIVEN a half-life of 10 ms anchored at 100
        let mut b = InteractionsBuilder::new()
            .time_decay(10.0, 100)
            .unwrap()
            .value_mode(ValueMode::Sum);
        b.push("a", "x", 1.0, 100);
        b.push("a", "y", 1.0, 90);
        b.push("a", "y", 1.0, 80);
        let m = b.build().unwrap();
        // THEN weights are halved per half-life
        let (_, v) = m.user_row(0);
        assert!((v[0] - 1.0).abs() < 1e-6);
        assert!((v[1] - 0.75).abs() < 1e-6);
        // AND binary mode collapses duplicates to 1
        let mut b = InteractionsBuilder::new().value_mode(ValueMode::Binary);
        b.push("a", "x", 3.0, 1);
        b.push("a", "x", 2.0, 2);
        assert_eq!(b.build().unwrap().user_row(0).1, &[1.0]);
    }

    #[test]
    fn from_indexed_keeps_empty_rows() {
        let m = Interactions::from_indexed(3, 4, &[(0, 3, 1.0), (2, 0, 2.0)]).unwrap();
        assert_eq!((m.n_users(), m.n_items(), m.nnz()), (3, 4, 2));
        assert_eq!(m.user_row(1).0.len(), 0);
        assert_eq!(m.item_users().row(3), (&[0u32][..], &[1.0f32][..]));
        assert!(Interactions::from_indexed(1, 1, &[(1, 0, 1.0)]).is_err());
    }

    #[test]
    fn csv_rows() {
        let rows = parse_ratings_csv("user_id,item_id,rating,timestamp\n1,10,4,100\n2,10,5,200\n")
            .unwrap();
        assert_eq!(rows.len(), 2);
        let m = from_rating_rows(&rows, ValueMode::Sum).unwrap();
        assert_eq!(m.item_users().row(0).1, &[4.0, 5.0]);
        assert_eq!(m.last_timestamps().unwrap(), &[100_000, 200_000]);
        assert!(parse_ratings_csv("a,b\n1,2\n").is_err());
        assert!(parse_ratings_csv("user_id,item_id,rating,timestamp\n1,2,x,3\n").is_err());
    }
}
