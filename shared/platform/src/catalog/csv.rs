//! Item catalog CSV files, for `nectar import --items FILE`.
//!
//! A header row is required and columns are found by name (case-insensitive, any order, other
//! columns ignored): `item_id` or `id` (required), `title`, `category`, `genres`
//! (`|`-separated), `available_from`, `available_until` (ms UTC, or ISO-8601: `2025-01-31`,
//! `2025-01-31T20:00:00`, taken as UTC, or RFC 3339 with an offset). The category is the
//! `category` cell, else the first genre. So refeval's MovieLens `items.csv`
//! (`item_id,title,year,genres`) and a file in Nectar's own catalog columns both load.
//!
//! Every row is checked before anything is written: a bad row fails the whole file with its
//! line and column.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::catalog::dynamo::DynamoCatalog;
use crate::catalog::{valid_item_id, Catalog, CatalogError, ItemMeta};
use crate::dynamo::DynamoError;

/// Where `nectar import --items` writes.
#[derive(Debug, Clone)]
pub enum ItemsTarget {
    /// The local catalog of `nectar dev` (`<data-dir>/catalog/`).
    Local(Catalog),
    /// The DynamoDB catalog table of the recommend function.
    Dynamo(DynamoCatalog),
}

/// Why an items import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportItemsError {
    /// The file cannot be opened.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A row (or the header) is invalid; nothing was written.
    #[error("{path} is invalid (nothing was imported)")]
    Invalid {
        /// The file.
        path: String,
        /// What and where.
        #[source]
        source: ItemsCsvError,
    },
    /// The local catalog could not be written.
    #[error(transparent)]
    Local(#[from] CatalogError),
    /// The DynamoDB catalog could not be written.
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
}

/// Reads and checks every row of an items CSV, then upserts the items (whole, like
/// `PUT /v1/items`) of `site` into `target`; returns how many distinct items were written.
/// A repeated id keeps its last row.
pub async fn import_items_file(
    path: &Path,
    site: &str,
    target: &ItemsTarget,
) -> Result<usize, ImportItemsError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ImportItemsError::Read {
        path: name.clone(),
        source,
    })?;
    let items = parse_items_csv(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|source| ImportItemsError::Invalid { path: name, source })?;
    // Last row wins; a BatchWriteItem must not name a key twice anyway.
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        last.insert(&it.id, i);
    }
    let items: Vec<ItemMeta> = items
        .iter()
        .enumerate()
        .filter(|(i, it)| last[it.id.as_str()] == *i)
        .map(|(_, it)| it.clone())
        .collect();
    let n = items.len();
    match target {
        ItemsTarget::Local(c) => c.upsert(site, items)?,
        ItemsTarget::Dynamo(d) => d.put_items(site, &items).await?,
    }
    Ok(n)
}

/// Why an items CSV was refused.
#[derive(Debug, thiserror::Error)]
pub enum ItemsCsvError {
    /// The file is not readable CSV (I/O, bad UTF-8, rows of different lengths).
    #[error("line {line}: not valid CSV")]
    Csv {
        /// 1-based line of the problem (0 when unknown).
        line: u64,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// The header lacks a required column or names one twice.
    #[error("line 1 (header): {0}")]
    Header(String),
    /// A cell is invalid.
    #[error("line {line}, column {column}: {problem}")]
    Field {
        /// 1-based line of the row.
        line: u64,
        /// The column's header name.
        column: String,
        /// What is wrong.
        problem: String,
    },
}

/// The columns the catalog reads, by position in the header.
#[derive(Debug, Default)]
struct Columns {
    id: usize,
    title: Option<usize>,
    category: Option<usize>,
    genres: Option<usize>,
    from: Option<usize>,
    until: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Result<Columns, ItemsCsvError> {
    let mut at: HashMap<String, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        if at.insert(name.clone(), i).is_some() {
            return Err(ItemsCsvError::Header(format!(
                "column {name} appears twice"
            )));
        }
    }
    let id = match (at.get("item_id"), at.get("id")) {
        (Some(_), Some(_)) => {
            return Err(ItemsCsvError::Header(
                "both item_id and id columns: keep one".into(),
            ))
        }
        (Some(&i), None) | (None, Some(&i)) => i,
        (None, None) => {
            return Err(ItemsCsvError::Header(
                "no item_id (or id) column; a header row is required".into(),
            ))
        }
    };
    Ok(Columns {
        id,
        title: at.get("title").copied(),
        category: at.get("category").copied(),
        genres: at.get("genres").copied(),
        from: at.get("available_from").copied(),
        until: at.get("available_until").copied(),
    })
}

/// A time cell: ms UTC, or an ISO-8601 date or date-time (UTC unless it carries an offset).
pub fn parse_time_ms(cell: &str) -> Result<i64, String> {
    let t = cell.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(format!(
        "{t:?} is neither ms since the epoch nor an ISO-8601 date or date-time"
    ))
}

/// Reads an items CSV whole; items come in file order (a repeated id appears twice, and the
/// later row wins when upserted).
pub fn parse_items_csv<R: Read>(input: R) -> Result<Vec<ItemMeta>, ItemsCsvError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = rdr
        .headers()
        .map_err(|source| ItemsCsvError::Csv { line: 1, source })?;
    let cols = columns(header)?;
    let names: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut record).map_err(|source| {
            let line = source
                .position()
                .map_or_else(|| rdr.position().line(), csv::Position::line);
            ItemsCsvError::Csv { line, source }
        })?;
        if !more {
            return Ok(out);
        }
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |i: usize, problem: String| ItemsCsvError::Field {
            line,
            column: names[i].clone(),
            problem,
        };
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .filter(|c| !c.is_empty())
                .map(str::to_string)
        };
        let id = record.get(cols.id).unwrap_or_default();
        if !valid_item_id(id) {
            return Err(field(
                cols.id,
                "ids are 1 to 256 characters with no control characters".into(),
            ));
        }
        let time = |i: Option<usize>| match (i, cell(i)) {
            (Some(i), Some(c)) => parse_time_ms(&c).map(Some).map_err(|p| field(i, p)),
            _ => Ok(None),
        };
        let (available_from, available_until) = (time(cols.from)?, time(cols.until)?);
        if let (Some(f), Some(u), Some(ui)) = (available_from, available_until, cols.until) {
            if u <= f {
                return Err(field(ui, "must be after available_from".into()));
            }
        }
        let first_genre = cell(cols.genres).and_then(|g| {
            g.split('|')
                .map(str::trim)
                .find(|g| !g.is_empty())
                .map(str::to_string)
        });
        out.push(ItemMeta {
            id: id.to_string(),
            category: cell(cols.category).or(first_genre),
            available_from,
            available_until,
            title: cell(cols.title),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refeval_items_csv_loads_with_the_first_genre_as_category() {
        // GIVEN refeval's MovieLens items format, with a quoted title holding commas
        let csv = "item_id,title,year,genres\n\
                   1,Toy Story,1995,Animation|Children's|Comedy\n\
                   11,\"American President, The\",1995,Comedy|Drama|Romance\n\
                   267,unknown,,\n";
        // WHEN parsed
        let items = parse_items_csv(csv.as_bytes()).unwrap();
        // THEN ids, titles and first genres come out; the year is ignored
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0],
            ItemMeta {
                id: "1".into(),
                category: Some("Animation".into()),
                title: Some("Toy Story".into()),
                ..Default::default()
            }
        );
        assert_eq!(items[1].title.as_deref(), Some("American President, The"));
        assert_eq!(items[1].category.as_deref(), Some("Comedy"));
        assert_eq!(items[2].category, None);
    }

    #[test]
    fn our_columns_load_in_any_order_with_ms_or_iso_times() {
        // GIVEN Nectar's catalog columns in another order, with an `id` column, a category
        // that wins over genres, and times as ms and as ISO-8601
        let csv = "available_until,category,id,available_from,genres,title\n\
                   1700000100000,news,n1,1700000000000,sport|x,\"Evening news, part 1\"\n\
                   2025-02-01,,n2,2025-01-31T20:00:00Z,drama,\n\
                   ,,n3,2025-01-31T21:00:00+01:00,,\n";
        // WHEN parsed
        let items = parse_items_csv(csv.as_bytes()).unwrap();
        // THEN every field lands where it belongs
        assert_eq!(
            items[0],
            ItemMeta {
                id: "n1".into(),
                category: Some("news".into()),
                available_from: Some(1_700_000_000_000),
                available_until: Some(1_700_000_100_000),
                title: Some("Evening news, part 1".into()),
            }
        );
        assert_eq!(items[1].category.as_deref(), Some("drama"));
        assert_eq!(items[1].available_from, Some(1_738_353_600_000));
        assert_eq!(items[1].available_until, Some(1_738_368_000_000));
        assert_eq!(items[1].title, None);
        assert_eq!(items[2].available_from, Some(1_738_353_600_000));
    }

    #[tokio::test]
    async fn a_local_import_writes_all_rows_or_none() {
        let dir = std::env::temp_dir().join(format!("nectar-items-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = ItemsTarget::Local(Catalog::open(&dir).unwrap());
        // GIVEN a file whose last row is bad
        let bad = dir.join("bad.csv");
        std::fs::write(
            &bad,
            "id,category,available_from
a,x,1
b,y,soon
",
        )
        .unwrap();
        // WHEN imported
        let e = import_items_file(&bad, "demo", &target).await.unwrap_err();
        // THEN the error names the file, line and column, and nothing was written
        assert!(
            e.to_string()
                .ends_with("bad.csv is invalid (nothing was imported)"),
            "{e}"
        );
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert_eq!(
            cause,
            "line 3, column available_from: \"soon\" is neither ms since the epoch nor an \
             ISO-8601 date or date-time"
        );
        assert_eq!(Catalog::open(&dir).unwrap().len("demo"), 0);
        // GIVEN a good file with a repeated id
        let good = dir.join("good.csv");
        std::fs::write(
            &good,
            "id,category
a,x
b,y
a,z
",
        )
        .unwrap();
        // WHEN imported
        let n = import_items_file(&good, "demo", &target).await.unwrap();
        // THEN the distinct items are counted and persisted, the last row winning
        assert_eq!(n, 2);
        let again = Catalog::open(&dir).unwrap();
        assert_eq!(again.len("demo"), 2);
        assert_eq!(
            again.get("demo", "a").unwrap().category.as_deref(),
            Some("z")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_rows_name_their_line_and_column() {
        // GIVEN files with a bad time, an empty window, an empty id, no id column, and a
        // short row
        let cases = [
            (
                "id,available_from\na,1\nb,yesterday\n",
                "line 3, column available_from",
            ),
            (
                "id,available_from,available_until\na,10,10\n",
                "line 2, column available_until",
            ),
            ("item_id,title\n,No id\n", "line 2, column item_id"),
            ("title,genres\nx,y\n", "line 1 (header): no item_id"),
            ("id,title\na,b\nc\n", "line 3: not valid CSV"),
        ];
        for (csv, want) in cases {
            // WHEN parsed
            let e = parse_items_csv(csv.as_bytes()).unwrap_err().to_string();
            // THEN the error says where
            assert!(e.starts_with(want), "{csv:?}: {e}");
        }
    }
}
